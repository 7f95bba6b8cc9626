// Owns: integration tests of replicating every op kind and every attribute value type across NATS nodes.
import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { SessionVariables } from '../../lib/index.ts';
import {
  sessionAttributes,
  CookieClient,
  Harness,
  uniqueCluster,
  waitForConvergence,
  type TestNode,
} from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

async function threeNodes(prefix: string): Promise<TestNode[]> {
  harness = new Harness(inject('natsUrl'), uniqueCluster(prefix));
  return harness.start('a', 'b', 'c');
}

describe('replication of every op kind over NATS', () => {
  it('create: a session created on A exists, identical, on B and C', async () => {
    const [a, b, c] = await threeNodes('it-create');
    const client = new CookieClient();
    const created = await client.request(a!, 'POST', '/counter');
    expect(created.status).toBe(200);
    expect(created.json).toEqual({ counter: 1, node: 'a' });
    expect(client.cookie).toMatch(/^[A-Za-z0-9_-]{24}\.a$/);

    const states = await waitForConvergence([a!, b!, c!], [client.key]);
    expect(states.get(client.key)).toMatchObject({
      key: client.key,
      ended: null,
      attributes: [['counter', expect.any(Array), '[1]']],
    });

    const onB = await client.request(b!, 'GET', '/session');
    expect(onB.json).toMatchObject({ node: 'b', isNew: false, attributes: { counter: 1 } });
    // Continue the counter on each node in turn: every node sees the previous node's write.
    await waitForConvergence([a!, b!, c!], [client.key], { access: false });
    expect((await client.request(b!, 'POST', '/counter')).json).toEqual({ counter: 2, node: 'b' });
    await waitForConvergence([a!, b!, c!], [client.key]);
    expect((await client.request(c!, 'POST', '/counter')).json).toEqual({ counter: 3, node: 'c' });
    await waitForConvergence([a!, b!, c!], [client.key]);
    expect(await sessionAttributes(client, a!)).toEqual({ counter: 3 });
  });

  it('set and remove: attributes set on A and removed on B read back the same on every node', async () => {
    const [a, b, c] = await threeNodes('it-set');
    const client = new CookieClient();
    const values: Record<string, unknown> = {
      text: 'héllo wörld ✓',
      number: 42.5,
      negative: -7,
      flag: true,
      nothing: null,
      list: [1, 'two', { three: 3 }, [4]],
      object: { nested: { deep: ['x', null, false] }, empty: {} },
      __proto__x: 'not a prototype',
    };
    for (const [name, value] of Object.entries(values)) {
      const reply = await client.request(
        a!,
        'PUT',
        `/session/attributes/${encodeURIComponent(name)}`,
        JSON.stringify(value),
      );
      expect(reply.status).toBe(200);
    }
    await waitForConvergence([a!, b!, c!], [client.key]);
    expect(await sessionAttributes(client, b!)).toEqual(values);
    expect(await sessionAttributes(client, c!)).toEqual(values);

    const removed = await client.request(b!, 'DELETE', '/session/attributes/list');
    expect(removed.status).toBe(200);
    expect(removed.json.attributes).not.toHaveProperty('list');
    const states = await waitForConvergence([a!, b!, c!], [client.key]);
    // The removal is a stamped register without a value on every node.
    const registers = (states.get(client.key) as { attributes: [string, unknown, string | null][] }).attributes;
    expect(registers.find(([name]) => name === 'list')?.[2]).toBeNull();
    const { list: _list, ...rest } = values;
    expect(await sessionAttributes(client, a!)).toEqual(rest);
    expect(await sessionAttributes(client, c!)).toEqual(rest);
    // Setting it again on C after the removal wins everywhere.
    await client.request(c!, 'PUT', '/session/attributes/list', ['back']);
    await waitForConvergence([a!, b!, c!], [client.key]);
    expect(await sessionAttributes(client, a!)).toEqual({ ...rest, list: ['back'] });
  });

  it('invalidate on C ends the session on A and B; the old cookie then gets a new session', async () => {
    const [a, b, c] = await threeNodes('it-invalidate');
    const client = new CookieClient();
    await client.request(a!, 'PUT', '/session/attributes/user', JSON.stringify('alice'));
    const key = client.key;
    const oldCookie = client.cookie!;
    await waitForConvergence([a!, b!, c!], [key]);

    const reply = await client.request(c!, 'POST', '/session/invalidate');
    expect(reply.status).toBe(204);
    expect(reply.setCookie.join('\n')).toMatch(/SESSIONID=;.*Max-Age=0/i);
    expect(client.cookie).toBeUndefined();

    const states = await waitForConvergence([a!, b!, c!], [key]);
    expect(states.get(key)).toMatchObject({ attributes: [], ended: [expect.any(Array), 'invalidated'] });
    for (const node of [a!, b!, c!]) {
      expect(node.sessions.manager.find(key)).toBeUndefined();
      expect(node.sessions.status().sessions).toEqual({ total: 0, tombstones: 1 });
    }
    const again = new CookieClient();
    again.cookie = oldCookie;
    const fresh = await again.request(a!, 'GET', '/session');
    expect(fresh.json).toMatchObject({ isNew: true, attributes: {} });
    expect(again.key).not.toBe(key);
  });

  it('max inactive interval changed on A is seen on B and C', async () => {
    const [a, b, c] = await threeNodes('it-maxinactive');
    const client = new CookieClient();
    await client.request(a!, 'POST', '/counter');
    await waitForConvergence([a!, b!, c!], [client.key]);
    expect((await client.request(b!, 'GET', '/session')).json.maxInactiveInterval).toBe(1800);

    const bad = await client.request(a!, 'PUT', '/session/max-inactive-interval', 'soon');
    expect(bad.status).toBe(400);
    const set = await client.request(a!, 'PUT', '/session/max-inactive-interval', '42');
    expect(set.status).toBe(200);
    expect(set.json.maxInactiveInterval).toBe(42);
    await waitForConvergence([a!, b!, c!], [client.key]);
    for (const node of [b!, c!]) {
      expect(node.sessions.manager.inspect(client.key)?.maxInactive.seconds).toBe(42);
      expect((await client.request(node, 'GET', '/session')).json.maxInactiveInterval).toBe(42);
    }
  });

  it('regenerateId on B moves the attributes to a new key everywhere and ends the old key everywhere', async () => {
    const [a, b, c] = await threeNodes('it-regenerate');
    const client = new CookieClient();
    await client.request(a!, 'PUT', '/session/attributes/cart', { items: [1, 2, 3] });
    await client.request(a!, 'PUT', '/session/attributes/user', JSON.stringify('bob'));
    const oldKey = client.key;
    const oldCookie = client.cookie!;
    await waitForConvergence([a!, b!, c!], [oldKey]);

    const reply = await client.request(b!, 'POST', '/session/regenerate');
    expect(reply.status).toBe(200);
    const newKey = client.key;
    expect(newKey).not.toBe(oldKey);
    expect(client.cookie).toBe(`${newKey}.b`);
    expect(reply.json).toMatchObject({ id: `${newKey}.b`, attributes: { cart: { items: [1, 2, 3] }, user: 'bob' } });

    const states = await waitForConvergence([a!, b!, c!], [oldKey, newKey]);
    expect(states.get(oldKey)).toMatchObject({ ended: [expect.any(Array), 'regenerated'], attributes: [] });
    expect(states.get(newKey)).toMatchObject({ ended: null });
    expect(await sessionAttributes(client, a!)).toEqual({ cart: { items: [1, 2, 3] }, user: 'bob' });
    expect(await sessionAttributes(client, c!)).toEqual({ cart: { items: [1, 2, 3] }, user: 'bob' });

    const stale = new CookieClient();
    stale.cookie = oldCookie;
    expect((await stale.request(c!, 'GET', '/session')).json).toMatchObject({ isNew: true, attributes: {} });
  });
});

describe('attribute value types JSON cannot carry', () => {
  /** A Hono app with the library middleware whose handlers write `values` and capture what they read. */
  function typedApp(
    node: TestNode,
    values: () => Record<string, unknown>,
    seen: { attributes?: Record<string, unknown> },
  ) {
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use('*', node.sessions.middleware());
    app.post('/write', (c) => {
      const session = c.get('session');
      for (const [name, value] of Object.entries(values())) session.set(name, value);
      return c.text('written');
    });
    app.get('/read', (c) => {
      seen.attributes = c.get('session').attributes();
      return c.text('read');
    });
    return app;
  }

  it('Date, Map, Set, Uint8Array, bigint and friends set on A read back identical on B', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-types'));
    const [a, b] = await harness.start('a', 'b');
    const written = () => ({
      date: new Date('2024-02-29T12:34:56.789Z'),
      map: new Map<unknown, unknown>([
        ['k', 1],
        [2, new Set(['nested'])],
      ]),
      set: new Set([1, 'two', 3n]),
      bytes: new Uint8Array([0, 1, 127, 128, 255]),
      big: 123456789012345678901234567890n,
      negativeBig: -42n,
      floats: new Float64Array([1.5, -0.25]),
      regexp: /ab+c/gi,
      special: [NaN, -0, Infinity, -Infinity, undefined, null],
      mixed: { when: new Date(0), tags: new Set(['x']), blob: new Uint8Array(300).fill(7) },
    });
    const seenA = {};
    const seenB: { attributes?: Record<string, unknown> } = {};
    const appA = typedApp(a!, written, seenA);
    const appB = typedApp(b!, written, seenB);

    const client = new CookieClient();
    expect((await client.request(appA, 'POST', '/write')).status).toBe(200);
    await waitForConvergence([a!, b!], [client.key]);
    expect((await client.request(appB, 'GET', '/read')).status).toBe(200);

    const got = seenB.attributes!;
    const expected = written();
    expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
    expect(got.date).toBeInstanceOf(Date);
    expect((got.date as Date).getTime()).toBe(expected.date.getTime());
    expect(got.map).toBeInstanceOf(Map);
    expect(got.map).toEqual(expected.map);
    expect((got.map as Map<unknown, unknown>).get(2)).toBeInstanceOf(Set);
    expect(got.set).toBeInstanceOf(Set);
    expect(got.set).toEqual(expected.set);
    expect(got.bytes).toBeInstanceOf(Uint8Array);
    expect([...(got.bytes as Uint8Array)]).toEqual([0, 1, 127, 128, 255]);
    expect(typeof got.big).toBe('bigint');
    expect(got.big).toBe(123456789012345678901234567890n);
    expect(got.negativeBig).toBe(-42n);
    expect(got.floats).toBeInstanceOf(Float64Array);
    expect([...(got.floats as Float64Array)]).toEqual([1.5, -0.25]);
    expect(got.regexp).toBeInstanceOf(RegExp);
    expect(String(got.regexp)).toBe('/ab+c/gi');
    const special = got.special as unknown[];
    expect(special).toHaveLength(6);
    expect(Number.isNaN(special[0])).toBe(true);
    expect(Object.is(special[1], -0)).toBe(true);
    expect(special.slice(2)).toEqual([Infinity, -Infinity, undefined, null]);
    expect(got.mixed).toEqual(expected.mixed);
    expect((got.mixed as { when: unknown }).when).toBeInstanceOf(Date);
    expect(got).toEqual(expected);
  });

  it('a value that cannot be replicated is refused on A with a typed error and nothing reaches B', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-unserializable'));
    const [a, b] = await harness.start('a', 'b');
    const client = new CookieClient();
    await client.request(a!, 'PUT', '/session/attributes/ok', 1);
    await waitForConvergence([a!, b!], [client.key]);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use('*', a!.sessions.middleware());
    let error: unknown;
    app.post('/bad', (c) => {
      try {
        c.get('session').set('fn', () => 1);
      } catch (e) {
        error = e;
      }
      return c.text('done');
    });
    await client.request(app, 'POST', '/bad');
    expect(error).toMatchObject({ name: 'UnserializableValueError', code: 'UNSERIALIZABLE_VALUE' });
    await client.request(a!, 'PUT', '/session/attributes/marker', JSON.stringify('after'));
    await waitForConvergence([a!, b!], [client.key]);
    expect(await sessionAttributes(client, b!)).toEqual({ ok: 1, marker: 'after' });
  });
});

describe('send mode async over NATS', () => {
  it('each write is handed to the channel before the session middleware returns, and concurrent writes still share messages', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-async-order'), { sendMode: 'async' });
    const [a, b] = await harness.start('a', 'b');
    const sent = () => a!.sessions.stats.sent.delta ?? 0;
    /** Deltas published by the time the session middleware handed back the response, per request. */
    const sentAtResponse: number[] = [];
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use('*', async (_c, next) => {
      await next();
      sentAtResponse.push(sent());
    });
    app.use('*', a!.sessions.middleware());
    app.put('/x/:value', (c) => {
      c.get('session').set('x', Number(c.req.param('value')));
      return c.text('ok');
    });
    for (let i = 1; i <= 10; i++) {
      expect((await app.request(`/x/${i}`, { method: 'PUT' })).status).toBe(200);
      expect(sentAtResponse[i - 1], `write ${i}`).toBe(i);
    }
    // Twenty requests started in one turn share one message, sent before any of them is answered.
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => app.request(`/x/${i}`, { method: 'PUT' })));
    expect(replies.every((reply) => reply.status === 200)).toBe(true);
    expect(sent()).toBe(11);
    expect(sentAtResponse.slice(10)).toEqual(Array(20).fill(11));
    await waitForConvergence([a!, b!], undefined, { access: false });
  });
});
