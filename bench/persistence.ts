/**
 * Persistence: with a JetStream replication log and a DynamoDB snapshot store (DynamoDB Local),
 * (1) the snapshot writer's coalescing: DynamoDB item writes per second against session writes per
 * second, and (2) the time a node needs to join a cluster holding N sessions, from the DynamoDB
 * snapshot plus the JetStream replay versus from a peer (state transfer pages), on the same data.
 * Every cluster node is in this process, with its own NATS connection.
 */
import os from 'node:os';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Hono } from 'hono';
import { jetStreamLogFor, type JetStreamLog } from '../lib/log/jetstream.ts';
import { NatsChannel } from '../lib/channel/nats.ts';
import { createCluster, type Logger, type ClusterNode, type SessionVariables } from '../lib/index.ts';
import type { DeltaManager } from '../lib/managers/delta/delta-manager.ts';
import { createSnapshotTable, DynamoSnapshotStore } from '../lib/store/dynamodb.ts';
import type { LoadProgress, SnapshotItem, SnapshotStore, SnapshotWriteResult } from '../lib/store/snapshot-store.ts';
import type { SnapshotWriterStatus } from '../lib/store/snapshot-writer.ts';
import type { SessionState } from '../lib/session/state.ts';
import {
  LOCAL_AWS,
  startDynamoDbLocal,
  startNatsServer,
  waitFor,
  type DynamoDbLocalHandle,
  type NatsServerHandle,
} from '../functions/launch/index.ts';
import { round, sleep } from './stats.ts';
import { cpuMs, selfCpuMs } from './throughput.ts';

/** Settings of the persistence section. */
export interface PersistenceOptions {
  /** Session counts to join with, smallest first. */
  sizes: number[];
  /** Joins per path (snapshot, peer) and size, alternating; sizes above 20,000 get one. */
  joins: number;
  /** Requests in flight while creating sessions. */
  seedConcurrency: number;
  /** Session writes spread over `sessions` at `writesPerSec` for `durationSec`. */
  coalesce: { sessions: number; writesPerSec: number; durationSec: number };
  /**
   * Time budget of the section: when the first size shows the next one would exceed it (linear
   * extrapolation), the next size is replaced by `fallbackSize`.
   */
  budgetSec: number;
  fallbackSize: number;
  log: (line: string) => void;
}

export interface CoalescingResult {
  sessions: number;
  targetWritesPerSec: number;
  loadSec: number;
  sessionWrites: number;
  sessionWritesPerSec: number;
  /** JetStream messages stored for those writes (async deltas of one event-loop turn share a message). */
  logMessages: number;
  itemWrites: number;
  itemWritesPerSec: number;
  /** itemWrites / sessionWrites. */
  ratio: number;
  flushes: number;
  snapshotIntervalMs: number;
  /** Writes answered with something else than 200. */
  failed: number;
}

export interface JoinResult {
  path: 'snapshot' | 'peer';
  sessions: number;
  attempt: number;
  /** connect + createCluster + start() until ready, milliseconds. */
  wallMs: number;
  /** The library's own state transfer duration (`stateTransfer.durationMs`). */
  stateTransferMs: number;
  /** Snapshot path: the DynamoDB load alone (readCheckpoint + every shard's Query pages). */
  loadMs?: number;
  /** Snapshot path: log messages replayed after the snapshot's checkpoint. */
  replayed?: number;
  pages: number;
  /** Sessions the joiner holds when ready (must equal `sessions`). */
  held: number;
  /** State pages the joiner received from a peer (0 on the snapshot path). */
  statePages: number;
  /** CPU during the join, ms: this process (joiner and donor), DynamoDB Local's JVM, nats-server. */
  cpuMs: { process: number; dynamodb: number; nats: number };
}

export interface SizeResult {
  sessions: number;
  /** Creating the sessions through the middleware (`app.request`, in parallel). */
  seedSec: number;
  seedPerSec: number;
  /** From the last session created until the snapshot writer flushed everything (dirty 0, checkpoint = last log sequence). */
  flushWaitSec: number;
  /** Items the writer stored per second over the seeding and the wait (it flushes while sessions are created). */
  flushItemsPerSec: number;
  /** CPU of DynamoDB Local's JVM during seeding + flush, as % of one core. */
  dynamodbCpuPct: number;
  logMessages: number;
  joins: JoinResult[];
}

export interface PersistenceResult {
  coalescing: CoalescingResult;
  sizes: SizeResult[];
  /** Set when a size was replaced to stay within the section's time budget. */
  reduced?: { requested: number; measured: number; estimatedSec: number; budgetSec: number };
  settings: { shards: number; batchSize: number; concurrency: number; stateTransferTimeoutMs: number };
  warnings: string[];
  durationSec: number;
  loadAverage: { start: number; end: number };
}

const STATE_TRANSFER_TIMEOUT_MS = 600_000;
const SNAPSHOT_INTERVAL_MS = 1000;

/** Keeps warnings and errors (with their fields) for the report; drops the rest. */
function collectingLogger(lines: string[], bound: Record<string, unknown> = {}): Logger {
  const keep = (level: string) => (fields: Record<string, unknown>, message: string) => {
    if (lines.length < 200) lines.push(`${level} ${message} ${JSON.stringify({ ...bound, ...fields })}`.slice(0, 400));
  };
  const drop = () => undefined;
  return {
    debug: drop,
    info: drop,
    warn: keep('warn'),
    error: keep('error'),
    child: (fields) => collectingLogger(lines, { ...bound, ...fields }),
  };
}

/** A store wrapper that times `load` and remembers the checkpoint it returned. */
class TimedStore implements SnapshotStore {
  readonly kind: string;
  loadMs = 0;
  checkpoint: number | undefined;

  constructor(private readonly inner: SnapshotStore) {
    this.kind = inner.kind;
  }

  write(items: readonly SnapshotItem[]): Promise<SnapshotWriteResult> {
    return this.inner.write(items);
  }

  writeCheckpoint(sequence: number): Promise<void> {
    return this.inner.writeCheckpoint(sequence);
  }

  readCheckpoint(): Promise<number | undefined> {
    return this.inner.readCheckpoint();
  }

  async load(
    onPage: (states: SessionState[]) => void,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<number | undefined> {
    const t0 = performance.now();
    this.checkpoint = await this.inner.load(onPage, onProgress);
    this.loadMs = performance.now() - t0;
    return this.checkpoint;
  }
}

/** An in-process node: its own NATS connection, optionally the JetStream log and a store, and a small app. */
interface BenchNode {
  readonly sessions: ClusterNode;
  readonly manager: DeltaManager;
  readonly nc: NatsConnection;
  readonly log?: JetStreamLog;
  readonly app: Hono<{ Variables: SessionVariables }>;
  stop(): Promise<void>;
}

async function createNode(
  url: string,
  cluster: string,
  name: string,
  logger: Logger,
  { log = false, store }: { log?: boolean; store?: SnapshotStore } = {},
): Promise<BenchNode> {
  const nc = await connect({ servers: url, name: `${cluster}-${name}`, noEcho: true });
  const replicationLog = log ? jetStreamLogFor(nc, cluster) : undefined;
  const sessions = createCluster({
    cluster,
    node: name,
    channel: new NatsChannel(nc),
    logger,
    stateTransferTimeoutMs: STATE_TRANSFER_TIMEOUT_MS,
    snapshotIntervalMs: SNAPSHOT_INTERVAL_MS,
    ...(replicationLog ? { log: replicationLog } : {}),
    ...(store ? { store } : {}),
  });
  const app = new Hono<{ Variables: SessionVariables }>();
  let seeded = 0;
  app.use('/seed', sessions.middleware());
  app.post('/seed', (c) => {
    const session = c.get('session');
    const n = ++seeded;
    session.set('user', { id: n, name: `user ${n}`, roles: ['reader', 'writer'], locale: 'en-GB' });
    session.set('counter', 0);
    return c.body(null, 204);
  });
  app.use('/counter', sessions.middleware());
  app.post('/counter', (c) => {
    const session = c.get('session');
    session.set('counter', (session.get<number>('counter') ?? 0) + 1);
    return c.body(null, 204);
  });
  let stopped: Promise<void> | undefined;
  return {
    sessions,
    manager: sessions.manager as DeltaManager,
    nc,
    ...(replicationLog ? { log: replicationLog } : {}),
    app,
    stop: () =>
      (stopped ??= sessions
        .stop()
        .catch(() => undefined)
        .finally(() => (nc.isClosed() ? undefined : nc.close()))),
  };
}

/** Runs `fn` for 0..count-1 with at most `concurrency` in flight. */
async function inParallel(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

/** Creates `count` sessions through the middleware; returns their cookies when `keep`. */
async function seed(
  node: BenchNode,
  count: number,
  concurrency: number,
  keep: boolean,
  log: (line: string) => void,
): Promise<string[]> {
  const cookies: string[] = [];
  let done = 0;
  const step = Math.max(1, Math.floor(count / 5));
  await inParallel(count, concurrency, async () => {
    const response = await node.app.request('http://bench.local/seed', { method: 'POST' });
    if (response.status !== 204) throw new Error(`seeding: ${response.status} ${await response.text()}`);
    if (keep) cookies.push(response.headers.get('set-cookie')!.split(';')[0]!);
    if (++done % step === 0 && done < count) log(`  ${done} / ${count} sessions created`);
  });
  return cookies;
}

function snapshotStatus(node: BenchNode): { appliedSeq: number; status: SnapshotWriterStatus } {
  const p = node.manager.persistence!;
  return { appliedSeq: p.appliedSeq as number, status: p.snapshot as SnapshotWriterStatus };
}

/**
 * Waits until every delta message `node` sent is in the stream, `node` applied the whole log, and its
 * snapshot writer wrote everything (dirty 0, checkpoint = last sequence). Async deltas are plain NATS
 * publishes that JetStream stores a moment later: without the first condition an empty or partial
 * stream would look fully written.
 */
async function flushed(
  node: BenchNode,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<{ last: number; status: SnapshotWriterStatus }> {
  await node.nc.flush();
  const sent = () => node.sessions.stats.sent.delta ?? 0;
  let lastReport = Date.now();
  return waitFor(
    'the snapshot writer to flush everything',
    async () => {
      const { last } = await node.log!.bounds();
      const { appliedSeq, status } = snapshotStatus(node);
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        log(
          `  waiting for the snapshot: stored ${last}/${sent()} messages, applied ${appliedSeq}, dirty ${status.dirty}, checkpoint ${status.checkpoint}, items written ${status.itemsWritten}, errors ${status.errors}`,
        );
      }
      return last >= sent() && appliedSeq >= last && status.dirty === 0 && (status.checkpoint ?? 0) >= last
        ? { last, status: { ...status } }
        : false;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

async function measureCoalescing(
  url: string,
  store: SnapshotStore,
  tag: string,
  options: PersistenceOptions,
  warnings: string[],
): Promise<CoalescingResult> {
  const { sessions, writesPerSec, durationSec } = options.coalesce;
  const node = await createNode(url, `bench-co-${tag}`, 'a', collectingLogger(warnings), { log: true, store });
  try {
    await node.sessions.start();
    const cookies = await seed(node, sessions, 50, true, options.log);
    const before = await flushed(node, 60_000, options.log);
    options.log(`persistence: coalescing, ${writesPerSec} writes/s over ${sessions} sessions for ${durationSec} s`);
    let issued = 0;
    let failed = 0;
    const inflight = new Set<Promise<void>>();
    const t0 = performance.now();
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed >= durationSec * 1000) break;
      const due = Math.floor((elapsed / 1000) * writesPerSec);
      while (issued < due) {
        const cookie = cookies[issued++ % cookies.length]!;
        const write = Promise.resolve(
          node.app.request('http://bench.local/counter', { method: 'POST', headers: { cookie } }),
        ).then(
          (response) => void (response.status !== 204 && failed++),
          () => void failed++,
        );
        inflight.add(write);
        void write.finally(() => inflight.delete(write));
      }
      await sleep(2);
    }
    await Promise.all(inflight);
    const loadSec = (performance.now() - t0) / 1000;
    const after = await flushed(node, 120_000, options.log);
    const itemWrites = after.status.itemsWritten - before.status.itemsWritten;
    return {
      sessions,
      targetWritesPerSec: writesPerSec,
      loadSec: round(loadSec, 2),
      sessionWrites: issued,
      sessionWritesPerSec: round(issued / loadSec, 0),
      logMessages: after.last - before.last,
      itemWrites,
      itemWritesPerSec: round(itemWrites / loadSec, 0),
      ratio: round(itemWrites / issued, 4),
      flushes: after.status.flushes - before.status.flushes,
      snapshotIntervalMs: SNAPSHOT_INTERVAL_MS,
      failed,
    };
  } finally {
    await node.stop();
  }
}

async function join(
  url: string,
  cluster: string,
  path: 'snapshot' | 'peer',
  attempt: number,
  sessions: number,
  pids: { dynamodb: number; nats: number },
  makeStore: () => TimedStore,
  warnings: string[],
): Promise<JoinResult> {
  const store = path === 'snapshot' ? makeStore() : undefined;
  const cpu0 = { process: selfCpuMs(), dynamodb: cpuMs(pids.dynamodb), nats: cpuMs(pids.nats) };
  const t0 = performance.now();
  const node = await createNode(
    url,
    cluster,
    `j-${path}-${attempt}`,
    collectingLogger(warnings),
    path === 'snapshot' ? { log: true, store: store! } : {},
  );
  try {
    await node.sessions.start();
    const wallMs = performance.now() - t0;
    const cpu1 = { process: selfCpuMs(), dynamodb: cpuMs(pids.dynamodb), nats: cpuMs(pids.nats) };
    const st = node.manager.stateTransfer;
    const result: JoinResult = {
      path,
      sessions,
      attempt,
      wallMs: round(wallMs, 0),
      stateTransferMs: st.durationMs ?? Number.NaN,
      pages: st.pages,
      held: node.manager.sessionCounts().total ?? 0,
      statePages: node.sessions.stats.received['state-page'] ?? 0,
      cpuMs: {
        process: round(cpu1.process - cpu0.process, 0),
        dynamodb: round(cpu1.dynamodb - cpu0.dynamodb, 0),
        nats: round(cpu1.nats - cpu0.nats, 0),
      },
    };
    if (store) {
      result.loadMs = round(store.loadMs, 0);
      result.replayed = snapshotStatus(node).appliedSeq - (store.checkpoint ?? 0);
      if (st.source !== 'snapshot')
        warnings.push(`snapshot join ${attempt} of ${sessions}: source ${st.source} (${st.detail ?? ''})`);
    }
    if (result.held !== sessions)
      warnings.push(
        `${path} join ${attempt} of ${sessions}: the joiner holds ${result.held} sessions (state ${st.state}, ${st.detail ?? ''})`,
      );
    return result;
  } finally {
    await node.stop();
  }
}

/** Seeds a cluster of `count` sessions, waits for the snapshot, then joins from DynamoDB and from a peer, alternately. */
async function measureSize(
  url: string,
  makeStore: () => TimedStore,
  pids: { dynamodb: number; nats: number },
  tag: string,
  count: number,
  joins: number,
  options: PersistenceOptions,
  warnings: string[],
): Promise<SizeResult> {
  const cluster = `bench-p${count}-${tag}`;
  const seedNode = await createNode(url, cluster, 'a', collectingLogger(warnings), { log: true, store: makeStore() });
  try {
    await seedNode.sessions.start();
    options.log(`persistence: ${count} sessions: creating them through the middleware`);
    const jvm0 = cpuMs(pids.dynamodb);
    const t0 = performance.now();
    await seed(seedNode, count, options.seedConcurrency, false, options.log);
    const t1 = performance.now();
    options.log(
      `persistence: ${count} sessions created in ${((t1 - t0) / 1000).toFixed(1)} s; waiting for the snapshot writer`,
    );
    const { last } = await flushed(seedNode, 900_000, options.log);
    const t2 = performance.now();
    const jvm1 = cpuMs(pids.dynamodb);
    options.log(
      `persistence: ${count} sessions in DynamoDB after ${((t2 - t1) / 1000).toFixed(1)} s more (log at ${last}); joining`,
    );
    const results: JoinResult[] = [];
    for (let attempt = 1; attempt <= joins; attempt++) {
      for (const path of ['snapshot', 'peer'] as const) {
        const r = await join(url, cluster, path, attempt, count, pids, makeStore, warnings);
        results.push(r);
        options.log(
          `persistence: ${count} sessions, join from ${path}: ${r.wallMs} ms (state transfer ${r.stateTransferMs} ms${r.loadMs !== undefined ? `, DynamoDB load ${r.loadMs} ms, replayed ${r.replayed}` : ''}), ${r.pages} pages, holds ${r.held}`,
        );
      }
    }
    const jsm = await jetstreamManager(seedNode.nc);
    await jsm.streams.delete(seedNode.log!.name).catch(() => undefined);
    return {
      sessions: count,
      seedSec: round((t1 - t0) / 1000, 2),
      seedPerSec: round(count / ((t1 - t0) / 1000), 0),
      flushWaitSec: round((t2 - t1) / 1000, 2),
      flushItemsPerSec: round(count / ((t2 - t0) / 1000), 0),
      dynamodbCpuPct: round((100 * (jvm1 - jvm0)) / (t2 - t0), 1),
      logMessages: last,
      joins: results,
    };
  } finally {
    await seedNode.stop();
  }
}

/** The persistence section: its own nats-server with JetStream and DynamoDB Local, stopped at the end. */
export async function measurePersistence(options: PersistenceOptions): Promise<PersistenceResult> {
  const started = performance.now();
  const loadStart = os.loadavg()[0]!;
  const warnings: string[] = [];
  let nats: NatsServerHandle | undefined;
  let ddb: DynamoDbLocalHandle | undefined;
  let client: DynamoDBClient | undefined;
  try {
    options.log('persistence: starting nats-server (JetStream) and DynamoDB Local');
    const [n, d] = await Promise.allSettled([
      startNatsServer({ jetstream: true }),
      startDynamoDbLocal({ timeoutMs: 120_000 }),
    ]);
    if (n.status === 'fulfilled') nats = n.value;
    if (d.status === 'fulfilled') ddb = d.value;
    if (n.status === 'rejected') throw n.reason;
    if (d.status === 'rejected') throw d.reason;
    const url = nats!.url;
    const pids = { dynamodb: ddb!.pid, nats: nats!.pid };
    options.log(
      `persistence: nats-server ${url} (pid ${nats!.pid}), DynamoDB Local ${ddb!.endpoint} (pid ${ddb!.pid})`,
    );
    client = new DynamoDBClient({
      endpoint: ddb!.endpoint,
      ...LOCAL_AWS,
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 5000, requestTimeout: 60_000 },
    });
    const tag = Math.random().toString(36).slice(2, 8);
    const table = `bench-snapshots-${tag}`;
    await createSnapshotTable(client, table);
    const c = client;
    const settings = { shards: 16, batchSize: 25, concurrency: 8, stateTransferTimeoutMs: STATE_TRANSFER_TIMEOUT_MS };
    const storeFor = (cluster: string) =>
      new TimedStore(
        new DynamoSnapshotStore({
          client: c,
          table,
          cluster,
          shards: settings.shards,
          batchSize: settings.batchSize,
          concurrency: settings.concurrency,
        }),
      );

    const coalescing = await measureCoalescing(url, storeFor(`bench-co-${tag}`), tag, options, warnings);
    options.log(
      `persistence: coalescing: ${coalescing.sessionWrites} session writes (${coalescing.sessionWritesPerSec}/s) -> ${coalescing.itemWrites} DynamoDB item writes (${coalescing.itemWritesPerSec}/s), ratio ${coalescing.ratio}`,
    );

    const sizes: SizeResult[] = [];
    let reduced: PersistenceResult['reduced'];
    for (const requested of options.sizes) {
      let count = requested;
      const joins = count > 20_000 ? 1 : options.joins;
      const previous = sizes.at(-1);
      if (previous) {
        // Seeding, the snapshot flush and each join grow about linearly with the session count.
        const spentSec = (performance.now() - started) / 1000;
        const joinSec = previous.joins.reduce((s, j) => s + j.wallMs / 1000, 0) / Math.max(1, previous.joins.length);
        const estimatedSec =
          (count / previous.sessions) * (previous.seedSec + previous.flushWaitSec + joinSec * 2 * joins);
        if (spentSec + estimatedSec > options.budgetSec && options.fallbackSize < count) {
          reduced = {
            requested: count,
            measured: options.fallbackSize,
            estimatedSec: round(estimatedSec, 0),
            budgetSec: options.budgetSec,
          };
          options.log(
            `persistence: ${count} sessions would take about ${estimatedSec.toFixed(0)} s more (section budget ${options.budgetSec} s, ${spentSec.toFixed(0)} s spent): measuring ${options.fallbackSize} instead`,
          );
          count = options.fallbackSize;
        }
      }
      const cluster = `bench-p${count}-${tag}`;
      sizes.push(await measureSize(url, () => storeFor(cluster), pids, tag, count, joins, options, warnings));
    }
    return {
      coalescing,
      sizes,
      ...(reduced ? { reduced } : {}),
      settings,
      warnings,
      durationSec: round((performance.now() - started) / 1000, 1),
      loadAverage: { start: loadStart, end: os.loadavg()[0]! },
    };
  } finally {
    client?.destroy();
    await Promise.all([nats?.stop(), ddb?.stop()]);
  }
}
