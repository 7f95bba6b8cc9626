/** `createCluster`: resolves options, wires a node and gives it its lifecycle (`ClusterNode`). */
import type { MiddlewareHandler } from 'hono';
import type { Channel } from '../channel/channel.ts';
import { MessageProtection } from '../codec/protection.ts';
import type { DrainStatus } from '../drain.ts';
import { InvalidOptionsError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { SessionManager } from '../managers/manager.ts';
import type { MemberInfo } from '../membership/membership.ts';
import { SessionVersions } from '../middleware/session-version.ts';
import {
  sessionMiddleware,
  type SessionMiddlewareOptions,
  type SessionVariables,
} from '../middleware/session-middleware.ts';
import type { ListenerOptions, SessionEventMap } from '../session/events.ts';
import type { SessionData } from '../session/session.ts';
import { cloneState } from '../session/state.ts';
import type { ReplicationStats } from '../stats.ts';
import { type ClusterOptions, PAYLOAD_OVERHEAD_BYTES, resolveOptions } from './options.ts';
import { type ClusterStatus, clusterStatus, type SessionList, sessionList, type StatusSource } from './status.ts';
import { type NodeParts, wireNode } from './wire.ts';

/** The members a node sees, read-only. */
export interface MembershipView {
  /** True once this node announced it is draining. */
  readonly draining: boolean;
  /** The other members this node sees, oldest first. */
  members(): MemberInfo[];
  /** The other members that finished state transfer, serve traffic and are reachable (see `MemberInfo.state`). */
  readyMembers(): MemberInfo[];
  /** Whether `node` is a member now (this node excluded). */
  has(node: string): boolean;
}

/** One running cluster node: its session manager, the Hono middleware, its status and its lifecycle. */
export interface ClusterNode {
  /** The cluster name. */
  readonly cluster: string;
  /** This node's id (the cookie route). */
  readonly node: string;
  /** The replication strategy, for what the views do not show (find, inspect, sweep). */
  readonly manager: SessionManager;
  /** The other members, as this node sees them. */
  readonly membership: MembershipView;
  /** Counters, traffic rates and replication lag. */
  readonly stats: ReplicationStats;
  /** The channel: the one passed in `options.channel`, or the in-process default. */
  readonly channel: Channel;
  /** The node's logger, bound to `cluster` and `node`. */
  readonly logger: Logger;
  /** True once state transfer finished. */
  readonly ready: boolean;
  /** Joins the cluster and runs state transfer; resolves when ready. */
  start(): Promise<void>;
  /**
   * Leaves gracefully and releases what the node opened: its subscriptions, its timers and the
   * in-process default channel. A channel passed in `options.channel` stays open: close it (and its
   * connection) yourself.
   */
  stop(): Promise<void>;
  /**
   * Resolves once every message handed to the cluster bus so far (protected ones included) has been
   * published and the broker has received it; call it after the current turn's writes were sent
   * (async writes leave on the next turn) before a runtime may freeze the process.
   */
  flush(): Promise<void>;
  /** The Hono middleware that gives handlers `c.get('session')`. */
  middleware<Data extends SessionData = SessionData>(
    options?: SessionMiddlewareOptions,
  ): MiddlewareHandler<{ Variables: SessionVariables<Data> }>;
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
  on<T extends keyof SessionEventMap>(
    type: T,
    listener: (event: SessionEventMap[T]) => void,
    options?: ListenerOptions,
  ): () => void;
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
export function createCluster(options: ClusterOptions): ClusterNode {
  return clusterNode(wireNode(resolveOptions(options)));
}

/** Gives wired parts their lifecycle, middleware and views. */
export function clusterNode(parts: NodeParts): ClusterNode {
  const { options, channel, bus, membership, manager, stats, logger, drainer, events, principals } = parts;
  const { node } = options;
  const source: StatusSource = {
    cluster: options.cluster,
    node,
    sendMode: options.sendMode,
    advertiseUrl: options.advertiseUrl,
    manager,
    membership,
    stats,
    channelWatch: parts.channelWatch,
  };
  // One per node: the keys are imported once, whatever the number of middlewares.
  // Settles once start() has joined the cluster: a request that names a session while the node joins waits for it.
  let joined!: () => void;
  const ready = new Promise<void>((resolve) => {
    joined = resolve;
  });
  const versions =
    options.readYourWritesWaitMs > 0 ? new SessionVersions(options.versionCookieKeys, options.cluster) : undefined;
  let direct: { unsubscribe(): void } | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;

  const describe = (key: string): PrincipalSession => {
    const state = manager.find(key);
    return state
      ? { key, createdAt: state.createdAt, lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy }
      : { key };
  };
  async function findByPrincipal(principal: string): Promise<PrincipalSession[]> {
    if (typeof principal !== 'string' || principal.length === 0)
      throw new InvalidOptionsError('a principal is a non-empty string');
    const keys = new Set(principals.keysOf(principal));
    if (manager.name === 'backup') {
      // Sessions live on their primary and backup only: ask every member what it holds.
      const answers = await Promise.allSettled(
        membership
          .members()
          .map((member) =>
            bus.request(bus.subjects.node(member.node), 'principal', { p: principal }, options.fetchTimeoutMs),
          ),
      );
      for (const answer of answers) {
        if (answer.status === 'rejected')
          logger.warn({ error: (answer.reason as Error).message }, 'findByPrincipal: a member did not answer');
        else if (answer.value.kind === 'principal-keys') for (const key of answer.value.body.k) keys.add(key);
      }
    }
    return [...keys].map(describe);
  }

  return {
    cluster: options.cluster,
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
          if (incoming.reply) bus.send(incoming.reply, 'principal-keys', { k: principals.keysOf(message.body.p) });
        } else manager.onDirect(incoming);
      });
      const limit = channel.maxPayload;
      if (limit !== undefined && options.maxSessionBytes + PAYLOAD_OVERHEAD_BYTES > limit) {
        logger.warn(
          { maxSessionBytes: options.maxSessionBytes, maxPayload: limit },
          'the broker max payload is below maxSessionBytes plus message overhead: the largest sessions will not replicate; raise max_payload or lower maxSessionBytes',
        );
      }
      if (options.clusterKeys) bus.protect(await MessageProtection.create(options.clusterKeys, options.protection));
      await manager.start();
      joined();
      logger.info(
        { sessions: manager.sessionCounts().total, members: membership.members().length, channel: channel.kind },
        'node ready',
      );
    },
    async stop() {
      clearInterval(sampler);
      sampler = undefined;
      await manager.stop();
      direct?.unsubscribe();
      await bus.flush();
      await channel.flush().catch(() => undefined);
      parts.channelWatch.stop();
      if (parts.ownsChannel) await channel.close();
    },
    async flush() {
      await bus.flush();
      await channel.flush();
    },
    middleware<Data extends SessionData = SessionData>(middlewareOptions?: SessionMiddlewareOptions) {
      const inner = sessionMiddleware<Data>(
        {
          node,
          manager,
          clock: parts.clock,
          stats,
          logger,
          maxSessionBytes: options.maxSessionBytes,
          defaultMaxInactiveSeconds: options.maxInactiveSeconds,
          sendMode: options.sendMode,
          limits: {
            maxAttributes: options.maxAttributes,
            maxAttributeNameLength: options.maxAttributeNameLength,
            maxValueDepth: options.maxValueDepth,
          },
          maxActiveSessions: options.maxActiveSessions,
          isDraining: () => drainer.draining,
          whenReady: () => ready,
          defaultMaxLifetimeSeconds: options.maxLifetimeSeconds,
          principalAttribute: options.principalAttribute,
          ...(versions ? { versions, readYourWritesWaitMs: options.readYourWritesWaitMs } : {}),
          ...(options.schema ? { schema: options.schema } : {}),
          // An async commit leaves on the next turn (batching); then the bus and channel flush it.
          settle: () =>
            new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => bus.flush()).then(() => channel.flush()),
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
        const end = {
          ...cloneState(state),
          attributes: new Map(),
          ended: { stamp: parts.clock.tick(), reason: 'invalidated' as const },
        };
        await manager.commit(
          { deltas: [end], modified: true },
          { replicate: true, mode: options.sendMode === 'persist' ? 'persist' : 'ack' },
        );
        ended++;
      }
      logger.info({ principalSessions: ended }, 'ended every session of a principal');
      return ended;
    },
    status() {
      return clusterStatus(source);
    },
    sessions(limit = 200) {
      return sessionList(source, limit);
    },
  };
}
