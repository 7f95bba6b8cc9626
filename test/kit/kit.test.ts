// Owns: behavioural tests of the launcher and the test kit (ports, waiting, processes, nats-server, nodes, cookie client).
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import {
  ADMIN_TOKEN,
  REPO_ROOT,
  CookieClient,
  freePort,
  portIsFree,
  ProcessGroup,
  spawnTracked,
  startNatsServer,
  startNode,
  stopAllTracked,
  trackedProcesses,
  waitFor,
  waitForHttp,
} from './index.ts';

afterAll(() => stopAllTracked());

/** Publishes one message through the server at `url` and returns what the subscriber received. */
async function roundTrip(url: string, payload = 'hello'): Promise<string> {
  const nc = await connect({ servers: url, reconnect: false });
  try {
    const sub = nc.subscribe('kit.roundtrip', { max: 1 });
    const got = (async () => {
      for await (const m of sub) return m.string();
      throw new Error('subscription closed without a message');
    })();
    await nc.flush();
    nc.publish('kit.roundtrip', payload);
    return await got;
  } finally {
    await nc.close();
  }
}

/** Resolves with the error code of a TCP connect to 127.0.0.1:port, or "connected". */
function tcpProbe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Starts an http server on a random port with `handler`; returns its base URL and a close function. */
async function httpServer(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const nodeScript = (code: string) => [process.execPath, ['-e', code]] as const;

describe('ports', () => {
  it('freePort returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const s = net.createServer();
    await new Promise<void>((resolve, reject) => s.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((r) => s.close(r));
  });

  it('freePort never hands out the same port twice in one process (a cluster gets distinct ports)', async () => {
    // The kernel's bind(0) gives a just-closed port again often enough: 260 of 2000 calls repeated one
    // before, and a NATS cluster once got the same port as one server's client and route port.
    const ports: number[] = [];
    for (let i = 0; i < 1000; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
  });
});

describe('portIsFree', () => {
  it('is false while something listens on the port and true once it closed', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    expect(await portIsFree(port)).toBe(false);
    await new Promise((resolve) => server.close(resolve));
    expect(await portIsFree(port)).toBe(true);
  });
});

describe('waitFor', () => {
  it('resolves with the first value that is not undefined/false, treating throws as not yet', async () => {
    let n = 0;
    const v = await waitFor('counter', () => {
      n++;
      if (n < 3) throw new Error('not yet');
      return n < 5 ? false : n;
    });
    expect(v).toBe(5);
  });

  it('times out with a message naming what it waited for and the last error', async () => {
    const err = await waitFor(
      'the moon to turn blue',
      () => {
        throw new Error('still grey');
      },
      { timeoutMs: 100 },
    ).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^timed out after 100ms waiting for the moon to turn blue: still grey$/);
  });

  it('does not hang on an attempt that never settles', async () => {
    const started = Date.now();
    const err = await waitFor('a hung promise', () => new Promise<number>(() => {}), { timeoutMs: 150 }).catch(
      (e: Error) => e,
    );
    expect((err as Error).message).toContain('waiting for a hung promise');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('stops waiting when the watched process exits, with its output', async () => {
    const p = spawnTracked(process.execPath, ['-e', "console.log('bye'); process.exit(4)"]);
    const err = await waitFor('never', () => false, { timeoutMs: 10_000, process: p }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/exited while waiting for never \(code 4, signal null\)\n[\s\S]*bye/);
  });

  it('stops waiting with an AbortError when the signal aborts', async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 50);
    const err = await waitFor('never', () => false, { timeoutMs: 10_000, signal: abort.signal }).catch((e: Error) => e);
    expect((err as Error).name).toBe('AbortError');
  });

  it('waitForHttp polls until the expected status', async () => {
    let hits = 0;
    const srv = await httpServer((_req, res) => {
      hits++;
      res.writeHead(hits >= 3 ? 200 : 503).end(hits >= 3 ? 'ready' : 'starting');
    });
    try {
      const r = await waitForHttp(`${srv.url}/healthz`, { status: 200, timeoutMs: 5000 });
      expect(r).toEqual({ status: 200, body: 'ready' });
      expect(hits).toBe(3);
      const err = await waitForHttp(`${srv.url}/healthz`, { status: 204, timeoutMs: 200 }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/to answer 204: got 200/);
    } finally {
      await srv.close();
    }
  });
});

describe('processes', () => {
  it('collects output and waits for a pattern', async () => {
    const [cmd, args] = nodeScript("console.log('out-line'); console.error('err-line'); setInterval(() => {}, 1000)");
    const p = spawnTracked(cmd, args);
    await p.waitForOutput(/err-line/);
    await p.waitForOutput(/out-line/);
    expect(p.output()).toContain('out-line');
    await p.stop();
    expect(await p.exited).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it("kill('SIGKILL') is reported as signal SIGKILL", async () => {
    const [cmd, args] = nodeScript("console.log('ready'); setInterval(() => {}, 1000)");
    const p = spawnTracked(cmd, args);
    await p.waitForOutput(/ready/);
    expect(p.kill('SIGKILL')).toBe(true);
    expect(await p.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(p.hasExited).toBe(true);
    expect(trackedProcesses()).not.toContain(p);
  });

  it('stop() escalates to SIGKILL when SIGTERM is ignored', async () => {
    const [cmd, args] = nodeScript(
      "process.on('SIGTERM', () => console.log('ignoring TERM')); console.log('ready'); setInterval(() => {}, 1000)",
    );
    const p = spawnTracked(cmd, args);
    await p.waitForOutput(/ready/);
    await p.stop(200);
    expect((await p.exited).signal).toBe('SIGKILL');
    expect(p.output()).toContain('ignoring TERM');
  });

  it('waitForOutput rejects with the output when the process exits first', async () => {
    const [cmd, args] = nodeScript("console.error('boom'); process.exit(7)");
    const p = spawnTracked(cmd, args);
    await expect(p.waitForOutput(/never printed/)).rejects.toThrow(/exited before printing[\s\S]*boom/);
    expect((await p.exited).code).toBe(7);
  });

  it('stopAllTracked stops every live process', async () => {
    const procs = [1, 2].map(() => spawnTracked(...nodeScript("console.log('up'); setInterval(() => {}, 1000)")));
    await Promise.all(procs.map((p) => p.waitForOutput(/up/)));
    await stopAllTracked();
    expect(trackedProcesses()).toEqual([]);
    for (const p of procs) expect(() => process.kill(p.pid, 0)).toThrow(/ESRCH/);
  });

  it('throws clearly when the command does not exist', () => {
    expect(() => spawnTracked('/nonexistent/definitely-not-here')).toThrow(/failed to spawn/);
  });
});

describe('ProcessGroup', () => {
  it('writes output to a log file, hands over complete lines, and stops only its own children', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kit-group-'));
    try {
      const group = new ProcessGroup();
      const lines: string[] = [];
      const p = group.spawn(
        process.execPath,
        ['-e', "process.stdout.write('one\\ntw'); setTimeout(() => console.log('o'), 50); setInterval(() => {}, 1000)"],
        {
          name: 'lines',
          logFile: join(dir, 'lines.log'),
          onLine: (line) => lines.push(line),
        },
      );
      await waitFor('both lines', () => lines.length === 2);
      expect(lines).toEqual(['one', 'two']);
      expect(group.live()).toEqual([p]);
      expect(trackedProcesses()).not.toContain(p);
      await group.stopAll();
      expect(p.hasExited).toBe(true);
      expect(group.live()).toEqual([]);
      expect(readFileSync(join(dir, 'lines.log'), 'utf8')).toBe('one\ntwo\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('startNatsServer', () => {
  it('starts a server that pub/sub round-trips, and stop() closes the port and removes its dir', async () => {
    const s = await startNatsServer();
    expect(s.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(s.wsUrl).toBeUndefined();
    expect(await roundTrip(s.url, 'ping')).toBe('ping');
    await s.stop();
    expect(await tcpProbe(s.port)).toBe('ECONNREFUSED');
    expect(existsSync(s.dir)).toBe(false);
    await s.stop(); // idempotent
  });

  it('enables JetStream and WebSocket when asked, and can restart on the same port', async () => {
    const s = await startNatsServer({ jetstream: true, websocket: true });
    const wsPort = Number(new URL(s.wsUrl!).port);
    const nc = await connect({ servers: s.url, reconnect: false });
    expect(nc.info?.jetstream).toBe(true);
    await nc.close();
    expect(await tcpProbe(wsPort)).toBe('connected');

    s.kill('SIGKILL');
    expect((await s.process.exited).signal).toBe('SIGKILL');
    expect(await tcpProbe(s.port)).toBe('ECONNREFUSED');
    await s.stop();

    const again = await startNatsServer({ port: s.port });
    try {
      expect(again.url).toBe(s.url);
      expect(await roundTrip(again.url)).toBe('hello');
    } finally {
      await again.stop();
    }
  });

  it("reports the server's own output when it fails to start", async () => {
    await expect(startNatsServer({ extraConfig: 'this is { not valid' })).rejects.toThrow(
      /exited early[\s\S]*nats-server output:/,
    );
  });

  it('the shared server from global setup works', async () => {
    const url = inject('natsUrl');
    expect(url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(inject('natsWsUrl')).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(await roundTrip(url, 'shared')).toBe('shared');
  });
});

describe('startNode (against a fake CLI)', () => {
  const script = 'test/kit/fixtures/fake-node.mjs';

  it('passes the serve contract flags and the admin token, runs from the repo root and waits for /readyz 200', async () => {
    const n = await startNode({
      script,
      cluster: 'c1',
      node: 'n1',
      nats: 'nats://127.0.0.1:1,nats://127.0.0.1:2',
      manager: 'delta',
      send: 'ack',
      maxInactive: 30,
      extraArgs: ['--x'],
    });
    try {
      const r = await fetch(`${n.url}/argv`);
      const body = (await r.json()) as { args: string[]; cwd: string; probes: number; adminToken: string };
      expect(body.args).toEqual([
        'serve',
        '--cluster',
        'c1',
        '--node',
        'n1',
        '--port',
        String(n.port),
        '--host',
        '127.0.0.1',
        '--nats',
        'nats://127.0.0.1:1,nats://127.0.0.1:2',
        '--manager',
        'delta',
        '--send',
        'ack',
        '--max-inactive',
        '30',
        '--x',
      ]);
      expect(body.cwd).toBe(REPO_ROOT);
      expect(body.adminToken).toBe(ADMIN_TOKEN);
      expect(body.probes).toBeGreaterThanOrEqual(3); // two 503s were waited out
      expect(n.url).toBe(`http://127.0.0.1:${n.port}`);
    } finally {
      await n.stop();
    }
    expect(n.process.hasExited).toBe(true);
  });

  it('omits optional flags and can skip the readiness wait', async () => {
    const n = await startNode({ script, cluster: 'c', node: 'a', waitReady: false });
    try {
      expect(n.args).toEqual([
        'serve',
        '--cluster',
        'c',
        '--node',
        'a',
        '--port',
        String(n.port),
        '--host',
        '127.0.0.1',
      ]);
      await n.process.waitForOutput(/listening on/);
      expect((await fetch(`${n.url}/readyz`)).status).toBe(503);
    } finally {
      await n.stop();
    }
  });

  it("rejects with the node's output when it exits before becoming ready", async () => {
    await expect(
      startNode({ script, cluster: 'c', node: 'bad', env: { FAKE_NODE_FAIL: 'no config' } }),
    ).rejects.toThrow(/node bad did not become ready: exited early \(code 3[\s\S]*refusing to start: no config/);
  });
});

describe('CookieClient', () => {
  it('stores SESSIONID, sends it to any node, and forgets it on Max-Age=0', async () => {
    const seen: Array<string | undefined> = [];
    const handler: http.RequestListener = (req, res) => {
      seen.push(req.headers.cookie);
      if (req.url === '/login') res.setHeader('set-cookie', ['other=1; Path=/', 'SESSIONID=abc123; Path=/; HttpOnly']);
      if (req.url === '/logout') res.setHeader('set-cookie', 'SESSIONID=; Path=/; Max-Age=0');
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ path: req.url, method: req.method }));
    };
    const a = await httpServer(handler);
    const b = await httpServer(handler);
    try {
      const c = new CookieClient();
      const login = await c.request(a.url, 'POST', '/login', { user: 'u' });
      expect(login.status).toBe(200);
      expect(login.json).toEqual({ path: '/login', method: 'POST' });
      expect(login.setCookie).toHaveLength(2);
      expect(c.cookie).toBe('abc123');

      await c.request(b.url, 'GET', '/whoami');
      expect(seen.at(-1)).toBe('SESSIONID=abc123');

      await c.request(a.url, 'POST', '/logout');
      expect(c.cookie).toBeUndefined();
      await c.request(b.url, 'GET', '/whoami');
      expect(seen.at(-1)).toBeUndefined();
      expect(seen[0]).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('carries the cookie to an app in this process and to a test node holding one, with its key and route', async () => {
    const app = new Hono();
    app.get('/login', (c) => {
      c.header('set-cookie', 'SESSIONID=k123.n2; Path=/');
      return c.json({ cookie: c.req.header('cookie') ?? null, url: c.req.url });
    });
    app.get('/whoami', (c) => c.json({ cookie: c.req.header('cookie') ?? null }));
    const c = new CookieClient();
    expect(() => c.key).toThrow(/no session cookie/);
    const login = await c.request(app, 'GET', '/login');
    expect(login.json).toEqual({ cookie: null, url: 'http://app.test/login' });
    expect([c.key, c.route]).toEqual(['k123', 'n2']);
    expect((await c.request({ app }, 'GET', '/whoami')).json).toEqual({ cookie: 'SESSIONID=k123.n2' });
  });

  it('treats an Expires in the past as deletion unless Max-Age says otherwise', () => {
    const c = new CookieClient({ cookie: 'x' });
    c.absorb('SESSIONID=y; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60');
    expect(c.cookie).toBe('y');
    c.absorb('SESSIONID=y; Expires=Thu, 01 Jan 1970 00:00:00 GMT');
    expect(c.cookie).toBeUndefined();
  });
});
