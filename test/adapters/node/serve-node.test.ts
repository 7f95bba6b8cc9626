// Owns: tests of adapters/node (serveNode) with real processes: a user's tiny app (fixtures/user-app.ts)
// served by the adapter as two member nodes over a real nats-server; the admin routes only on the
// internal port; SIGTERM drains, lets a request in flight finish, leaves at once and exits 0 with no
// acknowledged write lost. In process: options checking, the 503 while starting, the admin prefix.
import { resolve } from 'node:path';
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serveNode, type NodeServer } from '../../../adapters/node/index.ts';
import { InvalidOptionsError, MemoryBus, MemoryChannel, consoleLogger, createCluster } from '../../../lib/index.ts';
import {
  REPO_ROOT,
  CookieClient,
  spawnTracked,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TrackedProcess,
} from '../../kit/index.ts';

const TOKEN = 'serve-node-test-admin-token-012345';
const BEARER = { authorization: `Bearer ${TOKEN}` };
const FIXTURE = resolve(REPO_ROOT, 'test/adapters/node/fixtures/user-app.ts');

interface UserNode {
  name: string;
  process: TrackedProcess;
  url: string;
  admin: string;
}

let nats: NatsServerHandle;
const processes: TrackedProcess[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await nats?.stop();
});

async function startUserNode(cluster: string, name: string): Promise<UserNode> {
  const proc = spawnTracked(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      NODE_NO_WARNINGS: '1',
      NATS_URL: nats.url,
      NODE: name,
      CLUSTER: cluster,
      ADMIN_TOKEN: TOKEN,
    },
    name: `user app ${name}`,
  });
  processes.push(proc);
  const [, json] = await proc.waitForOutput(/listening (\{.*\})/, 30_000);
  const { port, adminPort } = JSON.parse(json!) as { port: number; adminPort: number };
  const node = { name, process: proc, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` };
  await waitFor(`${name} ready`, async () => (await fetch(`${node.admin}/readyz`)).status === 200, {
    timeoutMs: 30_000,
  });
  return node;
}

async function membersOf(node: UserNode): Promise<string[]> {
  const status = (await (await fetch(`${node.admin}/cluster`, { headers: BEARER })).json()) as {
    members: { node: string; ready: boolean }[];
  };
  return status.members
    .filter((m) => m.ready)
    .map((m) => m.node)
    .sort();
}

describe('serveNode with real processes over nats-server', () => {
  it("serves the user's app and the admin routes apart; SIGTERM drains, finishes the request in flight, leaves at once, exits 0, loses no write", async () => {
    const cluster = `adapter-${process.pid}-${Date.now().toString(36)}`;
    const a = await startUserNode(cluster, 'a');
    const b = await startUserNode(cluster, 'b');
    await waitFor(
      'a and b to see each other',
      async () => (await membersOf(a)).join() === 'a,b' && (await membersOf(b)).join() === 'a,b',
    );

    // The admin routes live on the internal port only, behind the token.
    expect((await fetch(`${a.url}/cluster`, { headers: BEARER })).status).toBe(404);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(404);
    expect((await fetch(`${a.admin}/cluster`)).status).toBe(401);
    const metrics = await (await fetch(`${a.admin}/metrics`, { headers: BEARER })).text();
    expect(metrics).toMatch(/^sessrep_ready\{cluster="[^"]+",node="a"\} 1$/m);
    expect(metrics).toMatch(/^process_resident_memory_bytes\{cluster="[^"]+",node="a"\} \d+$/m);

    // Acknowledged writes (ack mode) through a.
    const user = new CookieClient();
    for (let i = 1; i <= 5; i++)
      expect(((await user.request(a.url, 'POST', '/counter')).json as { n: number }).n).toBe(i);

    // A slow request is in flight when SIGTERM arrives: it still completes, and its write reaches b.
    const slow = user.request(a.url, 'POST', '/slow?ms=700');
    await waitFor('the slow request to be in flight', async () => {
      const status = (await (await fetch(`${a.admin}/cluster/drain`, { headers: BEARER })).json()) as {
        inFlight: number;
      };
      return status.inFlight === 1;
    });
    const sentAt = Date.now();
    expect(a.process.kill('SIGTERM')).toBe(true);
    const slowReply = await slow;
    expect(slowReply.status).toBe(200);
    expect(slowReply.json).toEqual({ n: 6, node: 'a' });
    const goneAfter = await waitFor(
      'b to see a leave',
      async () => (!(await membersOf(b)).includes('a') ? Date.now() - sentAt : false),
      { timeoutMs: 10_000, intervalMs: 25 },
    );
    const exit = await a.process.exited;
    expect(exit.code, a.process.output()).toBe(0);
    expect(a.process.output()).toContain('closing on SIGTERM');
    // A graceful leave, not a failure detection (which takes memberDropMs, 3 s by default): the request in flight took 700 ms.
    expect(goneAfter).toBeLessThan(2500);

    // Nothing acknowledged was lost: b continues the session from 6.
    const next = await user.request(b.url, 'POST', '/counter');
    expect(next.status).toBe(200);
    expect(next.json).toEqual({ n: 7, node: 'b' });
    console.info(`[timing] SIGTERM of a: b saw the leave after ${goneAfter} ms (a request of 700 ms was in flight)`);
  }, 120_000);
});

describe('serveNode in process', () => {
  const servers: NodeServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('refuses an admin router without a guard or without a port or prefix', async () => {
    const bus = new MemoryBus();
    const node = createCluster({
      cluster: 'x',
      node: 'a',
      channel: new MemoryChannel(bus),
      logger: consoleLogger('silent'),
    });
    const app = new Hono();
    await expect(
      serveNode(app, { cluster: node, port: 0, shutdownSignals: false, admin: { prefix: '/ops' } }),
    ).rejects.toThrow(/token.*authorize/);
    await expect(
      serveNode(app, { cluster: node, port: 0, shutdownSignals: false, admin: { prefix: '/ops', token: 'short' } }),
    ).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(
      serveNode(app, { cluster: node, port: 0, shutdownSignals: false, admin: { token: TOKEN } as never }),
    ).rejects.toBeInstanceOf(InvalidOptionsError);
  });

  it('answers 503 until the node exists, then serves the app, and the admin routes under a prefix', async () => {
    let create!: () => void;
    const gate = new Promise<void>((r) => (create = r));
    const bus = new MemoryBus();
    const server = await serveNode((node) => new Hono().get('/hello', (c) => c.text(`hello from ${node.node}`)), {
      cluster: async () => {
        await gate;
        return createCluster({
          cluster: 'y',
          node: 'p',
          channel: new MemoryChannel(bus),
          logger: consoleLogger('silent'),
        });
      },
      port: 0,
      hostname: '127.0.0.1',
      shutdownSignals: false,
      admin: { prefix: '/_admin', token: TOKEN },
    });
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;
    const early = await fetch(`${base}/hello`);
    expect(early.status).toBe(503);
    expect(early.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${base}/_admin/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/_admin/readyz`)).status).toBe(503);
    create();
    await server.ready;
    expect(await (await fetch(`${base}/hello`)).text()).toBe('hello from p');
    expect((await fetch(`${base}/_admin/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/_admin/cluster`)).status).toBe(401);
    expect(await (await fetch(`${base}/_admin/cluster`, { headers: BEARER })).json()).toMatchObject({ node: 'p' });
    // The app never sees the admin prefix.
    expect((await fetch(`${base}/_admin/nothing`, { headers: BEARER })).status).toBe(404);
    await server.close();
    // Closed: nothing listens any more.
    await expect(fetch(`${base}/hello`)).rejects.toThrow();
  });
});
