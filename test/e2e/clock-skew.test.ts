// Owns: clock skew between real node processes over a real nats-server: one node's wall clock runs five minutes
// ahead (test/kit/fixtures/clock-ahead.mjs, as `faketime +5m` would). A write made after another node's write to
// the same attribute must win on every node (review finding 11: it lost to the older write for five minutes),
// and the skew is counted and logged.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  cleanupsAfterEach,
  ADMIN_HEADERS,
  CookieClient,
  startNatsServer,
  startNode,
  uniqueCluster,
  waitFor,
  type NodeHandle,
  type StartNodeOptions,
} from '../kit/index.ts';

const cleanups = cleanupsAfterEach();

const CLOCK_AHEAD = fileURLToPath(new URL('../kit/fixtures/clock-ahead.mjs', import.meta.url));

async function start(opts: StartNodeOptions): Promise<NodeHandle> {
  const node = await startNode({ readyTimeoutMs: 30_000, ...opts });
  cleanups.push(() => node.stop());
  return node;
}

async function stats(node: NodeHandle): Promise<Record<string, number>> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(3000) });
  return ((await res.json()) as { stats: Record<string, number> }).stats;
}

describe('clock skew', () => {
  it('a write made after a write from a node whose clock is 5 minutes ahead wins everywhere, and the skew is counted', async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.stop());
    const cluster = uniqueCluster('skew');
    const a = await start({ cluster, node: 'a', nats: nats.url });
    const ahead = await start({
      cluster,
      node: 'b',
      nats: nats.url,
      env: { NODE_OPTIONS: `--import ${CLOCK_AHEAD}`, CLOCK_OFFSET_MS: String(5 * 60_000) },
    });
    const client = new CookieClient();
    expect((await client.request(ahead.url, 'PUT', '/session/attributes/x', '1')).status).toBe(200);
    const read = (node: NodeHandle) =>
      new CookieClient({ cookie: client.cookie! }).request(node.url, 'GET', '/session');
    await waitFor('a to hold x=1', async () => (await read(a)).json?.attributes?.x === 1, {
      timeoutMs: 10_000,
      intervalMs: 50,
    });

    const later = new CookieClient({ cookie: client.cookie! });
    const write = await later.request(a.url, 'PUT', '/session/attributes/x', '2');
    expect(write.status).toBe(200);
    // The later write is what every node keeps.
    await waitFor(
      'x=2 on both nodes',
      async () => (await read(a)).json?.attributes?.x === 2 && (await read(ahead)).json?.attributes?.x === 2,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    expect((await read(a)).json.attributes.x).toBe(2);
    expect((await stats(a)).clockSkewWrites).toBeGreaterThan(0);
    expect(a.output()).toMatch(/clock skew/);
  }, 60_000);
});
