/**
 * Scale: backup-manager replication traffic per write as the cluster grows from 2 to 16 node
 * processes (`session-replication serve --manager backup`, one nats-server). Counted from every
 * node's own `/metrics` before and after the writes; heartbeats are left out (their count is in
 * the metrics, their size is measured on an idle window first), so what remains is what the writes cost.
 */
import os from 'node:os';
import { ADMIN_HEADERS, startNode, type NodeHandle } from '../test/kit/node-process.ts';
import { waitFor } from '../functions/launch/index.ts';
import { round, sleep } from './stats.ts';

/** Settings of the scale section. */
export interface ScaleOptions {
  /** Cluster sizes, e.g. [2, 4, 8, 16]. */
  sizes: number[];
  /** Sessions created per node (on that node, so it is their primary). */
  sessionsPerNode: number;
  /** Writes counted per size, spread over every session, each on its session's primary. */
  writes: number;
  /** Writes in flight at once (like concurrent requests). */
  concurrency: number;
  log: (line: string) => void;
}

/** One cluster size. */
export interface ScaleRow {
  nodes: number;
  manager: 'backup';
  writes: number;
  concurrency: number;
  /** Replication messages received and accepted per write, over every node (heartbeats, pings, pongs left out). */
  deliveriesPerWrite: number;
  /** Replication bytes received per write, over every node (heartbeat bytes subtracted). */
  bytesReceivedPerWrite: number;
  /** Replication messages sent per write, over every node. */
  sentPerWrite: number;
  /** Received per write by kind. */
  receivedByKind: Record<string, number>;
  /** Heartbeat bytes per second over the whole cluster (they grow with the square of the size). */
  heartbeatBytesPerSec: number;
}

export interface ScaleResult {
  rows: ScaleRow[];
  loadAverage: { start: number; end: number };
}

const MEMBERSHIP = ['hb', 'ping', 'pong'];

interface Scrape {
  sent: Record<string, number>;
  received: Record<string, number>;
  bytesReceived: number;
}

/** Sums the node's replication counters from its Prometheus text. */
async function scrape(node: NodeHandle): Promise<Scrape> {
  const text = await (await fetch(`${node.url}/metrics`, { headers: ADMIN_HEADERS })).text();
  const out: Scrape = { sent: {}, received: {}, bytesReceived: 0 };
  for (const line of text.split('\n')) {
    const kind = /^sessrep_messages_(sent|received)_total\{kind="([^"]+)"[^}]*\} (\d+)/.exec(line);
    if (kind) {
      const into = kind[1] === 'sent' ? out.sent : out.received;
      into[kind[2]!] = (into[kind[2]!] ?? 0) + Number(kind[3]);
      continue;
    }
    const bytes = /^sessrep_bytes_received_total(?:\{[^}]*\})? (\d+)/.exec(line);
    if (bytes) out.bytesReceived += Number(bytes[1]);
  }
  return out;
}

async function scrapeAll(nodes: NodeHandle[]): Promise<Scrape> {
  const total: Scrape = { sent: {}, received: {}, bytesReceived: 0 };
  for (const s of await Promise.all(nodes.map(scrape))) {
    for (const [k, v] of Object.entries(s.sent)) total.sent[k] = (total.sent[k] ?? 0) + v;
    for (const [k, v] of Object.entries(s.received)) total.received[k] = (total.received[k] ?? 0) + v;
    total.bytesReceived += s.bytesReceived;
  }
  return total;
}

const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]));

async function post(node: NodeHandle, cookie?: string): Promise<{ cookie: string; counter: number }> {
  const response = await fetch(`${node.url}/counter`, {
    method: 'POST',
    headers: cookie ? { cookie } : {},
  });
  const body = (await response.json()) as { counter: number };
  if (response.status !== 200) throw new Error(`POST /counter on ${node.node}: ${response.status}`);
  return { cookie: response.headers.get('set-cookie')?.split(';')[0] ?? cookie ?? '', counter: body.counter };
}

async function measureSize(natsUrl: string, size: number, options: ScaleOptions): Promise<ScaleRow> {
  const cluster = `bench-scale-${size}-${Math.random().toString(36).slice(2, 8)}`;
  const nodes: NodeHandle[] = [];
  try {
    for (let i = 1; i <= size; i++) {
      options.log(`scale: starting n${i} of ${size}`);
      nodes.push(
        await startNode({
          cluster,
          node: `n${i}`,
          nats: natsUrl,
          manager: 'backup',
          send: 'async',
          readyTimeoutMs: 60_000,
        }),
      );
    }
    await waitFor(
      `every node to see ${size - 1} ready members`,
      async () => {
        const views = await Promise.all(
          nodes.map(
            async (n) =>
              (await (await fetch(`${n.url}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
                members: { self: boolean; ready: boolean }[];
              },
          ),
        );
        return views.every((v) => v.members.filter((m) => !m.self && m.ready).length === size - 1);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const sessions: { node: NodeHandle; cookie: string; counter: number }[] = [];
    for (const node of nodes)
      for (let i = 0; i < options.sessionsPerNode; i++) sessions.push({ node, ...(await post(node)) });
    await sleep(500);
    // Heartbeat size: an idle window, nothing but membership traffic.
    const idle0 = await scrapeAll(nodes);
    const idleStarted = performance.now();
    await sleep(2000);
    const idle1 = await scrapeAll(nodes);
    const idleSec = (performance.now() - idleStarted) / 1000;
    const hbCount = (idle1.received.hb ?? 0) - (idle0.received.hb ?? 0);
    const idleBytes = idle1.bytesReceived - idle0.bytesReceived;
    const membershipBytesPerMessage =
      idleBytes /
      Math.max(
        1,
        MEMBERSHIP.reduce((sum, k) => sum + (idle1.received[k] ?? 0) - (idle0.received[k] ?? 0), 0),
      );

    const before = await scrapeAll(nodes);
    let next = 0;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (next < options.writes) {
          const s = sessions[next++ % sessions.length]!;
          const { counter } = await post(s.node, s.cookie);
          if (counter !== s.counter + 1) throw new Error(`lost write: ${counter} after ${s.counter}`);
          s.counter = counter;
        }
      }),
    );
    await sleep(500);
    const after = await scrapeAll(nodes);
    const received = diff(after.received, before.received);
    const sent = diff(after.sent, before.sent);
    const membership = MEMBERSHIP.reduce((sum, k) => sum + (received[k] ?? 0), 0);
    const replication = (x: Record<string, number>) =>
      Object.entries(x)
        .filter(([k]) => !MEMBERSHIP.includes(k))
        .reduce((sum, [, v]) => sum + v, 0);
    const row: ScaleRow = {
      nodes: size,
      manager: 'backup',
      writes: options.writes,
      concurrency: options.concurrency,
      deliveriesPerWrite: round(replication(received) / options.writes, 3),
      sentPerWrite: round(replication(sent) / options.writes, 3),
      bytesReceivedPerWrite: round(
        (after.bytesReceived - before.bytesReceived - membership * membershipBytesPerMessage) / options.writes,
        1,
      ),
      receivedByKind: Object.fromEntries(
        Object.entries(received)
          .filter(([k, v]) => !MEMBERSHIP.includes(k) && v > 0)
          .map(([k, v]) => [k, round(v / options.writes, 3)]),
      ),
      heartbeatBytesPerSec: round((hbCount * membershipBytesPerMessage) / idleSec, 0),
    };
    options.log(
      `  ${size} nodes: ${row.deliveriesPerWrite} deliveries, ${row.bytesReceivedPerWrite} B received per write (${JSON.stringify(row.receivedByKind)}); heartbeats ${row.heartbeatBytesPerSec} B/s`,
    );
    return row;
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

/** The scale section: one cluster per size, one after the other. */
export async function measureScale(natsUrl: string, options: ScaleOptions): Promise<ScaleResult> {
  const start = os.loadavg()[0]!;
  const rows: ScaleRow[] = [];
  for (const size of options.sizes) rows.push(await measureSize(natsUrl, size, options));
  return { rows, loadAverage: { start, end: os.loadavg()[0]! } };
}
