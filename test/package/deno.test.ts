// Owns: the packed package on Deno (the `deno` npm package): the user's Hono app from a fresh app
// folder, served by `session-replication/deno` as two member processes over a real nats-server's
// WebSocket listener; a write on one is read back on the other; SIGTERM leaves gracefully.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTracked, startNatsServer, type NatsServerHandle, type TrackedProcess } from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';
import { writeHereReadThere, type ScenarioNode } from './edge-scenario.ts';

/** The Deno binary the `deno` npm package ships (in its platform package; nothing is downloaded). */
function denoBinary(): string {
  const { runInstall } = createRequire(import.meta.url)('deno/install_api.cjs') as { runInstall(): string };
  return runInstall();
}

const CLUSTER = `deno-pkg-${process.pid}`;
let nats: NatsServerHandle;
let app: InstalledApp;
const nodes: Array<{ node: ScenarioNode; process: TrackedProcess }> = [];

/** Starts `deno-node.ts` of the app as member `route`; resolves once it listens and has joined. */
async function startNode(route: string): Promise<{ node: ScenarioNode; process: TrackedProcess }> {
  const proc = spawnTracked(
    denoBinary(),
    ['run', '--no-prompt', '--allow-net', '--allow-env', '--allow-read', 'deno-node.ts'],
    {
      cwd: app.dir,
      name: `deno-${route}`,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DENO_DIR: join(app.dir, '.deno'),
        DENO_NO_UPDATE_CHECK: '1',
        NO_COLOR: '1',
        NATS_WS_URL: nats.wsUrl!,
        CLUSTER,
        NODE: route,
      },
    },
  );
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

describe('session-replication/deno from the packed tarball', () => {
  it('a write on one Deno member is read back on the other, and back', async () => {
    await writeHereReadThere(nodes[0]!.node, nodes[1]!.node);
  });

  it('SIGTERM: each Deno member leaves gracefully and exits 0', async () => {
    for (const { process: proc } of nodes) proc.kill('SIGTERM');
    const exits = await Promise.all(nodes.map((n) => n.process.exited));
    expect(exits.map((e) => e.code)).toEqual([0, 0]);
  });
});
