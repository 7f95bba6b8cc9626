/** `createCluster`: the one place that validates options and wires channel, bus, membership, manager and middleware. */
import { z } from 'zod';
import { ClusterBus } from './bus/cluster-bus.ts';
import type { Channel, ChannelStatus } from './channel/channel.ts';
import { MemoryChannel } from './channel/memory.ts';
import { InvalidOptionsError } from './errors.ts';
import { consoleLogger, type Logger } from './logger.ts';
import { BackupManager } from './managers/backup-manager.ts';
import { DeltaManager } from './managers/delta-manager.ts';
import type { SendMode, StateTransferStatus } from './managers/manager.ts';
import { Membership } from './membership/membership.ts';
import { sessionMiddleware, type SessionMiddlewareOptions, type SessionVariables } from './middleware/session-middleware.ts';
import { HybridClock } from './session/clock.ts';
import { TOKEN_PATTERN } from './session/ids.ts';
import type { ReplicationLog } from './log/replication-log.ts';
import type { SnapshotStore } from './store/snapshot-store.ts';
import { ReplicationStats, type TrafficRates } from './stats.ts';
import type { LagSummary } from './stats-window.ts';
import { roleOf } from './managers/ownership-map.ts';
import { checkClusterKeys, MessageProtection } from './codec/protection.ts';
import { DrainController, type DrainStatus } from './drain.ts';
import type { MiddlewareHandler } from 'hono';
import { observeAll, SessionEvents, type ListenerOptions, type SessionEventMap } from './session/events.ts';
import { PrincipalIndex } from './session/principal-index.ts';
import { SchemaDriftCheck } from './session/schema.ts';
import { cloneState } from './session/state.ts';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { SessionData } from './session/session.ts';

/** Default session size limit: 1 MiB, or 350 KiB with a snapshot store so every session fits one DynamoDB item. */
const DEFAULT_SESSION_BYTES = 1024 * 1024;
const DEFAULT_STORED_SESSION_BYTES = 350 * 1024;
/** Largest `maxSessionBytes` allowed with a snapshot store (DynamoDB's item limit less the item's keys and fields). */
const MAX_STORED_SESSION_BYTES = 380 * 1024;
/** Room a replication message needs besides the session's attributes (envelope, keys, stamps). */
const PAYLOAD_OVERHEAD_BYTES = 64 * 1024;

const token = (what: string) => z.string().regex(TOKEN_PATTERN, `${what} must be 1-64 characters of A-Z a-z 0-9 _ -`);
const ms = (fallback: number) => z.number().int().positive().default(fallback);

const optionsSchema = z
  .object({
    cluster: token('cluster'),
    node: token('node').optional(),
    channel: z.custom<Channel>((value) => typeof value === 'object' && value !== null && 'publish' in value && 'subscribe' in value, 'channel must implement Channel').optional(),
    subjectPrefix: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'subjectPrefix must be dot-separated tokens of A-Z a-z 0-9 _ -').default('sessrep'),
    manager: z.enum(['delta', 'backup']).default('delta'),
    sendMode: z.enum(['async', 'ack', 'persist']).default('async'),
    ackTimeoutMs: ms(5000),
    heartbeatIntervalMs: ms(500),
    memberDropMs: ms(3000),
    pingTimeoutMs: ms(1000),
    fetchTimeoutMs: ms(5000),
    stateTransferTimeoutMs: z.number().int().nonnegative().default(60_000),
    maxInactiveSeconds: z.number().int().default(1800),
    /** Absolute session lifetime from creation in seconds, enforced on every node beside the idle timeout; 0: none. @default 0 */
    maxLifetimeSeconds: z.number().int().nonnegative().default(0),
    /** Standard Schemas (zod, valibot, arktype) per attribute name, checked at `set()` and when a change arrives from another node. */
    schema: z.record(z.string(), z.custom<StandardSchemaV1>((value) => typeof value === 'object' && value !== null && '~standard' in value, 'schema entries must be Standard Schemas')).optional(),
    /** The attribute `session.setPrincipal()` writes and the principal index reads. @default 'principal' */
    principalAttribute: z.string().min(1).max(256).default('principal'),
    sweepIntervalMs: ms(10_000),
    touchIntervalMs: z.number().int().positive().optional(),
    tombstoneTtlMs: ms(600_000),
    maxSessionBytes: z.number().int().positive().optional(),
    log: z.custom<ReplicationLog>((value) => typeof value === 'object' && value !== null && 'append' in value && 'follow' in value, 'log must implement ReplicationLog').optional(),
    store: z.custom<SnapshotStore>((value) => typeof value === 'object' && value !== null && 'load' in value && 'write' in value, 'store must implement SnapshotStore').optional(),
    snapshotIntervalMs: ms(1000),
    maxActiveSessions: z.number().int().default(-1),
    maxAttributes: z.number().int().positive().default(1000),
    maxAttributeNameLength: z.number().int().positive().max(1024).default(256),
    maxValueDepth: z.number().int().positive().max(1000).default(32),
    clusterKeys: z.array(z.object({ id: z.string(), secret: z.string() })).min(1).optional(),
    protection: z.enum(['encrypt', 'sign']).default('encrypt'),
    /** This node's HTTP base URL, announced in heartbeats and shown on `/cluster` (the dashboard polls every member there). */
    advertiseUrl: z.string().max(512).regex(/^https?:\/\/\S+$/, 'advertiseUrl must be an http(s) URL').optional(),
    /** Draining: how long no session request may arrive before the node reports `drained` (the load balancer stopped routing here). */
    drainQuietMs: z.number().int().nonnegative().default(1000),
    logger: z.custom<Logger>((value) => typeof value === 'object' && value !== null && 'warn' in value && 'child' in value, 'logger must have debug/info/warn/error/child').optional(),
  })
  .strict()
  .refine((o) => o.memberDropMs > o.heartbeatIntervalMs, { message: 'memberDropMs must be longer than heartbeatIntervalMs', path: ['memberDropMs'] })
  .refine((o) => o.sendMode !== 'persist' || o.log !== undefined, { message: 'sendMode persist needs a replication log (JetStream): pass `log`', path: ['sendMode'] })
  .refine((o) => o.store === undefined || o.log !== undefined, { message: 'a snapshot store needs a replication log (JetStream) to replay from: pass `log`', path: ['store'] })
  .refine((o) => o.manager === 'delta' || o.log === undefined, { message: 'the replication log and snapshot store work with the delta manager only', path: ['log'] })
  .refine((o) => o.store === undefined || o.maxSessionBytes === undefined || o.maxSessionBytes <= MAX_STORED_SESSION_BYTES, {
    message: `with a snapshot store, maxSessionBytes must be at most ${MAX_STORED_SESSION_BYTES} (DynamoDB items are limited to 400 KB)`,
    path: ['maxSessionBytes'],
  });



/** Options of `createCluster`; only `cluster` is required. */
export type ClusterOptions = z.input<typeof optionsSchema>;

/** A member as shown on `/cluster`. */
export interface MemberStatus {
  node: string;
  self: boolean;
  /** `suspected` (missed heartbeats, answered a ping) wins over `draining`, which wins over `joining` (not ready yet). */
  state: 'alive' | 'suspected' | 'draining' | 'joining';
  ready: boolean;
  draining: boolean;
  /** The member's HTTP base URL, when it advertises one. */
  url?: string;
  startedAt: number;
  lastSeenMsAgo: number;
}

/** One row of `/cluster/sessions`: never the full key (it is a credential) nor attribute values. */
export interface SessionSummary {
  /** The first 8 characters of the session key. */
  key: string;
  /** Backup manager: this node's role, and where the session lives. */
  role?: 'primary' | 'backup' | 'proxy';
  primary?: string;
  backup?: string;
  /** When this node holds the session's data. */
  createdAt?: number;
  lastAccessedAt?: number;
  lastAccessedBy?: string;
}

/** The JSON served at `/cluster/sessions`. */
export interface SessionList {
  node: string;
  manager: 'delta' | 'backup';
  /** This node's clock when it answered (ms since epoch). */
  time: number;
  /** Sessions this node knows (delta: held; backup: every live ownership entry). */
  total: number;
  sessions: SessionSummary[];
}

/** The JSON served at `/cluster`. */
export interface ClusterStatus {
  cluster: string;
  node: string;
  manager: string;
  ready: boolean;
  sendMode: SendMode;
  channel: { kind: string; status: ChannelStatus; detail?: string };
  /** This node's clock when it answered (ms since epoch): ages on `/cluster` are relative to it. */
  time: number;
  /** This node's advertised HTTP base URL. */
  url?: string;
  draining: boolean;
  members: MemberStatus[];
  sessions: Record<string, number>;
  /** Messages and bytes per second in and out, over the last ~10 s. */
  rates: TrafficRates;
  /** Replication lag (now minus the write's stamp, measured where it is applied) over the last minute. */
  replicationLag: LagSummary;
  stateTransfer: StateTransferStatus;
  /** Replication log and snapshot store progress, when configured. */
  persistence?: Record<string, unknown>;
  stats: Record<string, unknown>;
}

/** A running cluster node: the manager, its middleware and its status. */
export interface ReplicatedSessions {
  readonly cluster: string;
  readonly node: string;
  readonly manager: DeltaManager | BackupManager;
  readonly membership: Membership;
  readonly stats: ReplicationStats;
  readonly channel: Channel;
  readonly logger: Logger;
  /** True once state transfer finished. */
  readonly ready: boolean;
  /** Joins the cluster and runs state transfer; resolves when ready. */
  start(): Promise<void>;
  /** Leaves gracefully and closes the channel. */
  stop(): Promise<void>;
  /** The Hono middleware that gives handlers `c.get('session')`. */
  middleware<Data extends SessionData = SessionData>(options?: SessionMiddlewareOptions): MiddlewareHandler<{ Variables: SessionVariables<Data> }>;
  /** The `/cluster` view of this node. */
  status(): ClusterStatus;
  /** The sessions this node knows, at most `limit` (for `/cluster/sessions`): key prefixes only. */
  sessions(limit?: number): SessionList;
  /**
   * Starts draining (idempotent): announces it, refuses new sessions (503 + Retry-After) and hands
   * this node's sessions to other members. Resolves when they are handed over; `drainStatus()` says
   * when it is safe to stop.
   */
  drain(): Promise<DrainStatus>;
  /** `serving`, `draining`, or `drained` (safe to stop), and what is left. */
  drainStatus(): DrainStatus;
  /**
   * Listens to session events: `created`, `ended` (with its reason) and `attribute` (set or removed).
   * By default only changes made on this node; `{ replicated: true }` also those arriving from other
   * nodes (`origin: 'remote'`). A listener that throws is logged and counted. Returns the remover.
   */
  on<T extends keyof SessionEventMap>(type: T, listener: (event: SessionEventMap[T]) => void, options?: ListenerOptions): () => void;
  /**
   * The live sessions of a principal (`session.setPrincipal(id)`) anywhere in the cluster: the delta
   * manager answers from its own index (every node holds every session), the backup manager asks
   * every member for the sessions it holds.
   */
  findByPrincipal(principal: string): Promise<PrincipalSession[]>;
  /** Ends every session of a principal on every node (password change, "log out everywhere"); resolves to how many ended. */
  endSessionsOf(principal: string): Promise<number>;
}

/** A session found by `findByPrincipal`. The key is a credential: show only a prefix of it. */
export interface PrincipalSession {
  readonly key: string;
  readonly createdAt?: number;
  readonly lastAccessedAt?: number;
  readonly lastAccessedBy?: string;
}

/**
 * Validates options and wires a cluster node. Throws `InvalidOptionsError` naming every bad option.
 * Without a `channel` it uses the in-process `MemoryChannel` (the embedded default).
 */
export function createCluster(options: ClusterOptions): ReplicatedSessions {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new InvalidOptionsError(`invalid options: ${z.prettifyError(parsed.error).replaceAll('\n', '; ')}`);
  const o = parsed.data;
  if (o.clusterKeys) checkClusterKeys(o.clusterKeys);
  const node = o.node ?? crypto.randomUUID().slice(0, 8);
  const channel: Channel = o.channel ?? new MemoryChannel();
  const logger = (o.logger ?? consoleLogger()).child({ cluster: o.cluster, node });
  const stats = new ReplicationStats();
  const clock = new HybridClock(node);
  const bus = new ClusterBus(channel, { cluster: o.cluster, node, incarnation: crypto.randomUUID() }, o.subjectPrefix, stats, logger);
  const membership = new Membership(
    bus,
    { heartbeatIntervalMs: o.heartbeatIntervalMs, memberDropMs: o.memberDropMs, pingTimeoutMs: o.pingTimeoutMs, ...(o.advertiseUrl !== undefined ? { advertiseUrl: o.advertiseUrl } : {}) },
    logger,
  );
  const events = new SessionEvents(node, logger, () => stats.listenerErrors++);
  const principals = new PrincipalIndex(o.principalAttribute);
  const observers = [events.observer(), principals.observer()];
  const drift = o.schema
    ? new SchemaDriftCheck(o.schema, node, (name, author, issues) => {
        stats.schemaDrift++;
        logger.warn({ attribute: name, from: author, issues: issues.slice(0, 3) }, "schema drift: a replicated value does not match this node's schema (applied anyway)");
      })
    : undefined;
  if (drift) observers.push(drift.observer());
  const touchIntervalMs = o.touchIntervalMs ?? Math.min(60_000, Math.max(1000, Math.floor((o.maxInactiveSeconds * 1000) / 10)));
  const parts = { bus, membership, clock, stats, logger, observer: observeAll(observers) };
  // The default fits one broker message (NATS's default max payload is 1 MB) and one DynamoDB item.
  const fitsPayload = channel.maxPayload !== undefined ? channel.maxPayload - PAYLOAD_OVERHEAD_BYTES : Infinity;
  const maxSessionBytes = o.maxSessionBytes ?? Math.min(o.store ? DEFAULT_STORED_SESSION_BYTES : DEFAULT_SESSION_BYTES, fitsPayload);
  const managerOptions = {
    ackTimeoutMs: o.ackTimeoutMs,
    stateTransferTimeoutMs: o.stateTransferTimeoutMs,
    sweepIntervalMs: o.sweepIntervalMs,
    touchIntervalMs,
    tombstoneTtlMs: o.tombstoneTtlMs,
    resyncAfterMs: o.memberDropMs,
    ...(o.log ? { log: o.log } : {}),
    ...(o.store ? { store: o.store, snapshot: { intervalMs: o.snapshotIntervalMs, checkpointPollMs: Math.max(5000, o.snapshotIntervalMs * 5) } } : {}),
  };
  const manager: DeltaManager | BackupManager =
    o.manager === 'backup' ? new BackupManager(parts, { ...managerOptions, fetchTimeoutMs: o.fetchTimeoutMs }) : new DeltaManager(parts, managerOptions);
  const drainer = new DrainController(manager, membership, logger, o.drainQuietMs);
  const channelState: ClusterStatus['channel'] = { kind: channel.kind, status: 'connected' };
  channel.onStatus((status, detail) => {
    channelState.status = status;
    if (detail !== undefined) channelState.detail = detail;
    if (status === 'error') {
      stats.channelErrors++;
      logger.error({ status, detail }, 'the broker refused an operation');
    } else if (status === 'connected' || status === 'closed') logger.info({ status, detail }, 'channel connection changed');
    else logger.warn({ status, detail }, 'channel connection changed');
  });
  let direct: { unsubscribe(): void } | undefined;

  const describe = (key: string): PrincipalSession => {
    const state = manager.find(key);
    return state ? { key, createdAt: state.createdAt, lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy } : { key };
  };
  async function findByPrincipal(principal: string): Promise<PrincipalSession[]> {
    if (typeof principal !== 'string' || principal.length === 0) throw new InvalidOptionsError('a principal is a non-empty string');
    const keys = new Set(principals.keysOf(principal));
    if (manager.name === 'backup') {
      // Sessions live on their primary and backup only: ask every member what it holds.
      const answers = await Promise.allSettled(
        membership.members().map((member) => bus.request(bus.subjects.node(member.node), 'principal', { p: principal }, o.fetchTimeoutMs)),
      );
      for (const answer of answers) {
        if (answer.status === 'fulfilled' && answer.value.kind === 'principal-keys') for (const key of (answer.value.body as { k: string[] }).k) keys.add(key);
        else if (answer.status === 'rejected') logger.warn({ error: (answer.reason as Error).message }, 'findByPrincipal: a member did not answer');
      }
    }
    return [...keys].map(describe);
  }
  let sampler: ReturnType<typeof setInterval> | undefined;

  return {
    cluster: o.cluster,
    node,
    manager,
    membership,
    stats,
    channel,
    logger,
    get ready() {
      return manager.ready;
    },
    async start() {
      stats.sampleRates();
      sampler ??= setInterval(() => stats.sampleRates(), 1000);
      direct = bus.listen(bus.subjects.node(node), (incoming) => {
        const { message } = incoming;
        if (message.kind === 'ping') membership.answerPing(incoming);
        else if (message.kind === 'principal') {
          if (incoming.reply) bus.send(incoming.reply, 'principal-keys', { k: principals.keysOf((message.body as { p: string }).p) });
        } else manager.onDirect(incoming);
      });
      const limit = channel.maxPayload;
      if (limit !== undefined && maxSessionBytes + PAYLOAD_OVERHEAD_BYTES > limit) {
        logger.warn({ maxSessionBytes, maxPayload: limit }, 'the broker max payload is below maxSessionBytes plus message overhead: the largest sessions will not replicate; raise max_payload or lower maxSessionBytes');
      }
      if (o.clusterKeys) bus.protect(await MessageProtection.create(o.clusterKeys, o.protection));
      await manager.start();
      logger.info({ sessions: manager.sessionCounts().total, members: membership.members().length, channel: channel.kind }, 'node ready');
    },
    async stop() {
      clearInterval(sampler);
      sampler = undefined;
      await manager.stop();
      direct?.unsubscribe();
      await bus.flush();
      await channel.flush().catch(() => undefined);
      await channel.close();
    },
    middleware<Data extends SessionData = SessionData>(middlewareOptions?: SessionMiddlewareOptions) {
      const inner = sessionMiddleware<Data>(
        {
          node,
          manager,
          clock,
          stats,
          logger,
          maxSessionBytes,
          defaultMaxInactiveSeconds: o.maxInactiveSeconds,
          sendMode: o.sendMode,
          limits: { maxAttributes: o.maxAttributes, maxAttributeNameLength: o.maxAttributeNameLength, maxValueDepth: o.maxValueDepth },
          maxActiveSessions: o.maxActiveSessions,
          isDraining: () => drainer.draining,
          defaultMaxLifetimeSeconds: o.maxLifetimeSeconds,
          principalAttribute: o.principalAttribute,
          ...(o.schema ? { schema: o.schema } : {}),
          // An async commit leaves on the next turn (batching); then the bus and channel flush it.
          settle: () => new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => bus.flush()).then(() => channel.flush()),
        },
        middlewareOptions,
      );
      // Session requests in flight keep a draining node from reporting `drained`.
      const tracked: MiddlewareHandler<{ Variables: SessionVariables<Data> }> = async function trackedSession(c, next) {
        const leave = drainer.enter();
        try {
          return await inner(c, next);
        } finally {
          leave();
        }
      };
      return tracked;
    },
    drain() {
      return drainer.start().then(() => drainer.status());
    },
    drainStatus() {
      return drainer.status();
    },
    on(type, listener, listenerOptions) {
      return events.on(type, listener, listenerOptions);
    },
    findByPrincipal,
    async endSessionsOf(principal) {
      let ended = 0;
      for (const { key } of await findByPrincipal(principal)) {
        // The backup manager takes the session over from its holder first; the end then reaches every copy.
        const state = await manager.resolve(key);
        if (!state) continue;
        const end = { ...cloneState(state), attributes: new Map(), ended: { stamp: clock.tick(), reason: 'invalidated' as const } };
        await manager.commit({ deltas: [end], modified: true }, { replicate: true, mode: o.sendMode === 'persist' ? 'persist' : 'ack' });
        ended++;
      }
      logger.info({ principalSessions: ended }, 'ended every session of a principal');
      return ended;
    },
    status() {
      const now = Date.now();
      const draining = membership.draining;
      const self: MemberStatus = {
        node,
        self: true,
        state: draining ? 'draining' : manager.ready ? 'alive' : 'joining',
        ready: manager.ready,
        draining,
        ...(o.advertiseUrl !== undefined ? { url: o.advertiseUrl } : {}),
        startedAt: membership.startedAt,
        lastSeenMsAgo: 0,
      };
      return {
        cluster: o.cluster,
        node,
        manager: manager.name,
        ready: manager.ready,
        sendMode: o.sendMode,
        channel: { ...channelState },
        time: now,
        ...(o.advertiseUrl !== undefined ? { url: o.advertiseUrl } : {}),
        draining,
        members: [
          self,
          ...membership.members().map(
            (m): MemberStatus => ({
              node: m.node,
              self: false,
              state: m.state === 'suspected' ? 'suspected' : m.draining ? 'draining' : m.ready ? 'alive' : 'joining',
              ready: m.ready,
              draining: m.draining,
              ...(m.url !== undefined ? { url: m.url } : {}),
              startedAt: m.startedAt,
              lastSeenMsAgo: now - m.lastSeen,
            }),
          ),
        ],
        sessions: manager.sessionCounts(),
        rates: stats.rates(),
        replicationLag: stats.lag(now),
        stateTransfer: { ...manager.stateTransfer },
        ...(manager instanceof DeltaManager && manager.persistence ? { persistence: manager.persistence } : {}),
        stats: stats.snapshot(),
      };
    },
    sessions(limit = 200) {
      const max = Math.max(0, Math.min(Math.floor(limit), 10_000));
      const rows: SessionSummary[] = [];
      const held = (key: string): Pick<SessionSummary, 'createdAt' | 'lastAccessedAt' | 'lastAccessedBy'> => {
        const state = manager.inspect(key);
        return state && !state.ended ? { createdAt: state.createdAt, lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy } : {};
      };
      if (manager instanceof BackupManager) {
        let total = 0;
        for (const entry of manager.entries()) {
          total++;
          if (rows.length < max) rows.push({ key: entry.key.slice(0, 8), role: roleOf(entry, node), primary: entry.primary, backup: entry.backup, ...held(entry.key) });
        }
        return { node, manager: 'backup', time: Date.now(), total, sessions: rows };
      }
      for (const state of manager.liveSessions()) {
        if (rows.length >= max) break;
        rows.push({ key: state.key.slice(0, 8), createdAt: state.createdAt, lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy });
      }
      return { node, manager: 'delta', time: Date.now(), total: manager.sessionCounts().total ?? rows.length, sessions: rows };
    },
  };
}
