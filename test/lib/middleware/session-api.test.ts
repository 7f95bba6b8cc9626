// Owns: unit tests of the session API users expect, through the middleware on the in-process channel:
// lazy sessions, cookie options (prefix, SameSite, Max-Age, partitioned, trustProxy), flash, absolute
// lifetime, typed data with a Standard Schema, and waitUntil on edge runtimes.
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MemoryBus } from '../../../lib/channel/memory.ts';
import { InvalidOptionsError } from '../../../lib/errors.ts';
import type { SessionVariables } from '../../../lib/middleware/session-middleware.ts';
import type { SchemaData } from '../../../lib/session/schema.ts';
import { parseSessionId } from '../../../lib/session/ids.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { attributesOn, startNodes } from '../../kit/memory-nodes.ts';

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

describe('lazy sessions', () => {
  it('10,000 anonymous requests whose handler only reads leave 0 sessions on every node and send no Set-Cookie', async () => {
    const nodes = await startNodes(new MemoryBus(), ['n1', 'n2', 'n3']);
    const apps = nodes.map((node) => {
      const app = new Hono<{ Variables: SessionVariables }>();
      app.use(node.middleware());
      app.get('/guard', (c) => {
        const session = c.get('session');
        return c.json({
          user: session.get('user') ?? null,
          has: session.has('user'),
          keys: session.keys(),
          id: session.id.length > 0,
          flash: session.takeFlash('notice') ?? null,
        });
      });
      return app;
    });
    let setCookies = 0;
    for (let i = 0; i < 10_000; i++) {
      const res = await apps[i % apps.length]!.request('http://app.test/guard');
      expect(res.status).toBe(200);
      setCookies += res.headers.getSetCookie().length;
    }
    expect(setCookies).toBe(0);
    for (const node of nodes) {
      expect(node.manager.sessionCounts().total).toBe(0);
      expect([...node.manager.liveSessions()]).toHaveLength(0);
      expect(node.stats.sessionsCreated).toBe(0);
    }
  });

  it('touch() creates the session: stored on every node, cookie sent', async () => {
    const nodes = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(nodes[0]!.middleware());
    app.post('/consent', (c) => {
      c.get('session').touch();
      return c.text('ok');
    });
    const res = await app.request('http://app.test/consent', { method: 'POST' });
    const cookie = res.headers.getSetCookie()[0]!;
    const key = parseSessionId(cookie.split(';')[0]!.split('=')[1])!.key;
    await waitFor('the session on n2', () => nodes[1]!.manager.find(key) !== undefined);
    expect(attributesOn(nodes[0]!, key)).toEqual({});
  });
});

describe('cookie options', () => {
  async function cookieFor(
    options: Parameters<Awaited<ReturnType<typeof startNodes>>[number]['middleware']>[0],
    init?: { url?: string; headers?: Record<string, string> },
  ) {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware(options));
    app.post('/', (c) => {
      c.get('session').set('a', 1);
      return c.text(c.get('session').id);
    });
    const res = await app.request(init?.url ?? 'http://app.test/', { method: 'POST', headers: init?.headers ?? {} });
    const [line, versionLine] = res.headers.getSetCookie();
    return { line: line!, versionLine, id: await res.text(), app };
  }

  it("secure 'auto' ignores X-Forwarded-Proto unless trustProxy is on", async () => {
    const untrusted = await cookieFor({}, { headers: { 'x-forwarded-proto': 'https' } });
    expect(cookieAttributes(untrusted.line).has('secure')).toBe(false);
    const trusted = await cookieFor({ trustProxy: true }, { headers: { 'x-forwarded-proto': 'https, http' } });
    expect(cookieAttributes(trusted.line).has('secure')).toBe(true);
    const plain = await cookieFor(
      { trustProxy: true },
      { url: 'https://app.test/', headers: { 'x-forwarded-proto': 'http' } },
    );
    expect(cookieAttributes(plain.line).has('secure')).toBe(false); // the proxy says the client used http
  });

  it("cookiePrefix 'host' sends __Host-SESSIONID, Secure, Path=/, no Domain, and reads it back", async () => {
    const { line, versionLine, id, app } = await cookieFor({ cookiePrefix: 'host' });
    expect(line.startsWith(`__Host-SESSIONID=${id}`)).toBe(true);
    expect(versionLine?.startsWith('__Host-SESSIONID_v=')).toBe(true);
    const version = versionLine!.split(';')[0]!;
    const attributes = cookieAttributes(line);
    expect(attributes.has('secure')).toBe(true);
    expect(attributes.get('path')).toBe('/');
    expect(attributes.has('domain')).toBe(false);
    const again = await app.request('https://app.test/', {
      method: 'POST',
      headers: { cookie: `__Host-SESSIONID=${id}; ${version}` },
    });
    expect(await again.text()).toBe(id); // the same session: found under the prefixed name
    // The write moved the version on (the presented one was read under the prefixed name): only the version cookie again.
    const lines = again.headers.getSetCookie();
    expect(lines).toHaveLength(1);
    expect(lines[0]!.startsWith('__Host-SESSIONID_v=')).toBe(true);
    expect(lines[0]!.split(';')[0]).not.toBe(version);
  });

  it('sameSite, partitioned and a fixed maxAge are written', async () => {
    const { line } = await cookieFor({ sameSite: 'None', partitioned: true, maxAge: 3600 });
    const attributes = cookieAttributes(line);
    expect(attributes.get('samesite')).toBe('None');
    expect(attributes.has('partitioned')).toBe(true);
    expect(attributes.has('secure')).toBe(true);
    expect(attributes.get('max-age')).toBe('3600');
  });

  it("maxAge 'expiry' follows the earlier of idle timeout and absolute lifetime, refreshed on every request", async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1'], { maxInactiveSeconds: 600, maxLifetimeSeconds: 120 });
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware({ maxAge: 'expiry' }));
    app.post('/', (c) => {
      c.get('session').set('a', 1);
      return c.text(c.get('session').id);
    });
    app.get('/', (c) => c.text('read'));
    const first = await app.request('http://app.test/', { method: 'POST' });
    const maxAge = Number(cookieAttributes(first.headers.getSetCookie()[0]!).get('max-age'));
    expect(maxAge).toBeGreaterThan(110);
    expect(maxAge).toBeLessThanOrEqual(120);
    const id = await first.text();
    const version = first.headers.getSetCookie()[1]!.split(';')[0]!;
    const second = await app.request('http://app.test/', { headers: { cookie: `SESSIONID=${id}; ${version}` } });
    // Both cookies are refreshed: the version cookie lives as long as the session cookie.
    const lines = second.headers.getSetCookie();
    expect(lines.map((line) => line.split('=')[0])).toEqual(['SESSIONID', 'SESSIONID_v']);
    expect(lines.map((line) => cookieAttributes(line).get('max-age'))).toEqual([
      expect.stringMatching(/^1[01]\d|120$/),
      cookieAttributes(lines[0]!).get('max-age'),
    ]);
  });

  it.each<[string, Record<string, unknown>]>([
    ['cookiePrefix host with a path', { cookiePrefix: 'host', cookiePath: '/shop' }],
    ['cookiePrefix host with a domain', { cookiePrefix: 'host', cookieDomain: 'example.com' }],
    ['cookiePrefix with secure false', { cookiePrefix: 'secure', secure: false }],
    ['sameSite None with secure false', { sameSite: 'None', secure: false }],
    ['partitioned with secure false', { partitioned: true, secure: false }],
    ['a negative maxAge', { maxAge: -1 }],
    ['an unknown sameSite', { sameSite: 'Sometimes' }],
    ['a cookie name with a space', { cookieName: 'my session' }],
  ])('refuses %s with InvalidOptionsError', async (_label, options) => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    expect(() => n1!.middleware(options)).toThrow(InvalidOptionsError);
  });
});

describe('flash messages', () => {
  it('a flash set before a redirect is read once by the next request, then gone on every node', async () => {
    const nodes = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const appOn = (i: number) => {
      const app = new Hono<{ Variables: SessionVariables }>();
      app.use(nodes[i]!.middleware());
      app.post('/save', (c) => {
        c.get('session').flash('notice', 'saved');
        return c.redirect('/');
      });
      app.get('/', (c) => c.json({ notice: c.get('session').takeFlash<string>('notice') ?? null }));
      return app;
    };
    const saved = await appOn(0).request('http://app.test/save', { method: 'POST' });
    const cookie = saved.headers.getSetCookie()[0]!.split(';')[0]!;
    const key = parseSessionId(cookie.split('=')[1])!.key;
    await waitFor('the flash on n2', () => attributesOn(nodes[1]!, key)?.['flash:notice'] === 'saved');
    expect(await (await appOn(1).request('http://app.test/', { headers: { cookie } })).json()).toEqual({
      notice: 'saved',
    });
    await waitFor('the flash removed on n1', () => attributesOn(nodes[0]!, key)?.['flash:notice'] === undefined);
    expect(await (await appOn(0).request('http://app.test/', { headers: { cookie } })).json()).toEqual({
      notice: null,
    });
  });
});

describe('absolute lifetime', () => {
  it('a session in constant use ends at maxLifetimeSeconds on every node', async () => {
    const nodes = await startNodes(new MemoryBus(), ['n1', 'n2'], {
      maxInactiveSeconds: 600,
      maxLifetimeSeconds: 1,
      sweepIntervalMs: 100,
    });
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(nodes[0]!.middleware());
    app.post('/', (c) => {
      c.get('session').set('n', 1);
      return c.text(c.get('session').id);
    });
    app.get('/', (c) => c.json({ n: c.get('session').get('n') ?? null }));
    const id = await (await app.request('http://app.test/', { method: 'POST' })).text();
    const key = parseSessionId(id)!.key;
    await waitFor('the session on n2', () => nodes[1]!.manager.find(key) !== undefined);
    await waitFor('the lifetime to end the session everywhere', async () => {
      await app.request('http://app.test/', { headers: { cookie: `SESSIONID=${id}` } }); // keep it in use
      return nodes.every((node) => node.manager.inspect(key)?.ended?.reason === 'expired');
    });
    expect(await (await app.request('http://app.test/', { headers: { cookie: `SESSIONID=${id}` } })).json()).toEqual({
      n: null,
    });
  });

  it('refuses a negative maxLifetimeSeconds', async () => {
    await expect(startNodes(new MemoryBus(), ['n1'], { maxLifetimeSeconds: -1 })).rejects.toThrow(InvalidOptionsError);
  });
});

describe('typed data with a Standard Schema', () => {
  interface Data extends Record<string, unknown> {
    visits: number;
  }

  it('set() refuses a value that does not match: 500 from the handler, nothing stored', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1'], { schema: { visits: z.number().int() } });
    const app = new Hono<{ Variables: SessionVariables<Data> }>();
    app.onError((error, c) => c.json({ code: (error as { code?: string }).code }, 400));
    app.use(n1!.middleware<Data>());
    app.post('/', async (c) => {
      c.get('session').set('visits', (await c.req.json<{ visits: number }>()).visits);
      return c.json({ visits: c.get('session').get('visits') ?? null });
    });
    const bad = await app.request('http://app.test/', { method: 'POST', body: JSON.stringify({ visits: 'many' }) });
    expect(await bad.json()).toEqual({ code: 'INVALID_SESSION_VALUE' });
    expect(bad.headers.getSetCookie()).toHaveLength(0);
    expect(n1!.manager.sessionCounts().total).toBe(0);
    const good = await app.request('http://app.test/', { method: 'POST', body: JSON.stringify({ visits: 3 }) });
    expect(await good.json()).toEqual({ visits: 3 });
  });

  it('refuses a schema entry that is not a Standard Schema', async () => {
    await expect(startNodes(new MemoryBus(), ['n1'], { schema: { visits: {} as never } })).rejects.toThrow(
      InvalidOptionsError,
    );
  });
});

describe('edge commit', () => {
  it('in async mode the commit is handed to executionCtx.waitUntil and has left the node when it resolves', async () => {
    const nodes = await startNodes(new MemoryBus(), ['n1', 'n2']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(nodes[0]!.middleware());
    app.post('/', (c) => {
      c.get('session').set('a', 1);
      return c.text(c.get('session').id);
    });
    const handed: Promise<unknown>[] = [];
    const ctx = {
      waitUntil: (p: Promise<unknown>) => void handed.push(p),
      passThroughOnException: () => undefined,
      props: {},
    };
    const res = await app.fetch(new Request('http://app.test/', { method: 'POST' }), {}, ctx);
    expect(handed).toHaveLength(1);
    expect(nodes[0]!.stats.sent.delta).toBe(1); // the turn's batch is handed to the channel before the response
    await handed[0];
    const key = parseSessionId(await res.text())!.key;
    expect(nodes[0]!.stats.sent.delta).toBe(1);
    await waitFor('the session on n2', () => nodes[1]!.manager.find(key) !== undefined);
  });

  it('a read-only request hands nothing to waitUntil', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware());
    app.get('/', (c) => c.text(String(c.get('session').get('a') ?? '')));
    const handed: Promise<unknown>[] = [];
    await app.fetch(
      new Request('http://app.test/'),
      {},
      { waitUntil: (p: Promise<unknown>) => void handed.push(p), passThroughOnException: () => undefined, props: {} },
    );
    expect(handed).toHaveLength(0);
  });
});

describe('session events', () => {
  it('on() refuses an unknown event type or a listener that is not a function with InvalidOptionsError; the remover stops delivery', async () => {
    const [n1] = await startNodes(new MemoryBus(), ['n1']);
    expect(() => n1!.on('destroyed' as 'ended', () => undefined)).toThrow(InvalidOptionsError);
    expect(() => n1!.on('ended', 'log' as never)).toThrow(InvalidOptionsError);
    const seen: string[] = [];
    const off = n1!.on('attribute', (e) => seen.push(e.name));
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(n1!.middleware());
    app.post('/:name', (c) => {
      c.get('session').set(c.req.param('name'), 1);
      return c.text(c.get('session').id);
    });
    const id = await (await app.request('http://app.test/a', { method: 'POST' })).text();
    off();
    await app.request('http://app.test/b', { method: 'POST', headers: { cookie: `SESSIONID=${id}` } });
    expect(seen).toEqual(['a']);
  });
});

describe("the README's typed example", () => {
  it('SchemaData<typeof schema> types get and set; the schema checks set()', async () => {
    const schema = { cart: z.array(z.string()), visits: z.number().int().nonnegative() };
    type Data = SchemaData<typeof schema>;
    const [n1] = await startNodes(new MemoryBus(), ['n1'], { schema });
    const app = new Hono<{ Variables: SessionVariables<Data> }>();
    app.use('*', n1!.middleware<Data>());
    app.post('/visit', (c) => {
      const session = c.get('session');
      session.set('visits', (session.get('visits') ?? 0) + 1);
      // @ts-expect-error visits is a number
      if (c.req.query('bad')) session.set('visits', 'x');
      return c.json({ visits: session.get('visits') });
    });
    const first = await app.request('http://app.test/visit', { method: 'POST' });
    expect(await first.json()).toEqual({ visits: 1 });
    const cookie = first.headers.getSetCookie()[0]!.split(';')[0]!;
    expect(await (await app.request('http://app.test/visit', { method: 'POST', headers: { cookie } })).json()).toEqual({
      visits: 2,
    });
    expect((await app.request('http://app.test/visit?bad=1', { method: 'POST', headers: { cookie } })).status).toBe(
      500,
    );
  });
});
