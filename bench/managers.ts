/**
 * Managers: messages and bytes on the wire per write for the delta manager (all-to-all) and the
 * backup manager (primary/backup) with 2, 4 and 8 in-process nodes on one nats-server, read from
 * the nodes' own stats counters; plus the replication lag of both (write on A -> visible on B, B
 * being the session's backup for the backup manager).
 */
import os from 'node:os';
import { connect } from '@nats-io/transport-node';
import { stringify } from 'devalue';
import { Hono } from 'hono';
import { NatsChannel } from '../lib/channel/nats.ts';
import { consoleLogger, createCluster, type ClusterNode, type SendMode, type SessionVariables } from '../lib/index.ts';
import type { BackupManager } from '../lib/managers/backup/backup-manager.ts';
import { waitFor } from '../functions/launch/index.ts';
import { interleave, LagProbe, type LagResult } from './lag.ts';
import { ProbeChannel } from './probe-channel.ts';
import { nextTurn, round, sleep } from './stats.ts';
import { cpuMs, selfCpuMs } from './throughput.ts';

export type ManagerName = 'delta' | 'backup';

/** Settings of the managers section. */
export interface ManagersOptions {
  sizes: number[];
  /** Writes counted per (manager, size, send mode). */
  writes: number;
  /** Sessions per node the writes are spread over. */
  sessionsPerNode: number;
  /** Writes started together (one event-loop turn, distinct sessions) in the extra async pass, like concurrent requests. */
  burst: number;
  lag: { n: number; warmup: number; chunks: number };
  log: (line: string) => void;
}

/** Wire traffic of one counting pass, per write. */
export interface TrafficRow {
  manager: ManagerName;
  nodes: number;
  mode: SendMode;
  /** Writes started in the same event-loop turn (1: one at a time). */
  concurrency: number;
  writes: number;
  /** Replication messages sent, summed over all nodes (heartbeats, pings and pongs left out). */
  sentPerWrite: number;
  /** Replication messages received and accepted, summed over all nodes: deliveries. */
  deliveriesPerWrite: number;
  /** Bytes of those messages sent / received, summed over all nodes. */
  bytesSentPerWrite: number;
  bytesReceivedPerWrite: number;
  /** Replication messages sent and received per write, by kind. */
  sentByKind: Record<string, number>;
  receivedByKind: Record<string, number>;
  /** CPU of this process (all nodes and the requests) and of nats-server per write, microseconds. */
  processCpuUsPerWrite: number;
  natsCpuUsPerWrite: number;
}

export interface ManagersResult {
  traffic: TrafficRow[];
  lag: LagResult[];
  loadAverage: { start: number; end: number };
}

/** Membership traffic: not replication, and it does not depend on the writes. */
const MEMBERSHIP: readonly string[] = ['hb', 'ping', 'pong'];

interface Counters {
  sent: Record<string, number>;
  received: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  hbBytesSent: number;
  hbBytesReceived: number;
}

/** A cluster of in-process nodes, each with its own NATS connection and an app with `/async/counter` and `/ack/counter`. */
class CountingCluster {
  readonly nodes: ClusterNode[] = [];
  readonly apps: Hono<{ Variables: SessionVariables }>[] = [];
  /** Heartbeat bytes per node as seen on the wire (the stats count bytes of every kind together). */
  readonly #hb: { sent: number; received: number }[] = [];
  /** Sessions: cookie, key, the node that created it (its primary), and the counter's last value. */
  readonly sessions: { cookie: string; key: string; node: number; counter: number }[] = [];

  private constructor(
    readonly manager: ManagerName,
    readonly cluster: string,
  ) {}

  static async open(url: string, manager: ManagerName, size: number): Promise<CountingCluster> {
    const cluster = `bench-mgr-${manager}-${size}-${Math.random().toString(36).slice(2, 8)}`;
    const c = new CountingCluster(manager, cluster);
    try {
      await c.#start(url, size);
      return c;
    } catch (error) {
      await c.close();
      throw error;
    }
  }

  async #start(url: string, size: number): Promise<void> {
    const hbSubject = `sessrep.${this.cluster}.hb`;
    const logger = consoleLogger('error');
    for (let i = 0; i < size; i++) {
      const name = `n${i + 1}`;
      const hb = { sent: 0, received: 0 };
      this.#hb.push(hb);
      const connection = await connect({ servers: url, name: `${this.cluster}-${name}`, noEcho: true });
      const channel = new ProbeChannel(new NatsChannel(connection), {
        onPublish: (subject, data) => {
          if (subject === hbSubject) hb.sent += data.byteLength;
        },
        onReceive: (message) => {
          if (message.subject === hbSubject) hb.received += message.data.byteLength;
        },
      });
      // Rare heartbeats: membership traffic stays out of the way of the per-write counts.
      const node = createCluster({
        cluster: this.cluster,
        node: name,
        channel,
        manager: this.manager,
        logger,
        heartbeatIntervalMs: 10_000,
        memberDropMs: 60_000,
      });
      this.nodes.push(node);
      await node.start();
      const app = new Hono<{ Variables: SessionVariables }>();
      for (const mode of ['async', 'ack'] as const) {
        app.use(`/${mode}/counter`, node.middleware({ sendMode: mode }));
        app.post(`/${mode}/counter`, (ctx) => {
          const session = ctx.get('session');
          const counter = (session.get<number>('counter') ?? 0) + 1;
          session.set('counter', counter);
          return ctx.json({ counter });
        });
      }
      this.apps.push(app);
    }
    await waitFor(
      'every node to see every other as ready',
      () => this.nodes.every((n) => n.membership.readyMembers().length === size - 1),
      { timeoutMs: 15_000 },
    );
  }

  /** Creates `perNode` sessions on every node (async), and waits until every data holder has them. */
  async createSessions(perNode: number): Promise<void> {
    const size = this.nodes.length;
    for (let i = 0; i < perNode * size; i++) {
      const node = i % size;
      const response = await this.apps[node]!.request('http://bench.local/async/counter', { method: 'POST' });
      const cookie = response.headers.get('set-cookie')?.split(';')[0];
      if (response.status !== 200 || !cookie) throw new Error(`could not create a session: ${response.status}`);
      const id = cookie.slice(cookie.indexOf('=') + 1);
      this.sessions.push({
        cookie,
        key: id.slice(0, id.lastIndexOf('.')),
        node,
        counter: ((await response.json()) as { counter: number }).counter,
      });
      await nextTurn();
    }
    await this.settled();
  }

  /** Nodes that hold a session's data: every node (delta), or its primary and backup. */
  holders(key: string, primary: number): number[] {
    if (this.manager === 'delta') return this.nodes.map((_, i) => i);
    const entry = (this.nodes[primary]!.manager as BackupManager).entry(key);
    if (!entry) throw new Error(`no ownership entry for a session on n${primary + 1}`);
    return this.nodes.flatMap((n, i) => (n.node === entry.primary || n.node === entry.backup ? [i] : []));
  }

  /** Waits until every data holder has every session's last counter value (and, backup, every node its entry). */
  async settled(): Promise<void> {
    await waitFor(
      'every write on every data holder',
      () =>
        this.sessions.every(
          (s) =>
            (this.manager === 'delta' || this.nodes.every((n) => (n.manager as BackupManager).entry(s.key))) &&
            this.holders(s.key, s.node).every(
              (i) => this.nodes[i]!.manager.find(s.key)?.attributes.get('counter')?.value === stringify(s.counter),
            ),
        ),
      { timeoutMs: 20_000 },
    );
    await sleep(50);
  }

  counters(): Counters {
    const total: Counters = {
      sent: {},
      received: {},
      bytesSent: 0,
      bytesReceived: 0,
      hbBytesSent: 0,
      hbBytesReceived: 0,
    };
    for (const [i, node] of this.nodes.entries()) {
      const stats = node.stats;
      for (const [kind, n] of Object.entries(stats.sent)) total.sent[kind] = (total.sent[kind] ?? 0) + (n ?? 0);
      for (const [kind, n] of Object.entries(stats.received))
        total.received[kind] = (total.received[kind] ?? 0) + (n ?? 0);
      total.bytesSent += stats.bytesSent;
      total.bytesReceived += stats.bytesReceived;
      total.hbBytesSent += this.#hb[i]!.sent;
      total.hbBytesReceived += this.#hb[i]!.received;
    }
    return total;
  }

  /**
   * `writes` writes, each on its session's primary (the node that created it), spread over every
   * session: `concurrency` at a time on distinct sessions, started in one event-loop turn; the next
   * group starts in a later turn (the delta manager sends the async writes of one turn together).
   */
  async write(mode: SendMode, writes: number, concurrency = 1): Promise<void> {
    if (concurrency > this.sessions.length)
      throw new Error(`${concurrency} concurrent writes need as many sessions, have ${this.sessions.length}`);
    let next = 0;
    for (let j = 0; j < writes; j += concurrency) {
      const group = Array.from(
        { length: Math.min(concurrency, writes - j) },
        () => this.sessions[next++ % this.sessions.length]!,
      );
      await Promise.all(
        group.map(async (s) => {
          const response = await this.apps[s.node]!.request(`http://bench.local/${mode}/counter`, {
            method: 'POST',
            headers: { cookie: s.cookie },
          });
          const body = (await response.json()) as { counter: number };
          if (response.status !== 200 || body.counter !== s.counter + 1)
            throw new Error(`unexpected answer ${response.status} ${JSON.stringify(body)}`);
          s.counter = body.counter;
        }),
      );
      await nextTurn();
    }
  }

  async close(): Promise<void> {
    for (const node of this.nodes.splice(0).reverse())
      await node
        .stop()
        .finally(() => node.channel.close())
        .catch(() => undefined);
  }
}

function diffKinds(
  after: Record<string, number>,
  before: Record<string, number>,
  writes: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [kind, n] of Object.entries(after)) {
    const d = n - (before[kind] ?? 0);
    if (d > 0 && !MEMBERSHIP.includes(kind)) out[kind] = round(d / writes, 3);
  }
  return out;
}

const sum = (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0);

/** One counting pass: counters before and after `writes` writes in `mode`. */
async function countPass(
  c: CountingCluster,
  size: number,
  mode: SendMode,
  concurrency: number,
  writes: number,
  natsPid: number,
): Promise<TrafficRow> {
  const before = c.counters();
  const cpu0 = { self: selfCpuMs(), nats: cpuMs(natsPid) };
  await c.write(mode, writes, concurrency);
  const cpu1 = { self: selfCpuMs(), nats: cpuMs(natsPid) };
  await c.settled();
  const after = c.counters();
  const sentByKind = diffKinds(after.sent, before.sent, writes);
  const receivedByKind = diffKinds(after.received, before.received, writes);
  const replicationBytes = (total: number, hb: number, total0: number, hb0: number) =>
    round((total - total0 - (hb - hb0)) / writes, 1);
  return {
    manager: c.manager,
    nodes: size,
    mode,
    concurrency,
    writes,
    sentPerWrite: round(sum(sentByKind), 3),
    deliveriesPerWrite: round(sum(receivedByKind), 3),
    bytesSentPerWrite: replicationBytes(after.bytesSent, after.hbBytesSent, before.bytesSent, before.hbBytesSent),
    bytesReceivedPerWrite: replicationBytes(
      after.bytesReceived,
      after.hbBytesReceived,
      before.bytesReceived,
      before.hbBytesReceived,
    ),
    sentByKind,
    receivedByKind,
    processCpuUsPerWrite: round(((cpu1.self - cpu0.self) * 1000) / writes, 0),
    natsCpuUsPerWrite: round(((cpu1.nats - cpu0.nats) * 1000) / writes, 0),
  };
}

/** The managers section: traffic per write, then lag, for every size. */
export async function measureManagers(
  natsUrl: string,
  natsPid: number,
  options: ManagersOptions,
): Promise<ManagersResult> {
  const loadStart = os.loadavg()[0]!;
  const traffic: TrafficRow[] = [];
  const lag: LagResult[] = [];
  for (const size of options.sizes) {
    for (const manager of ['delta', 'backup'] as const) {
      options.log(`managers: ${manager}, ${size} nodes: counting messages per write`);
      const c = await CountingCluster.open(natsUrl, manager, size);
      try {
        await c.createSessions(options.sessionsPerNode);
        for (const [mode, concurrency] of [
          ['async', 1],
          ['ack', 1],
          ['async', options.burst],
        ] as const) {
          const row = await countPass(c, size, mode, concurrency, options.writes, natsPid);
          traffic.push(row);
          options.log(
            `  ${mode} x${concurrency}: ${row.sentPerWrite} sent / ${row.deliveriesPerWrite} delivered per write (${JSON.stringify(row.receivedByKind)}), ` +
              `${row.bytesSentPerWrite} B sent / ${row.bytesReceivedPerWrite} B received per write`,
          );
        }
      } finally {
        await c.close();
      }
    }
    for (const mode of ['async', 'ack'] as const) {
      options.log(`managers: ${size} nodes, lag ${mode}, delta and backup interleaved`);
      const probes: LagProbe[] = [];
      try {
        for (const manager of ['delta', 'backup'] as const)
          probes.push(await LagProbe.open(natsUrl, { nodes: size, mode, manager }));
        lag.push(...(await interleave(probes, options.lag)));
      } finally {
        for (const probe of probes) await probe.close();
      }
    }
  }
  return { traffic, lag, loadAverage: { start: loadStart, end: os.loadavg()[0]! } };
}
