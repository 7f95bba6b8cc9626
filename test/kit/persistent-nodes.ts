// Owns: in-process cluster nodes with a JetStream replication log (and optionally a snapshot store) on
// the shared nats-server, for the store and persistence tests; plus stream cleanup and a lagging log.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Hono } from 'hono';
import { createDemoApp } from '../../functions/demo-app.ts';
import { jetStreamLogFor, type JetStreamLog, type ReplicationLog } from '../../lib/log/jetstream.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { createCluster, type ClusterOptions, type ClusterNode, type SessionVariables } from '../../lib/index.ts';
import type { DeltaManager } from '../../lib/managers/delta/delta-manager.ts';
import type { SnapshotStore } from '../../lib/store/snapshot-store.ts';
import type { SnapshotWriterStatus } from '../../lib/store/snapshot-writer.ts';
import { memoryLogger, type LogLine } from './logger.ts';

/** A log whose deliveries to this node arrive `delayMs` late (in order): a node whose consumer lags the stream. */
export function laggingLog(inner: ReplicationLog, delayMs: number): ReplicationLog {
  return {
    name: inner.name,
    ensure: () => inner.ensure(),
    append: (data, msgId) => inner.append(data, msgId),
    bounds: () => inner.bounds(),
    follow: (fromSeq, onMessage) =>
      inner.follow(fromSeq, (message) => void setTimeout(() => onMessage(message), delayMs)),
  };
}

/** An in-process node: its own NATS connection, a JetStream log, optionally a store. */
export interface PersistentNode {
  readonly name: string;
  readonly sessions: ClusterNode;
  readonly manager: DeltaManager;
  readonly app: Hono<{ Variables: SessionVariables }>;
  readonly nc: NatsConnection;
  readonly log: JetStreamLog;
  readonly logs: LogLine[];
  /** The snapshot writer's counters (undefined without a store). */
  snapshot(): SnapshotWriterStatus | undefined;
  /** The highest log sequence this node applied. */
  appliedSeq(): number;
  stop(): Promise<void>;
}

/** Creates a node of `cluster` with a JetStream log (and `store` when given); starts it unless `start: false`. */
export async function persistentNode(
  natsUrl: string,
  cluster: string,
  name: string,
  {
    store,
    start = true,
    options = {},
    wrapLog,
  }: {
    store?: SnapshotStore;
    start?: boolean;
    options?: Partial<ClusterOptions>;
    wrapLog?: (log: ReplicationLog) => ReplicationLog;
  } = {},
): Promise<PersistentNode> {
  const nc = await connect({ servers: natsUrl, name: `persist-${cluster}-${name}` });
  const logger = memoryLogger();
  const log = jetStreamLogFor(nc, cluster);
  // Default membership timings (heartbeat 500 ms, drop after 3 s): these tests drive thousands of requests in this
  // one process, and faster failure detection would make members (and so the snapshot leader) flap.
  const sessions = createCluster({
    logger,
    ...options,
    cluster,
    node: name,
    channel: new NatsChannel(nc),
    log: wrapLog ? wrapLog(log) : log,
    ...(store ? { store } : {}),
  });
  const manager = sessions.manager as DeltaManager;
  let stopped: Promise<void> | undefined;
  const node: PersistentNode = {
    name,
    sessions,
    manager,
    app: createDemoApp(sessions),
    nc,
    log,
    logs: logger.lines,
    snapshot: () => manager.persistence?.snapshot as SnapshotWriterStatus | undefined,
    appliedSeq: () => (manager.persistence?.appliedSeq as number | undefined) ?? 0,
    stop: () => (stopped ??= sessions.stop().finally(() => (nc.isClosed() ? undefined : nc.close()))),
  };
  if (start) await sessions.start();
  return node;
}

/** Deletes the replication streams of `clusters` (each test leaves its stream behind in the shared server). */
export async function deleteStreams(natsUrl: string, clusters: Iterable<string>): Promise<void> {
  const names = [...clusters];
  if (names.length === 0) return;
  const nc = await connect({ servers: natsUrl, name: 'persist-cleanup' });
  try {
    const jsm = await jetstreamManager(nc);
    for (const cluster of names) await jsm.streams.delete(jetStreamLogFor(nc, cluster).name).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
