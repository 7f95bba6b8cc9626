// Owns: unit tests of lib/middleware/session-middleware.ts through Hono's app.request (cookie, valve, route binder).
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { DEFAULT_FILTER, type SessionVariables } from '../../../lib/middleware/session-middleware.ts';
import { newSessionKey, parseSessionId } from '../../../lib/session/ids.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { appFor, attributesOn, call, makeNode, sessionApp, setOn, startNodes } from '../../kit/memory-nodes.ts';
import { keyOf } from '../../kit/cookie-client.ts';
import { holdingChannel } from '../../kit/holding-channel.ts';

/** Attributes of one Set-Cookie line, lower-cased names. */
function cookieAttributes(line: string): Map<string, string> {
  const [, ...parts] = line.split(';').map((p) => p.trim());
  return new Map(
    parts.map((p) => {
      const eq = p.indexOf('=');
      return eq < 0 ? [p.toLowerCase(), ''] : [p.slice(0, eq).toLowerCase(), p.slice(eq + 1)];
    }),
  );
}

describe('session cookie', () => {
  it('a new session gets SESSIONID=<key>.<node>; HttpOnly; SameSite=Lax; Path=/ and no Secure over http', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const res = await call(appFor(n1!), 'POST', '/set', { body: { a: 1 } });
    expect(res.status).toBe(200);
    // The session cookie, then its version cookie (read-your-writes) with the same attributes.
    expect(res.setCookie).toHaveLength(2);
    expect(res.setCookie[1]!.startsWith('SESSIONID_v=')).toBe(true);
    expect(cookieAttributes(res.setCookie[1]!)).toEqual(cookieAttributes(res.setCookie[0]!));
    const parsed = parseSessionId(res.cookie);
    expect(parsed?.route).toBe('n1');
    expect(JSON.parse(res.text).id).toBe(res.cookie);
    const attributes = cookieAttributes(res.setCookie[0]!);
    expect(attributes.has('httponly')).toBe(true);
    expect(attributes.get('samesite')).toBe('Lax');
    expect(attributes.get('path')).toBe('/');
    expect(attributes.has('secure')).toBe(false);
    expect(attributes.has('domain')).toBe(false);
    expect(attributesOn(n1!, parsed!.key)).toEqual({ a: 1 });
  });

  it('sets Secure only when the request came over https', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const res = await call(appFor(n1!), 'POST', '/set', { body: { a: 1 }, origin: 'https://app.test' });
    expect(cookieAttributes(res.setCookie[0]!).has('secure')).toBe(true);
  });

  it('honours cookieName, cookiePath, cookieDomain and secure: true', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware({ cookieName: 'SID', cookiePath: '/shop', cookieDomain: 'example.com', secure: true }));
    app.get('/shop/x', (c) => {
      c.get('session').touch();
      return c.text(c.get('session').id);
    });
    const res = await app.request('http://example.com/shop/x');
    const line = res.headers.getSetCookie()[0]!;
    expect(line.startsWith(`SID=${await res.text()}`)).toBe(true);
    const attributes = cookieAttributes(line);
    expect(attributes.get('path')).toBe('/shop');
    expect(attributes.get('domain')).toBe('example.com');
    expect(attributes.has('secure')).toBe(true);
  });

  it.each([
    ['unknown but well-formed', () => `${newSessionKey()}.n1`],
    ['malformed', () => 'evil'],
    ['a key with a bad route', () => `${newSessionKey()}.n!1`],
    ['a key that is too short', () => 'abc.n1'],
  ])("an %s cookie gets a fresh id, never the client's value", async (_label, make) => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const forged = make();
    const res = await call(appFor(n1!), 'POST', '/set', { cookie: forged, body: { a: 1 } });
    expect(res.cookie).toBeDefined();
    expect(res.cookie).not.toBe(forged);
    expect(keyOf(res.cookie!)).not.toBe(keyOf(forged));
    expect(parseSessionId(res.cookie)?.route).toBe('n1');
    expect(n1!.manager.inspect(keyOf(forged))).toBeUndefined();
    expect(n1!.manager.sessionCounts().total).toBe(1);
  });

  it('an untouched session sets no cookie and stores nothing', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const fresh = await call(appFor(n1!), 'GET', '/noop');
    expect(fresh.setCookie).toEqual([]);
    expect(n1!.manager.sessionCounts()).toEqual({ total: 0, tombstones: 0 });
    expect(n1!.stats.sessionsCreated).toBe(0);

    const unknown = await call(appFor(n1!), 'GET', '/noop', { cookie: `${newSessionKey()}.n1` });
    expect(unknown.setCookie).toEqual([]);
    expect(n1!.manager.sessionCounts().total).toBe(0);
  });

  it('a known session on its own route is not re-sent, whether read or written', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const first = await call(appFor(n1!), 'POST', '/set', { body: { a: 1 } });
    const cookie = first.cookie!;
    const version = first.version!;
    expect((await call(appFor(n1!), 'GET', '/noop', { cookie, version })).setCookie).toEqual([]);
    expect((await call(appFor(n1!), 'GET', '/get', { cookie, version })).setCookie).toEqual([]);
    // Without its version cookie, a read gets one (the version of the session here), and no session cookie.
    const unversioned = await call(appFor(n1!), 'GET', '/get', { cookie });
    expect(unversioned.setCookie).toHaveLength(1);
    expect(unversioned.version).toBe(version);
    // A write moves the version on: only the version cookie is sent again.
    const write = await call(appFor(n1!), 'POST', '/set', { cookie, version, body: { b: 2 } });
    expect(write.sessionLines).toEqual([]);
    expect(write.version).toMatch(/^[0-9a-z]+\.[0-9a-z]+\.n1\.[A-Za-z0-9_-]{22}$/);
    expect(write.version).not.toBe(version);
    expect(attributesOn(n1!, keyOf(cookie))).toEqual({ a: 1, b: 2 });
    expect(n1!.stats.routeRewrites).toBe(0);
  });
});

describe('route binder', () => {
  it('a cookie routed to another node, served by n1 that holds the session, is rewritten to <key>.n1', async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const cookie = await setOn(n2!, undefined, { a: 1 });
    const key = keyOf(cookie);
    await waitFor('n1 to hold the session', () => attributesOn(n1!, key));
    const res = await call(appFor(n1!), 'GET', '/get', { cookie: `${key}.other` });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).attributes).toEqual({ a: 1 });
    expect(res.cookie).toBe(`${key}.n1`);
    expect(n1!.stats.routeRewrites).toBe(1);
    // Once rewritten, no further rewrites.
    const again = await call(appFor(n1!), 'GET', '/noop', { cookie: res.cookie!, version: res.version! });
    expect(again.setCookie).toEqual([]);
    expect(n1!.stats.routeRewrites).toBe(1);
  });
});

describe('cookies written after the handler', () => {
  it("are added to the handler's own response (no copy with a streamed body), and still set when its headers cannot change", async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware());
    let returned: Response | undefined;
    app.post('/json', (c) => {
      c.get('session').set('a', 1);
      returned = c.json({ ok: true });
      return returned;
    });
    // Response.redirect() has immutable headers: the cookie goes on a copy instead.
    app.post('/redirect', (c) => {
      c.get('session').set('b', 1);
      return Response.redirect('http://app.local/next', 303);
    });
    const res = await app.request('http://app.local/json', { method: 'POST' });
    expect(res).toBe(returned);
    expect(res.headers.getSetCookie()).toContainEqual(expect.stringMatching(/^SESSIONID=[^;]+\.n1; /));
    expect(await res.json()).toEqual({ ok: true });
    const redirect = await app.request('http://app.local/redirect', { method: 'POST' });
    expect(redirect.status).toBe(303);
    expect(redirect.headers.get('location')).toBe('http://app.local/next');
    expect(redirect.headers.getSetCookie()).toContainEqual(expect.stringMatching(/^SESSIONID=[^;]+\.n1; /));
  });
});

describe('valve', () => {
  it("an oversized session answers 413 and replicates nothing, not even the request's other writes", async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2'], { maxSessionBytes: 2000 });
    const cookie = await setOn(n1!, undefined, { a: 1 });
    const key = keyOf(cookie);
    await waitFor('n2 to hold the session', () => attributesOn(n2!, key));
    const sent = n1!.stats.sent.delta ?? 0;

    const res = await call(appFor(n1!), 'POST', '/set', { cookie, body: { small: 'ok', big: 'x'.repeat(3000) } });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toEqual({
      error: expect.stringContaining('over the limit of 2000 bytes'),
      code: 'SESSION_TOO_LARGE',
    });
    expect(n1!.stats.oversizedRejected).toBe(1);
    expect(n1!.stats.sent.delta ?? 0).toBe(sent);
    expect(attributesOn(n1!, key)).toEqual({ a: 1 });
    expect(attributesOn(n2!, key)).toEqual({ a: 1 });

    // A new session that is too large in its first request is never stored anywhere.
    const fresh = await call(appFor(n1!), 'POST', '/set', { body: { big: 'x'.repeat(3000) } });
    expect(fresh.status).toBe(413);
    expect(fresh.setCookie).toEqual([]);
    expect(n1!.manager.sessionCounts().total).toBe(1);
    expect(n2!.manager.sessionCounts().total).toBe(1);
  });

  it('a path matching the filter is counted, kept local, and leaves with the next request', async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const cookie = await setOn(n1!, undefined, { a: 1 });
    const key = keyOf(cookie);
    await waitFor('n2 to hold the session', () => attributesOn(n2!, key));
    const sent = n1!.stats.sent.delta ?? 0;
    const res = await call(appFor(n1!), 'POST', '/set/bundle.js', { cookie, body: { b: 2 } });
    expect(res.status).toBe(200);
    expect(n1!.stats.filteredRequests).toBe(1);
    expect(n1!.stats.sent.delta ?? 0).toBe(sent);
    expect(attributesOn(n1!, key)).toEqual({ a: 1, b: 2 });
    expect(attributesOn(n2!, key)).toEqual({ a: 1 });
    await setOn(n1!, cookie, { c: 3 });
    await waitFor('n2 to get b and c', () => attributesOn(n2!, key)?.c === 3);
    expect(attributesOn(n2!, key)).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('a custom filter replaces the default one, and null replicates everything', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const custom = sessionApp(n1!, { filter: /^\/set\/internal/ });
    await call(custom, 'POST', '/set/internal', { body: { a: 1 } });
    await call(custom, 'POST', '/set/app.js', { body: { a: 1 } });
    expect(n1!.stats.filteredRequests).toBe(1);
    const none = sessionApp(n1!, { filter: null });
    await call(none, 'POST', '/set/app.js', { body: { a: 1 } });
    expect(n1!.stats.filteredRequests).toBe(1);
  });

  it('the default filter matches static files only', () => {
    for (const path of ['/a.css', '/x/y.JS', '/m.mjs', '/i.png', '/f.woff2', '/index.html', '/robots.txt'])
      expect(DEFAULT_FILTER.test(path), path).toBe(true);
    for (const path of ['/', '/api/cart', '/js', '/login', '/a.json'])
      expect(DEFAULT_FILTER.test(path), path).toBe(false);
  });
});

describe('invalidate and regenerateId', () => {
  it('invalidate deletes the cookie and ends the session on the other node', async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const cookie = await setOn(n1!, undefined, { a: 1 });
    const key = keyOf(cookie);
    await waitFor('n2 to hold the session', () => attributesOn(n2!, key));
    const res = await call(appFor(n1!), 'POST', '/invalidate', { cookie });
    expect(res.status).toBe(200);
    expect(res.cookie).toBe('');
    expect(cookieAttributes(res.setCookie[0]!).get('max-age')).toBe('0');
    expect(n1!.manager.find(key)).toBeUndefined();
    await waitFor('n2 to end the session', () => n2!.manager.inspect(key)?.ended?.reason === 'invalidated');
    expect(n2!.manager.find(key)).toBeUndefined();
    // The old cookie now gets a fresh session, not the ended one.
    const after = await call(appFor(n2!), 'POST', '/set', { cookie, body: { b: 1 } });
    expect(keyOf(after.cookie!)).not.toBe(key);
  });

  it('regenerateId sets a new cookie, moves the attributes, and ends the old key everywhere', async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const cookie = await setOn(n1!, undefined, { user: 'ann' });
    const oldKey = keyOf(cookie);
    await waitFor('n2 to hold the session', () => attributesOn(n2!, oldKey));
    const res = await call(appFor(n1!), 'POST', '/regenerate', { cookie });
    expect(res.status).toBe(200);
    expect(res.cookie).toBeDefined();
    const parsed = parseSessionId(res.cookie)!;
    expect(parsed.route).toBe('n1');
    expect(parsed.key).not.toBe(oldKey);
    expect(JSON.parse(res.text).id).toBe(res.cookie);
    expect(attributesOn(n1!, parsed.key)).toEqual({ user: 'ann' });
    expect(n1!.manager.find(oldKey)).toBeUndefined();
    await waitFor('n2 to move the session', () => attributesOn(n2!, parsed.key) && n2!.manager.inspect(oldKey)?.ended);
    expect(attributesOn(n2!, parsed.key)).toEqual({ user: 'ann' });
    expect(n2!.manager.inspect(oldKey)?.ended?.reason).toBe('regenerated');
    // The old id is dead: using it gives a fresh, empty session.
    const stale = await call(appFor(n2!), 'GET', '/get', { cookie });
    expect(JSON.parse(stale.text).attributes).toEqual({});
  });
});

describe('send mode', () => {
  it('in ack mode the other node already holds the value when the response arrives', async () => {
    const [n1, n2] = await startNodes(new MemoryBus(), ['n1', 'n2'], { sendMode: 'ack' });
    const res = await call(appFor(n1!), 'POST', '/set', { body: { paid: true } });
    expect(res.status).toBe(200);
    expect(attributesOn(n2!, keyOf(res.cookie!))).toEqual({ paid: true });
    const cookie = res.cookie!;
    await call(appFor(n1!), 'POST', '/set', { cookie, body: { paid: false, step: 2 } });
    expect(attributesOn(n2!, keyOf(cookie))).toEqual({ paid: false, step: 2 });
    expect(n1!.stats.acksTimedOut).toBe(0);
  });

  it("a handler error other than the size limit is left to Hono; the writes made before it are committed, as Tomcat's valve does", async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.onError((error, c) => c.text(error.message, 500));
    app.use(n1!.middleware());
    app.get('/boom', (c) => {
      c.get('session').set('before', 1);
      throw new Error('boom');
    });
    const res = await app.request('http://app.test/boom');
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('boom');
    const cookie = res.headers.getSetCookie()[0]!.split(';')[0]!.slice('SESSIONID='.length);
    expect(attributesOn(n1!, keyOf(cookie))).toEqual({ before: 1 });
  });
});

describe('maxActiveSessions', () => {
  it('answers a new session with 503 and Retry-After once the node holds the maximum, and keeps serving existing ones', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a'], { maxActiveSessions: 2 });
    const app = sessionApp(a!);
    const first = await call(app, 'POST', '/set', { body: { n: 1 } });
    const second = await call(app, 'POST', '/set', { body: { n: 2 } });
    expect([first.status, second.status]).toEqual([200, 200]);
    const res = await app.request('http://app.test/set', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"n":3}',
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('10');
    expect(await res.json()).toEqual({
      error: 'this node holds its maximum of 2 sessions (maxActiveSessions)',
      code: 'TOO_MANY_SESSIONS',
    });
    expect(res.headers.getSetCookie()).toEqual([]);
    expect(a!.stats.rejectedSessions).toBe(1);
    expect(a!.manager.activeSessions()).toBe(2);
    // Existing sessions are still served, and a request that never touches a session is not refused.
    expect((await call(app, 'POST', '/set', { cookie: first.cookie!, body: { n: 10 } })).status).toBe(200);
    expect((await call(app, 'GET', '/noop')).status).toBe(200);
  });
});

describe('hostile cookies', () => {
  it('never answers 500 to oversized, duplicated, malformed or non-ASCII session cookies', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a']);
    const app = sessionApp(a!);
    const good = (await call(app, 'POST', '/set', { body: { n: 1 } })).cookie!;
    const cookies = [
      `SESSIONID=${'x'.repeat(8000)}`,
      `SESSIONID=${good}; SESSIONID=${good}x`,
      `SESSIONID=${good}x; SESSIONID=${good}`,
      'SESSIONID=%E0%A4%A',
      'SESSIONID=\u00fc\u00df.\u00e9',
      'SESSIONID="quoted.value"',
      'SESSIONID',
      ';;;==;',
      `SESSIONID=${good.replace('.', '..')}`,
      `SESSIONID=../../etc/passwd.a`,
    ];
    for (const cookie of cookies) {
      const res = await app.request('http://app.test/get', { headers: { cookie } });
      expect(res.status, cookie.slice(0, 40)).toBe(200);
      const body = (await res.json()) as { id: string };
      // Either the valid session is found, or a fresh id is issued: never the client's value.
      expect(body.id === good || !cookie.includes(body.id.split('.')[0]!), cookie.slice(0, 40)).toBe(true);
    }
  });
});

describe('send mode persist', () => {
  it('answers 503 with Retry-After when the replication log cannot store the change, 200 when it can', async () => {
    let failing = true;
    let stored = 0;
    const log = {
      name: 'fake',
      ensure: async () => undefined,
      bounds: async () => ({ first: 0, last: 0 }),
      follow: async () => ({ stop: () => undefined }),
      append: async () => {
        if (failing) throw new Error('JetStream unavailable');
        return ++stored;
      },
    };
    const [a] = await startNodes(new MemoryBus(), ['a'], { log, sendMode: 'persist' });
    const app = sessionApp(a!);
    const refused = await app.request('http://app.test/set', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toEqual({
      error: 'the change could not be stored in the replication log; retry',
      code: 'CHANGE_NOT_STORED',
    });
    expect(a!.stats.replicationErrors).toBe(1);
    failing = false;
    const ok = await call(app, 'POST', '/set', { body: { n: 2 } });
    expect(ok.status).toBe(200);
    expect(stored).toBe(1);
  });

  it('a refused change is undone on the node: a write is not read back, an invalidate leaves the session live', async () => {
    let failing = false;
    const log = {
      name: 'fake',
      ensure: async () => undefined,
      bounds: async () => ({ first: 0, last: 0 }),
      follow: async () => ({ stop: () => undefined }),
      append: async () => {
        if (failing) throw new Error('JetStream unavailable');
        return 1;
      },
    };
    const [a] = await startNodes(new MemoryBus(), ['a'], { log, sendMode: 'persist' });
    const app = sessionApp(a!);
    const created = await call(app, 'POST', '/set', { body: { n: 1 } });
    expect(created.status).toBe(200);
    const cookie = created.cookie!;
    failing = true;
    expect((await call(app, 'POST', '/set', { cookie, body: { n: 2 } })).status).toBe(503);
    expect(attributesOn(a!, keyOf(cookie))).toEqual({ n: 1 });
    expect((await call(app, 'POST', '/invalidate', { cookie })).status).toBe(503);
    expect(attributesOn(a!, keyOf(cookie))).toEqual({ n: 1 });
    expect(a!.manager.inspect(keyOf(cookie))?.ended).toBeUndefined();
    // A session created by a refused request does not stay behind either.
    expect((await call(app, 'POST', '/set', { body: { other: true } })).status).toBe(503);
    expect(a!.manager.activeSessions()).toBe(1);
  });
});

describe('a request while the node joins', () => {
  it.each(['delta', 'backup'] as const)(
    '%s: a request naming a session waits for the state transfer instead of starting a new, empty session',
    async (manager) => {
      const bus = new MemoryBus();
      const [a] = await startNodes(bus, ['a'], { manager });
      const wrote = await call(sessionApp(a!), 'POST', '/set', { body: { v: 1 } });
      expect(wrote.status).toBe(200);
      const joiner = makeNode(bus, 'b', { manager });
      const joining = joiner.start();
      expect(joiner.ready).toBe(false);
      const read = await call(sessionApp(joiner), 'GET', '/get', { cookie: wrote.cookie! });
      await joining;
      expect(read.status, read.text).toBe(200);
      const body = JSON.parse(read.text) as { id: string; attributes: Record<string, unknown> };
      expect(keyOf(body.id)).toBe(keyOf(wrote.cookie!));
      expect(body.attributes).toEqual({ v: 1 });
    },
  );

  it('a request without a session cookie is served at once while the node joins', async () => {
    const bus = new MemoryBus();
    // The donor holds back what arrives on its own subject: the joiner's page request waits there until released.
    const donor = holdingChannel(new MemoryChannel(bus), ['sessrep.test.node.a']);
    await startNodes(bus, ['a'], { channel: donor });
    donor.hold();
    // A budget far beyond the test: the join ends with the release, not with a timeout.
    const joiner = makeNode(bus, 'b', { stateTransferTimeoutMs: 60_000 });
    const joining = joiner.start();
    await waitFor('the state transfer under way', () => joiner.manager.stateTransfer.state === 'running');
    const fresh = await call(sessionApp(joiner), 'POST', '/set', { body: { v: 1 } });
    expect(joiner.ready).toBe(false);
    expect(fresh.status).toBe(200);
    donor.release();
    await joining;
    expect(joiner.ready).toBe(true);
  });
});
