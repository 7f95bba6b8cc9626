// Owns: in-process cluster nodes with a JetStream replication log (and optionally a snapshot store) on
// the shared nats-server, for the store and persistence tests; plus stream cleanup and a cookie client.
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Hono } from "hono";
import { createDemoApp } from "../../functions/demo-app.ts";
import { jetStreamLogFor, type JetStreamLog, type ReplicationLog } from "../../lib/channel/jetstream-log.ts";
import { NatsChannel } from "../../lib/channel/nats.ts";
import { createCluster, type ClusterOptions, type Logger, type ReplicatedSessions, type SessionVariables } from "../../lib/index.ts";
import { DeltaManager } from "../../lib/managers/delta/delta-manager.ts";
import type { SnapshotStore } from "../../lib/store/snapshot-store.ts";
import type { SnapshotWriterStatus } from "../../lib/store/snapshot-writer.ts";
import { SessionClient } from "../kit/index.ts";

/** One captured log line. */
export interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that keeps lines in memory: tests stay quiet and can assert on warnings. */
export function memoryLogger(lines: LogLine[] = [], bound: Record<string, unknown> = {}): Logger & { lines: LogLine[] } {
  const at = (level: LogLine["level"]) => (fields: Record<string, unknown>, message: string) => void lines.push({ level, fields: { ...bound, ...fields }, message });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), child: (fields) => memoryLogger(lines, { ...bound, ...fields }) };
}

/** A cluster name no other test uses (a NATS subject token and part of a stream name). */
export function uniqueCluster(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 64);
}

/** A log whose deliveries to this node arrive `delayMs` late (in order): a node whose consumer lags the stream. */
export function laggingLog(inner: ReplicationLog, delayMs: number): ReplicationLog {
  return {
    name: inner.name,
    ensure: () => inner.ensure(),
    append: (data, msgId) => inner.append(data, msgId),
    bounds: () => inner.bounds(),
    follow: (fromSeq, onMessage) => inner.follow(fromSeq, (message) => void setTimeout(() => onMessage(message), delayMs)),
  };
}

/** An in-process node: its own NATS connection, a JetStream log, optionally a store. */
export interface PersistentNode {
  readonly name: string;
  readonly sessions: ReplicatedSessions;
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
  }: { store?: SnapshotStore; start?: boolean; options?: Partial<ClusterOptions>; wrapLog?: (log: ReplicationLog) => ReplicationLog } = {},
): Promise<PersistentNode> {
  const nc = await connect({ servers: natsUrl, name: `persist-${cluster}-${name}` });
  const logger = memoryLogger();
  const log = jetStreamLogFor(nc, cluster);
  // Default membership timings (heartbeat 500 ms, drop after 3 s): these tests drive thousands of requests in this
  // one process, and faster failure detection would make members (and so the snapshot leader) flap.
  const sessions = createCluster({ logger, ...options, cluster, node: name, channel: new NatsChannel(nc), log: wrapLog ? wrapLog(log) : log, ...(store ? { store } : {}) });
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
  const nc = await connect({ servers: natsUrl, name: "persist-cleanup" });
  try {
    const jsm = await jetstreamManager(nc);
    for (const cluster of names) await jsm.streams.delete(jetStreamLogFor(nc, cluster).name).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

/** A cookie-keeping client for in-process demo apps. */
export class Client {
  readonly jar = new SessionClient();

  /** The session key (the cookie without its route). */
  get key(): string {
    const cookie = this.jar.cookie;
    if (!cookie) throw new Error("the client holds no session cookie");
    return cookie.slice(0, cookie.lastIndexOf("."));
  }

  /** `method path` on `node`'s app; a string body is sent as-is, anything else as JSON. */
  async request(node: { app: Hono<any> }, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const headers: Record<string, string> = {};
    if (this.jar.cookie !== undefined) headers.cookie = `SESSIONID=${this.jar.cookie}`;
    const res = await node.app.request(path, { method, headers, ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}) });
    const text = await res.text();
    for (const line of res.headers.getSetCookie()) this.jar.absorb(line);
    // An in-process request does no I/O: yield one event-loop turn as a real HTTP round trip would, so that
    // timers (heartbeats, flushes) and sockets keep running while a test drives thousands of requests.
    await new Promise((resolve) => setImmediate(resolve));
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  }
}

/** Runs `fn` over `items` with at most `concurrency` in flight. */
export async function inBatches<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}
