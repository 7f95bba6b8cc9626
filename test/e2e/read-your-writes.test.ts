// Owns: end-to-end read-your-writes through a real HAProxy with plain round-robin (no stickiness) in front of three real
// node processes on a real nats-server, in each send mode (async and ack with both managers; persist with the delta
// manager, its JetStream log and a DynamoDB Local snapshot table): every read, on whichever node, shows the client's
// last acknowledged write. n3 receives from NATS through a link that delivers 150 ms late, so it is often behind.
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import {
  ADMIN_HEADERS,
  CookieClient,
  ddbClient,
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

/**
 * One run: the manager and the send mode (persist: the delta manager with its log and a snapshot table). Without the
 * version wait (SESSREP_RYW_WAIT_MS=0) every case but delta/ack reads stale within its first increments; delta/ack
 * holds by itself (an ack waits for every member) and is here so that the wait costs it nothing.
 */
interface Case {
  readonly manager: 'delta' | 'backup';
  readonly send: 'async' | 'ack' | 'persist';
}
const CASES: readonly Case[] = [
  { manager: 'delta', send: 'async' },
  { manager: 'backup', send: 'async' },
  { manager: 'delta', send: 'ack' },
  { manager: 'backup', send: 'ack' },
  { manager: 'delta', send: 'persist' },
];

const nats = natsServerPerFile({ jetstream: true }, HAPROXY !== undefined);
const running = stoppedAfterEach<{ stop(): Promise<unknown> }>();
const dynamodb = ddbClient(inject('ddbEndpoint'));
const tables: string[] = [];
afterAll(async () => {
  for (const name of tables) await dynamodb.send(new DeleteTableCommand({ TableName: name })).catch(() => undefined);
  dynamodb.destroy();
});

async function startCluster({ manager, send }: Case): Promise<NodeHandle[]> {
  const cluster = uniqueCluster(`ryw-${manager}-${send}`);
  const extraArgs: string[] = [];
  if (send === 'persist') {
    await createSnapshotTable(dynamodb, cluster);
    tables.push(cluster);
    extraArgs.push('--dynamodb-table', cluster, '--dynamodb-endpoint', inject('ddbEndpoint'));
  }
  const slowLink = await startForwarder(nats.server.port, { latencyMs: LATENCY_MS });
  running.push({ stop: () => slowLink.close() });
  const nodes = await Promise.all(
    ['n1', 'n2', 'n3'].map((node) =>
      startNode({
        cluster,
        node,
        nats: node === 'n3' ? slowLink.url : nats.url,
        manager,
        send,
        extraArgs,
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

describe.skipIf(!HAPROXY && !process.env.CI)('read-your-writes through HAProxy round-robin (no stickiness)', () => {
  for (const { manager, send } of CASES) {
    it(`${manager} manager, ${send}: ${CLIENTS} clients x ${INCREMENTS} increments, each read on another node, never older than the last acknowledged value`, async () => {
      const nodes = await startCluster({ manager, send });
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
        `[figure] read-your-writes through HAProxy round-robin (${manager}, ${send}, 3 nodes, n3 receiving ${LATENCY_MS} ms late): ${CLIENTS * INCREMENTS} increments and reads, ` +
          `${total('sessrep_version_waits_total')} waited for a newer version, ${total('sessrep_version_refusals_total')} answered 503 ` +
          `(${refusals.count} reached the client; HAProxy retries 503 elsewhere), 0 stale reads`,
      );
    });
  }
});
