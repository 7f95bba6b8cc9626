// Owns: the edge build (functions/edge, bundled by scripts/build-edge.mjs) running for real in Deno (the
// `deno` npm package) and Bun (the `bun` npm package), reaching NATS over WebSocket, in one cluster with
// a Node node over TCP NATS.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../functions/demo-app.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { createCluster, type Logger, type ClusterNode } from '../../lib/index.ts';
import {
  ADMIN_HEADERS,
  ADMIN_TOKEN,
  REPO_ROOT,
  CookieClient,
  spawnTracked,
  startNatsServer,
  tail,
  waitFor,
  waitForHttp,
  type NatsServerHandle,
  type TrackedProcess,
} from '../kit/index.ts';

/** The Deno binary the `deno` npm package ships (in its platform package `@deno/<os>-<arch>`; no download). */
function denoBinary(): string {
  const require = createRequire(import.meta.url);
  const { runInstall } = require('deno/install_api.cjs') as { runInstall(): string };
  return runInstall();
}

/** The Bun binary of the `bun` npm package's platform package (installed without scripts; no download). */
function bunBinary(): string {
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch;
  return createRequire(import.meta.url).resolve(`@oven/bun-${process.platform}-${arch}/bin/bun`);
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

interface EdgeProcess {
  readonly url: string;
  readonly process: TrackedProcess;
}

const CLUSTER = `edge-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let nats: NatsServerHandle;
let workDir: string;
let deno: string;
let nodeSessions: ClusterNode;
let nodeServer: ServerType;
let nodeUrl: string;
let edge: EdgeProcess;
let lazy: EdgeProcess;
let bun: EdgeProcess;

/** Environment of an edge process: the cluster, the NATS WebSocket URL, no update check, a private DENO_DIR. */
function edgeEnv(node: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DENO_DIR: join(workDir, 'deno-dir'),
    DENO_NO_UPDATE_CHECK: '1',
    NO_COLOR: '1',
    NATS_URL: nats.wsUrl!,
    SESSREP_CLUSTER: CLUSTER,
    SESSREP_NODE: node,
    LOG_LEVEL: 'info',
    SESSREP_ADMIN_TOKEN: ADMIN_TOKEN,
    ...extra,
  };
}

/** Starts the eager entry (`deno run dist/deno.js`): the cluster node starts at module scope. */
async function startDenoRun(node: string): Promise<EdgeProcess> {
  const proc = spawnTracked(
    deno,
    ['run', '--no-prompt', '--allow-net', '--allow-env', join(workDir, 'edge', 'deno.js')],
    {
      cwd: workDir,
      name: `deno-${node}`,
      env: edgeEnv(node, { PORT: '0', HOST: '127.0.0.1' }),
    },
  );
  const [, url] = await proc.waitForOutput(/"msg":"listening","url":"(http:\/\/[^"]+)"/, 30_000);
  return { url: url!, process: proc };
}

/** Starts the Bun entry (`bun dist/bun.js`): the cluster node starts once the listener is up. */
async function startBun(node: string): Promise<EdgeProcess> {
  const proc = spawnTracked(bunBinary(), [join(workDir, 'edge', 'bun.js')], {
    cwd: workDir,
    name: `bun-${node}`,
    env: edgeEnv(node, { PORT: '0', HOST: '127.0.0.1' }),
  });
  const [, url] = await proc.waitForOutput(/"msg":"listening","url":"(http:\/\/[^"]+)","runtime":"bun"/, 30_000);
  return { url: url!, process: proc };
}

/** Starts the module-worker entry under `deno serve`: the node is created by the first request. */
async function startDenoServe(node: string): Promise<EdgeProcess> {
  const proc = spawnTracked(
    deno,
    [
      'serve',
      '--no-prompt',
      '--allow-net',
      '--allow-env',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      join(workDir, 'edge', 'worker.js'),
    ],
    {
      cwd: workDir,
      name: `deno-serve-${node}`,
      env: edgeEnv(node),
    },
  );
  const [, url] = await proc.waitForOutput(/Listening on (http:\/\/[0-9.]+:\d+)/, 30_000);
  return { url: url!, process: proc };
}

interface ClusterView {
  node: string;
  ready: boolean;
  members: Array<{ node: string; self: boolean; state: string }>;
}

/** GET /cluster of `baseUrl`. */
async function clusterView(baseUrl: string): Promise<ClusterView> {
  const res = await fetch(new URL('/cluster', baseUrl), { headers: ADMIN_HEADERS });
  return (await res.json()) as ClusterView;
}

/** Resolves once `baseUrl`'s /cluster lists every one of `nodes` as an alive member. */
function waitForMembers(baseUrl: string, nodes: string[]): Promise<ClusterView> {
  return waitFor(
    `${baseUrl} to see ${nodes.join(', ')} alive`,
    async () => {
      const view = await clusterView(baseUrl);
      return nodes.every((n) => view.members.some((m) => m.node === n && m.state === 'alive')) ? view : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  );
}

/** Resolves once GET /session on `baseUrl` (with `client`'s cookie) shows `name` = `value`. */
function waitForAttribute(client: CookieClient, baseUrl: string, name: string, value: unknown) {
  return waitFor(
    `${name}=${JSON.stringify(value)} on ${baseUrl}`,
    async () => {
      // A fresh probe each time: a read that arrives before the replica does gets a new session (and
      // cookie) from that node, which must not replace the cookie under test.
      const res = await new CookieClient({ cookie: client.cookie! }).request(baseUrl, 'GET', '/session');
      const body = res.json as { isNew: boolean; attributes: Record<string, unknown> };
      if (res.status === 200 && !body.isNew && JSON.stringify(body.attributes[name]) === JSON.stringify(value))
        return body;
      throw new Error(`got ${res.status} ${res.text.slice(0, 300)}`);
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

/** Latency of `n` sequential requests (ms): p50, p90, p99, mean. */
async function measure(
  n: number,
  send: () => Promise<unknown>,
): Promise<{ p50: number; p90: number; p99: number; mean: number }> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await send();
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => Number(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!.toFixed(2));
  return {
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    mean: Number((samples.reduce((a, b) => a + b, 0) / n).toFixed(2)),
  };
}

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'edge-e2e-'));
  deno = denoBinary();
  // The real build, as `npm run build:edge` runs it, into this test's own directory.
  const build = spawnTracked(process.execPath, ['scripts/build-edge.mjs', '--outdir', join(workDir, 'edge')], {
    cwd: REPO_ROOT,
    name: 'build-edge',
  });
  const [server, built] = await Promise.all([startNatsServer({ websocket: true }), build.exited]);
  nats = server;
  if (built.code !== 0) throw new Error(`npm run build:edge failed (${built.code}):\n${tail(build.output())}`);
  expect(build.output()).toMatch(/"built":"edge"/);

  // The Node node: in-process, TCP NATS, served over HTTP like the edge nodes so latencies compare.
  const nc = await connect({ servers: nats.url, name: `${CLUSTER}-node1`, noEcho: true });
  nodeSessions = createCluster({ cluster: CLUSTER, node: 'node1', channel: new NatsChannel(nc), logger: silent });
  const app = createDemoApp(nodeSessions, { admin: { token: ADMIN_TOKEN } });
  await nodeSessions.start();
  nodeServer = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  nodeUrl = `http://127.0.0.1:${(nodeServer.address() as AddressInfo).port}`;

  [edge, lazy, bun] = await Promise.all([startDenoRun('edge1'), startDenoServe('lazy1'), startBun('bun1')]);
  await waitForHttp(`${edge.url}/readyz`, { timeoutMs: 30_000 });
}, 240_000);

afterAll(async () => {
  await Promise.allSettled([edge?.process.stop(5000), lazy?.process.stop(5000), bun?.process.stop(5000)]);
  await new Promise<void>((resolve) => (nodeServer ? nodeServer.close(() => resolve()) : resolve()));
  await nodeSessions?.stop().catch(() => undefined);
  await nats?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('edge build in Deno and Bun (NATS over WebSocket) with a Node node (NATS over TCP)', () => {
  it('runs the bundle in Deno as a full member: both sides list each other alive', async () => {
    expect(edge.process.output()).toContain('"msg":"connected to NATS"');
    const fromNode = await waitForMembers(nodeUrl, ['node1', 'edge1']);
    expect(fromNode.members.find((m) => m.node === 'edge1')).toMatchObject({ self: false, state: 'alive' });
    const fromEdge = await waitForMembers(edge.url, ['edge1', 'node1']);
    expect(fromEdge).toMatchObject({ node: 'edge1', ready: true });
  });

  it('a session created on the edge node is visible on the Node node, and a write made there is read back through Deno', async () => {
    const client = new CookieClient();
    const created = await client.request(edge.url, 'PUT', '/session/attributes/cart', ['apple', 'pear']);
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({ node: 'edge1', isNew: true, attributes: { cart: ['apple', 'pear'] } });
    // The cookie routes to the node that created the session.
    expect(client.cookie).toMatch(/\.edge1$/);

    const seen = await waitForAttribute(client, nodeUrl, 'cart', ['apple', 'pear']);
    expect(seen).toMatchObject({ node: 'node1' });

    const written = await client.request(nodeUrl, 'PUT', '/session/attributes/total', { cents: 1299 });
    expect(written.status).toBe(200);
    await waitForAttribute(client, edge.url, 'total', { cents: 1299 });
    const back = await client.request(edge.url, 'GET', '/session');
    expect(back.json).toMatchObject({ node: 'edge1', attributes: { cart: ['apple', 'pear'], total: { cents: 1299 } } });
  });

  it('a session created on the Node node is visible on the edge node, and counts on across both', async () => {
    const client = new CookieClient();
    const first = await client.request(nodeUrl, 'POST', '/counter');
    expect(first.json).toEqual({ counter: 1, node: 'node1' });
    await waitForAttribute(client, edge.url, 'counter', 1);
    const second = await client.request(edge.url, 'POST', '/counter');
    expect(second.json).toEqual({ counter: 2, node: 'edge1' });
    await waitForAttribute(client, nodeUrl, 'counter', 2);
    const third = await client.request(nodeUrl, 'POST', '/counter');
    expect(third.json).toEqual({ counter: 3, node: 'node1' });
  });

  it('the module-worker entry (deno serve) creates its node on the first request and joins the same cluster', async () => {
    // No request has reached it yet: it has not connected to NATS.
    expect(lazy.process.output()).not.toContain('connecting to NATS');
    const client = new CookieClient();
    const first = await client.request(lazy.url, 'POST', '/counter');
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ counter: 1, node: 'lazy1' });
    expect(lazy.process.output()).toContain('"msg":"connected to NATS"');
    await waitForAttribute(client, nodeUrl, 'counter', 1);
    await waitForAttribute(client, edge.url, 'counter', 1);
    await waitForMembers(nodeUrl, ['edge1', 'lazy1']);
    // The first request told it its own URL, which it advertises to the other members' dashboards.
    expect((await clusterView(lazy.url)).members.find((m) => m.self)).toMatchObject({ node: 'lazy1', url: lazy.url });
  });

  it('the Bun entry joins the same cluster as a full member: a counter goes on across Bun, Deno and Node', async () => {
    await waitForMembers(nodeUrl, ['node1', 'edge1', 'bun1']);
    expect(await waitForMembers(bun.url, ['bun1', 'node1', 'edge1'])).toMatchObject({ node: 'bun1', ready: true });
    const client = new CookieClient();
    const first = await client.request(bun.url, 'POST', '/counter');
    expect(first.json).toEqual({ counter: 1, node: 'bun1' });
    await waitForAttribute(client, edge.url, 'counter', 1);
    expect((await client.request(edge.url, 'POST', '/counter')).json).toEqual({ counter: 2, node: 'edge1' });
    await waitForAttribute(client, nodeUrl, 'counter', 2);
    expect((await client.request(nodeUrl, 'POST', '/counter')).json).toEqual({ counter: 3, node: 'node1' });
    await waitForAttribute(client, bun.url, 'counter', 3);
  });

  it('measures request latency through the edge node and the Node node (same session API, same cluster)', {
    timeout: 120_000,
  }, async () => {
    const rounds = 200;
    const onEdge = new CookieClient();
    const onNode = new CookieClient();
    await onEdge.request(edge.url, 'POST', '/counter');
    await onNode.request(nodeUrl, 'POST', '/counter');
    const edgeLatency = await measure(rounds, () => onEdge.request(edge.url, 'POST', '/counter'));
    const nodeLatency = await measure(rounds, () => onNode.request(nodeUrl, 'POST', '/counter'));
    const edgeRead = await measure(rounds, () => onEdge.request(edge.url, 'GET', '/session'));
    const nodeRead = await measure(rounds, () => onNode.request(nodeUrl, 'GET', '/session'));
    console.info(
      JSON.stringify({
        latencyMs: {
          rounds,
          deno: { write: edgeLatency, read: edgeRead },
          node: { write: nodeLatency, read: nodeRead },
        },
      }),
    );
    // Every write counted: the edge node's last answer is the 1 + rounds-th increment, and it replicated.
    const last = await onEdge.request(edge.url, 'GET', '/session');
    expect((last.json as { attributes: { counter: number } }).attributes.counter).toBe(rounds + 1);
    await waitForAttribute(onEdge, nodeUrl, 'counter', rounds + 1);
  });

  it('on SIGTERM both Deno entries and the Bun entry leave gracefully: they exit 0 and the Node node drops them at once', async () => {
    const stoppedAt = Date.now();
    edge.process.kill('SIGTERM');
    lazy.process.kill('SIGTERM');
    bun.process.kill('SIGTERM');
    const [exit, lazyExit, bunExit] = await Promise.all([edge.process.exited, lazy.process.exited, bun.process.exited]);
    expect(exit).toMatchObject({ code: 0 });
    expect(lazyExit).toMatchObject({ code: 0 });
    expect(bunExit).toMatchObject({ code: 0 });
    await waitFor(
      'node1 to drop edge1, lazy1 and bun1',
      async () =>
        !(await clusterView(nodeUrl)).members.some(
          (m) => m.node === 'edge1' || m.node === 'lazy1' || m.node === 'bun1',
        ),
      // A graceful leave is announced; without it the member would only drop after memberDropMs (3 s) of silence.
      { timeoutMs: 2500, intervalMs: 20 },
    );
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
  });
});
