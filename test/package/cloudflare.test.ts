// Owns: the packed package on workerd (the `workerd` npm package, driven with a capnp config): the
// user's Worker from a fresh app folder, bundled with esbuild as Wrangler does, with two member
// Durable Objects of `session-replication/cloudflare` over a real nats-server's WebSocket listener.
// Both become full members (each sees the other alive between requests), a write on one is read back
// on the other and back, each keeps waking itself with its alarm, and the alarms bring both back
// after the process is killed. A Node member (the repository's sources, NATS over TCP) joins the same
// cluster and replicates both ways with the Durable Objects.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { connect } from '@nats-io/transport-node';
import * as esbuild from 'esbuild';
import { Hono } from 'hono';
import { createCluster, type ClusterNode, type SessionVariables } from 'session-replication';
import { NatsChannel } from 'session-replication/nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  spawnTracked,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TrackedProcess,
} from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';
import { writeHereReadThere } from './edge-scenario.ts';

/** The workerd binary of the `workerd` npm package (its platform package; nothing is downloaded). */
function workerdBinary(): string {
  return (createRequire(import.meta.url)('workerd') as { default: string }).default;
}

/** workerd's configuration: the bundled Worker with its Durable Object class, loopback allowed for the NATS WebSocket. */
function capnpConfig(port: number, natsWsUrl: string, cluster: string): string {
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "network", network = (allow = ["public", "private", "local"])),
    (name = "do-storage", disk = (path = "do-storage", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "dist/worker.js") ],
  compatibilityDate = "2025-09-01",
  durableObjectNamespaces = [ (className = "SessionNode", uniqueKey = "session-replication-test") ],
  durableObjectStorage = (localDisk = "do-storage"),
  globalOutbound = "network",
  bindings = [
    (name = "SESSION_NODE", durableObjectNamespace = "SessionNode"),
    (name = "NATS_WS_URL", text = ${JSON.stringify(natsWsUrl)}),
    (name = "CLUSTER", text = ${JSON.stringify(cluster)}),
  ],
);
`;
}

interface MembersView {
  node: string;
  ready: boolean;
  alive: string[];
}

let nats: NatsServerHandle;
let app: InstalledApp;
let workerd: TrackedProcess;
let url: string;

/** Starts workerd on the app's config (its Durable Object storage persists in the app folder). */
function startWorkerd(): TrackedProcess {
  return spawnTracked(workerdBinary(), ['serve', 'config.capnp'], { cwd: app.dir, name: 'workerd' });
}

/** GET /members as the member `route` answers it (the router follows the cookie's route). */
async function members(route: string): Promise<MembersView> {
  const res = await fetch(new URL('/members', url), { headers: { cookie: `SESSIONID=${'A'.repeat(24)}.${route}` } });
  if (res.status !== 200) throw new Error(`GET /members on ${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as MembersView;
}

beforeAll(async () => {
  [nats, app] = await Promise.all([
    startNatsServer({ websocket: true }),
    createApp('test/package/fixtures/edge-app', { dependencies: ['hono', '@nats-io/nats-core'] }),
  ]);
  // The user's bundler: Workers' export conditions, no Node built-ins (no nodejs_compat flag below).
  await esbuild.build({
    absWorkingDir: app.dir,
    entryPoints: ['worker.ts'],
    outfile: 'dist/worker.js',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    conditions: ['workerd', 'worker', 'browser'],
    target: 'es2022',
    logLevel: 'error',
  });
  mkdirSync(join(app.dir, 'do-storage'));
  const port = await freePort();
  writeFileSync(join(app.dir, 'config.capnp'), capnpConfig(port, nats.wsUrl!, `cf-pkg-${process.pid}`));
  workerd = startWorkerd();
  url = `http://127.0.0.1:${port}`;
}, 360_000);

afterAll(async () => {
  await workerd?.stop(5000);
  await nats?.stop();
});

describe('session-replication/cloudflare from the packed tarball, in workerd', () => {
  it('each Durable Object is a full member: both see each other alive and ready', { timeout: 60_000 }, async () => {
    // The first request to each member (through the router) names it and starts it.
    const views = await waitFor(
      'a and b to see each other alive',
      async () => {
        const [a, b] = await Promise.all([members('a'), members('b')]);
        return a.ready && b.ready && a.alive.includes('b') && b.alive.includes('a') ? [a, b] : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(views.map((v) => [v.node, v.alive.sort()])).toEqual([
      ['a', ['a', 'b']],
      ['b', ['a', 'b']],
    ]);
    expect(workerd.output()).toContain('"msg":"connected to NATS"');
  });

  it('a write on one Durable Object member is read back on the other, and back', async () => {
    await writeHereReadThere({ url, route: 'a' }, { url, route: 'b' });
  });

  it('each member keeps itself awake with its alarm while it is a member', async () => {
    for (const node of ['a', 'b']) {
      await waitFor(
        `a keep-alive alarm on ${node}`,
        async () =>
          new RegExp(`"node":"${node}"[^\\n]*"msg":"keep-alive alarm"`).test(workerd.output()) ? true : undefined,
        {
          timeoutMs: 10_000,
          intervalMs: 100,
        },
      );
    }
  });

  it('a Node member (NATS over TCP) joins the same cluster: it reads what a Durable Object wrote, and the other way', {
    timeout: 60_000,
  }, async () => {
    const cluster = `cf-pkg-${process.pid}`;
    const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
    const node: ClusterNode = createCluster({
      cluster,
      node: 'n1',
      channel: new NatsChannel(await connect({ servers: nats.url, noEcho: true })),
      logger: silent,
    });
    let server: ServerType | undefined;
    try {
      await node.start();
      const app = new Hono<{ Variables: SessionVariables }>();
      app.use(node.middleware());
      app.get('/cart', (c) =>
        c.json({
          id: c.get('session').id,
          isNew: c.get('session').isNew,
          cart: c.get('session').get<string[]>('cart') ?? [],
        }),
      );
      app.put('/cart/:item', (c) => {
        const session = c.get('session');
        session.set('cart', [...(session.get<string[]>('cart') ?? []), c.req.param('item')]);
        return c.json({ id: session.id, cart: session.get('cart') });
      });
      server = await new Promise<ServerType>((resolve) => {
        const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
      });
      const nodeUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      await waitFor('a to see n1 alive', async () => ((await members('a')).alive.includes('n1') ? true : undefined), {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      await writeHereReadThere({ url, route: 'b' }, { url: nodeUrl, route: 'n1' });
    } finally {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await node.stop();
    }
  });

  it("after workerd is killed (an eviction), each member's stored alarm brings it back into the cluster without a request", {
    timeout: 60_000,
  }, async () => {
    workerd.kill('SIGKILL');
    await workerd.exited;
    workerd = startWorkerd();
    for (const node of ['a', 'b']) {
      await workerd.waitForOutput(new RegExp(`"node":"${node}","msg":"connecting to NATS over WebSocket"`), 20_000);
    }
    // No request has reached the new process yet: the alarms started both members.
    const views = await waitFor(
      'a and b to see each other alive again',
      async () => {
        const [a, b] = await Promise.all([members('a'), members('b')]);
        return a.alive.includes('b') && b.alive.includes('a') ? [a, b] : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(views.map((v) => v.node)).toEqual(['a', 'b']);
  });
});
