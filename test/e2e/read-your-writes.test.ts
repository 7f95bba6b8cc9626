// Owns: end-to-end read-your-writes through a real HAProxy with plain round-robin (no stickiness) in front of three real
// node processes on a real nats-server, async mode: every read, on whichever node, shows the client's last acknowledged
// write. n3 receives from NATS through a link that delivers 150 ms late, so it is often behind the client.
import { describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  CookieClient,
  HAPROXY,
  natsServerPerFile,
  type NodeHandle,
  startForwarder,
  startHaproxyFor,
  startNode,
  stoppedAfterEach,
  uniqueCluster,
  waitFor,
} from '../kit/index.ts';

const CLIENTS = 8;
const INCREMENTS = 25;
/** How late n3 receives what NATS delivers. */
const LATENCY_MS = 150;

const nats = natsServerPerFile({}, HAPROXY !== undefined);
const running = stoppedAfterEach<{ stop(): Promise<unknown> }>();

async function startCluster(manager: 'delta' | 'backup'): Promise<NodeHandle[]> {
  const cluster = uniqueCluster(`ryw-${manager}`);
  const slowLink = await startForwarder(nats.server.port, { latencyMs: LATENCY_MS });
  running.push({ stop: () => slowLink.close() });
  const nodes = await Promise.all(
    ['n1', 'n2', 'n3'].map((node) =>
      startNode({
        cluster,
        node,
        nats: node === 'n3' ? slowLink.url : nats.url,
        manager,
        send: 'async',
        env: { LOG_LEVEL: 'warn' },
      }),
    ),
  );
  running.push(...nodes);
  await waitFor(
    'every node to see the other two ready',
    async () => {
      for (const node of nodes) {
        const status = (await (await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
          members: { ready: boolean }[];
        };
        if (status.members.filter((m) => m.ready).length !== 3) return false;
      }
      return true;
    },
    { timeoutMs: 30_000 },
  );
  return nodes;
}

/** Sends until the answer is not a 503 (what a client does with Retry-After); counts the 503s. */
async function untilServed(client: CookieClient, url: string, method: string, refusals: { count: number }) {
  for (;;) {
    const reply = await client.request(url, method, method === 'POST' ? '/counter' : '/session');
    if (reply.status !== 503) return reply;
    refusals.count++;
    expect(reply.headers.get('retry-after')).toBe('1');
  }
}

describe.skipIf(!HAPROXY && !process.env.CI)(
  'read-your-writes through HAProxy round-robin (no stickiness), async mode',
  () => {
    for (const manager of ['delta', 'backup'] as const) {
      it(`${manager} manager: ${CLIENTS} clients x ${INCREMENTS} increments, each read on another node, never older than the last acknowledged value`, async () => {
        const nodes = await startCluster(manager);
        const lb = await startHaproxyFor(nodes, { sticky: false });
        running.push(lb);
        const refusals = { count: 0 };
        const servedBy = new Set<string>();
        await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            const client = new CookieClient();
            let acknowledged = 0;
            for (let i = 0; i < INCREMENTS; i++) {
              const wrote = await untilServed(client, lb.url, 'POST', refusals);
              expect(wrote.status, wrote.text).toBe(200);
              expect(wrote.json.counter, 'an increment starts from the last acknowledged value').toBe(acknowledged + 1);
              acknowledged = wrote.json.counter as number;
              servedBy.add(wrote.json.node as string);
              const read = await untilServed(client, lb.url, 'GET', refusals);
              expect(read.status, read.text).toBe(200);
              expect(read.json.attributes.counter, `read after increment ${acknowledged} on ${read.json.node}`).toBe(
                acknowledged,
              );
              servedBy.add(read.json.node as string);
            }
          }),
        );
        expect([...servedBy].sort()).toEqual(['n1', 'n2', 'n3']);
        const metrics = await Promise.all(
          nodes.map(async (node) => (await fetch(`${node.url}/metrics`, { headers: ADMIN_HEADERS })).text()),
        );
        const total = (name: string) =>
          metrics.reduce((sum, text) => sum + Number(new RegExp(`^${name}\\S* (\\d+)`, 'm').exec(text)?.[1] ?? 0), 0);
        console.log(
          `[figure] read-your-writes through HAProxy round-robin (${manager}, async, 3 nodes, n3 receiving ${LATENCY_MS} ms late): ${CLIENTS * INCREMENTS} increments and reads, ` +
            `${total('sessrep_version_waits_total')} waited for a newer version, ${total('sessrep_version_refusals_total')} answered 503 ` +
            `(${refusals.count} reached the client; HAProxy retries 503 elsewhere), 0 stale reads`,
        );
      });
    }
  },
);
