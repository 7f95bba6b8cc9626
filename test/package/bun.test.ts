// Owns: the packed package on Bun (the `bun` npm package): the user's Hono app from a fresh app
// folder, served by `session-replication/bun` as two member processes over a real nats-server's
// WebSocket listener; a write on one is read back on the other; SIGTERM leaves gracefully.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTracked, startNatsServer, type NatsServerHandle, type TrackedProcess } from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';
import { writeHereReadThere, type ScenarioNode } from './edge-scenario.ts';

/**
 * The Bun binary of the `bun` npm package's platform package (`@oven/bun-<os>-<arch>`): the
 * repository installs it without install scripts, so nothing is downloaded or moved.
 */
function bunBinary(): string {
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch;
  return createRequire(import.meta.url).resolve(`@oven/bun-${process.platform}-${arch}/bin/bun`);
}

const CLUSTER = `bun-pkg-${process.pid}`;
let nats: NatsServerHandle;
let app: InstalledApp;
const nodes: Array<{ node: ScenarioNode; process: TrackedProcess }> = [];

/** Starts `bun-node.ts` of the app as member `route`; resolves once it listens and has joined. */
async function startNode(route: string): Promise<{ node: ScenarioNode; process: TrackedProcess }> {
  const proc = spawnTracked(bunBinary(), ['bun-node.ts'], {
    cwd: app.dir,
    name: `bun-${route}`,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NO_COLOR: '1',
      BUN_INSTALL_CACHE_DIR: `${app.dir}/.bun-cache`,
      NATS_WS_URL: nats.wsUrl!,
      CLUSTER,
      NODE: route,
    },
  });
  const [, url] = await proc.waitForOutput(/\{"listening":"(http:\/\/[^"]+)"\}/, 60_000);
  await proc.waitForOutput(/\{"ready":"/, 30_000);
  return { node: { url: url!, route }, process: proc };
}

beforeAll(async () => {
  [nats, app] = await Promise.all([
    startNatsServer({ websocket: true }),
    createApp('test/package/fixtures/edge-app', { dependencies: ['hono', '@nats-io/nats-core'] }),
  ]);
  nodes.push(await startNode('a'), await startNode('b'));
}, 360_000);

afterAll(async () => {
  await Promise.allSettled(nodes.map((n) => n.process.stop(5000)));
  await nats?.stop();
});

describe('session-replication/bun from the packed tarball', () => {
  it('a write on one Bun member is read back on the other, and back', async () => {
    await writeHereReadThere(nodes[0]!.node, nodes[1]!.node);
  });

  it('SIGTERM: each Bun member leaves gracefully and exits 0', async () => {
    for (const { process: proc } of nodes) proc.kill('SIGTERM');
    const exits = await Promise.all(nodes.map((n) => n.process.exited));
    expect(exits.map((e) => e.code)).toEqual([0, 0]);
  });
});
