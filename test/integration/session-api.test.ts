// Owns: integration tests of the session API over nats-server: replicated events (local and remote origin,
// a throwing listener), find/end a principal's sessions on the delta and backup managers, schema drift on apply.
import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { z } from 'zod';
import type { SessionEvent, SessionVariables } from '../../lib/index.ts';
import { parseSessionId } from '../../lib/session/ids.ts';
import { waitFor } from '../../functions/launch/index.ts';
import { Harness, uniqueCluster, type TestNode, waitForMembership } from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

/** A user's app on one node: login sets the principal, /set writes a JSON body, /delete/:name removes, /logout invalidates. */
function userApp(node: TestNode): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.onError((error, c) => c.text(error.message, 500));
  app.use(node.sessions.middleware());
  app.post('/login/:user', (c) => {
    const session = c.get('session');
    session.regenerateId();
    session.setPrincipal(c.req.param('user'));
    return c.text(session.id);
  });
  app.post('/set', async (c) => {
    for (const [name, value] of Object.entries(await c.req.json<Record<string, unknown>>()))
      c.get('session').set(name, value);
    return c.text(c.get('session').id);
  });
  app.post('/delete/:name', (c) => {
    c.get('session').delete(c.req.param('name'));
    return c.text('deleted');
  });
  app.get('/whoami', (c) => c.json({ user: c.get('session').principal ?? null }));
  app.post('/logout', (c) => {
    c.get('session').invalidate();
    return c.text('bye');
  });
  return app;
}

async function start(
  prefix: string,
  names: string[],
  options: Parameters<Harness['add']>[1] = {},
): Promise<TestNode[]> {
  harness = new Harness(inject('natsUrl'), uniqueCluster(prefix), options);
  return harness.start(...names);
}

async function login(node: TestNode, user: string): Promise<{ cookie: string; key: string }> {
  const id = await (await userApp(node).request(`http://app.test/login/${user}`, { method: 'POST' })).text();
  return { cookie: `SESSIONID=${id}`, key: parseSessionId(id)!.key };
}

describe('lazy sessions over NATS', () => {
  it('10,000 anonymous requests whose handler only reads leave 0 sessions on every node, send no Set-Cookie and publish no delta', async () => {
    const nodes = await start('it-lazy', ['a', 'b', 'c']);
    const apps = nodes.map(userApp);
    let setCookies = 0;
    for (let i = 0; i < 10_000; i++) {
      const res = await apps[i % apps.length]!.request('http://app.test/whoami');
      expect(res.status).toBe(200);
      setCookies += res.headers.getSetCookie().length;
    }
    expect(setCookies).toBe(0);
    for (const node of nodes) {
      expect(node.sessions.status().sessions).toMatchObject({ total: 0 });
      expect(node.sessions.stats.sent.delta ?? 0).toBe(0);
      expect(node.sessions.stats.received.delta ?? 0).toBe(0);
    }
  });
});

describe('session events over NATS', () => {
  it("local listeners hear this node's changes; replicated listeners also hear other nodes' with origin remote; a throwing listener is counted", async () => {
    const [a, b] = await start('it-events', ['a', 'b']);
    const localOnB: SessionEvent[] = [];
    const replicatedOnB: SessionEvent[] = [];
    const onA: SessionEvent[] = [];
    for (const type of ['created', 'ended', 'attribute'] as const) {
      b!.sessions.on(type, (e) => localOnB.push(e));
      b!.sessions.on(type, (e) => replicatedOnB.push(e), { replicated: true });
      a!.sessions.on(type, (e) => onA.push(e));
    }
    let thrown = 0;
    b!.sessions.on(
      'attribute',
      () => {
        thrown++;
        throw new Error('listener bug');
      },
      { replicated: true },
    );

    const app = userApp(a!);
    const id = await (
      await app.request('http://app.test/set', { method: 'POST', body: JSON.stringify({ cart: ['pear'] }) })
    ).text();
    const key = parseSessionId(id)!.key;
    await waitFor('the attribute event on b', () =>
      replicatedOnB.some((e) => e.type === 'attribute' && e.name === 'cart'),
    );
    expect(onA).toEqual([
      { type: 'created', key, origin: 'local', node: 'a' },
      { type: 'attribute', key, origin: 'local', node: 'a', name: 'cart', removed: false },
    ]);
    expect(replicatedOnB).toEqual([
      { type: 'created', key, origin: 'remote', node: 'a' },
      { type: 'attribute', key, origin: 'remote', node: 'a', name: 'cart', removed: false },
    ]);
    expect(localOnB).toEqual([]);
    expect(thrown).toBe(1);
    expect(b!.sessions.status().stats).toMatchObject({ listenerErrors: 1 });
    expect(b!.sessions.manager.find(key)).toBeDefined(); // the throwing listener broke nothing

    // The next change still replicates after the throw; then an invalidate ends it everywhere with its reason.
    await app.request('http://app.test/delete/cart', { method: 'POST', headers: { cookie: `SESSIONID=${id}` } });
    await app.request('http://app.test/set', {
      method: 'POST',
      headers: { cookie: `SESSIONID=${id}` },
      body: JSON.stringify({ n: 1 }),
    });
    await waitFor('n on b', () => replicatedOnB.some((e) => e.type === 'attribute' && e.name === 'n'));
    expect(
      replicatedOnB
        .filter((e) => e.type === 'attribute' && e.name === 'cart')
        .map((e) => (e as { removed: boolean }).removed),
    ).toEqual([false, true]);
    await app.request('http://app.test/logout', { method: 'POST', headers: { cookie: `SESSIONID=${id}` } });
    await waitFor('the end on b', () => replicatedOnB.some((e) => e.type === 'ended'));
    expect(replicatedOnB.at(-1)).toEqual({ type: 'ended', key, origin: 'remote', node: 'a', reason: 'invalidated' });
    expect(onA.at(-1)).toEqual({ type: 'ended', key, origin: 'local', node: 'a', reason: 'invalidated' });
  });

  it('an expiry is reported where the sweep ended it (local) and on the other node (remote), reason expired', async () => {
    const lifetime = { maxInactiveSeconds: 60, maxLifetimeSeconds: 1 };
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-events-expiry'), lifetime);
    // a served the session, so a's sweep ends it; b's sweep keeps its copy past the lifetime's end until a's end arrived.
    const a = await harness.add('a', { sweepIntervalMs: 100 });
    const b = await harness.add('b', { sweepIntervalMs: 100 });
    await waitForMembership([a, b]);
    const onA: SessionEvent[] = [];
    const onB: SessionEvent[] = [];
    a.sessions.on('ended', (e) => onA.push(e), { replicated: true });
    b.sessions.on('ended', (e) => onB.push(e), { replicated: true });
    const id = await (
      await userApp(a).request('http://app.test/set', { method: 'POST', body: JSON.stringify({ x: 1 }) })
    ).text();
    const key = parseSessionId(id)!.key;
    await waitFor('the end on both nodes', () => onA.length > 0 && onB.length > 0);
    expect(onA).toEqual([{ type: 'ended', key, origin: 'local', node: 'a', reason: 'expired' }]);
    expect(onB).toEqual([{ type: 'ended', key, origin: 'remote', node: 'a', reason: 'expired' }]);
  });

  it('regenerateId reports the old key ended with reason regenerated on every node', async () => {
    const [a, b] = await start('it-events-regen', ['a', 'b']);
    const ended: SessionEvent[] = [];
    b!.sessions.on('ended', (e) => ended.push(e), { replicated: true });
    const app = userApp(a!);
    const id = await (
      await app.request('http://app.test/set', { method: 'POST', body: JSON.stringify({ x: 1 }) })
    ).text();
    const oldKey = parseSessionId(id)!.key;
    await waitFor('the session on b', () => b!.sessions.manager.find(oldKey) !== undefined);
    await app.request('http://app.test/login/ada', { method: 'POST', headers: { cookie: `SESSIONID=${id}` } });
    await waitFor("the old key's end on b", () => ended.length > 0);
    expect(ended).toEqual([{ type: 'ended', key: oldKey, origin: 'remote', node: 'a', reason: 'regenerated' }]);
  });
});

describe.each(['delta', 'backup'] as const)("a principal's sessions with the %s manager", (manager) => {
  it("findByPrincipal lists a user's sessions from any node; endSessionsOf ends them on every node and leaves others", async () => {
    const nodes = await start(`it-principal-${manager}`, ['a', 'b', 'c'], { manager });
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    const ada1 = await login(a, 'ada');
    const ada2 = await login(b, 'ada');
    const bob = await login(c, 'bob');
    // With the backup manager each session lives on two of the three nodes, so some node holds only one of
    // ada's sessions (or none): every node finding both means the members were asked.
    await waitFor("every node to find both of ada's sessions", async () =>
      (await Promise.all(nodes.map((n) => n.sessions.findByPrincipal('ada')))).every((found) => found.length === 2),
    );
    // bob's login came last: its change may still be on its way to a (the write is async).
    await waitFor("a to find bob's session", async () => (await a.sessions.findByPrincipal('bob')).length > 0);
    if (manager === 'backup')
      expect(nodes.some((n) => !n.sessions.manager.inspect(ada1.key) || !n.sessions.manager.inspect(ada2.key))).toBe(
        true,
      );
    expect((await c.sessions.findByPrincipal('ada')).map((s) => s.key).sort()).toEqual([ada1.key, ada2.key].sort());
    expect((await a.sessions.findByPrincipal('bob')).map((s) => s.key)).toEqual([bob.key]);
    expect(await a.sessions.findByPrincipal('nobody')).toEqual([]);

    expect(await c.sessions.endSessionsOf('ada')).toBe(2);
    for (const { cookie } of [ada1, ada2]) {
      for (const node of nodes)
        expect(await (await userApp(node).request('http://app.test/whoami', { headers: { cookie } })).json()).toEqual({
          user: null,
        });
    }
    await waitFor("ada's sessions gone from every index", async () =>
      (await Promise.all(nodes.map((n) => n.sessions.findByPrincipal('ada')))).every((found) => found.length === 0),
    );
    expect(
      await (await userApp(a).request('http://app.test/whoami', { headers: { cookie: bob.cookie } })).json(),
    ).toEqual({ user: 'bob' });
  });
});

describe('schema drift on apply', () => {
  it('a value from a node with another schema is applied, reported and counted; never thrown', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-drift'));
    const old = await harness.add('old', { schema: { visits: z.string() } }); // the previous deploy stored visits as text
    const current = await harness.add('new', { schema: { visits: z.number().int() } });
    await waitFor(
      'both ready',
      () =>
        old.sessions.membership.readyMembers().length === 1 && current.sessions.membership.readyMembers().length === 1,
    );
    const id = await (
      await userApp(old).request('http://app.test/set', { method: 'POST', body: JSON.stringify({ visits: '3' }) })
    ).text();
    const key = parseSessionId(id)!.key;
    await waitFor(
      'the value on the new node',
      () => current.sessions.manager.find(key)?.attributes.has('visits') === true,
    );
    expect(
      current.logs.some(
        (line) =>
          line.message.startsWith('schema drift') && line.fields.attribute === 'visits' && line.fields.from === 'old',
      ),
    ).toBe(true);
    expect(current.sessions.status().stats).toMatchObject({ schemaDrift: 1, listenerErrors: 0 });
    expect(old.sessions.status().stats).toMatchObject({ schemaDrift: 0 });
    // Applied anyway: both nodes converge on the same state.
    expect(current.sessions.manager.find(key)?.attributes.get('visits')?.value).toBe(
      old.sessions.manager.find(key)?.attributes.get('visits')?.value,
    );
    // The new node's own writes are still checked at set().
    const refused = await userApp(current).request('http://app.test/set', {
      method: 'POST',
      headers: { cookie: `SESSIONID=${id}` },
      body: JSON.stringify({ visits: '4' }),
    });
    expect(refused.status).toBe(500);
  });
});
