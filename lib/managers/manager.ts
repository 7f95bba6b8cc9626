/**
 * The contract both replication strategies (delta: all-to-all, backup: primary/backup) fulfil for the
 * middleware and the cluster, and the types both share: the parts they are wired with and the options
 * they have in common.
 */
import type { ClusterBus, Incoming } from '../bus/cluster-bus.ts';
import type { Logger } from '../logger.ts';
import type { Membership } from '../membership/membership.ts';
import type { HybridClock, Stamp } from '../session/clock.ts';
import type { SessionObserver } from '../session/events.ts';
import type { SessionChanges } from '../session/session.ts';
import type { SessionState } from '../session/state.ts';
import type { ReplicationStats } from '../stats.ts';
import type { VersionWait, VersionWaitOptions } from './read-your-writes.ts';
import type { PageLimits } from './state-transfer.ts';

/**
 * When a commit's promise resolves (Tomcat's channelSendOptions, simplified): `async` at once,
 * `ack` when every replica applied it, `persist` when the replication log (JetStream) stored it.
 */
export type SendMode = 'async' | 'ack' | 'persist';

/** The parts a manager works with, wired by `createCluster`. */
export interface ManagerParts {
  readonly bus: ClusterBus;
  readonly membership: Membership;
  readonly clock: HybridClock;
  readonly stats: ReplicationStats;
  readonly logger: Logger;
  /** Hears every change the session table merges (events, the principal index, schema drift). */
  readonly observer?: SessionObserver;
}

/** Timing and limits both strategies take; each strategy's options extend these (`createCluster` supplies the defaults). */
export interface CommonManagerOptions {
  /** How long an `ack` commit waits for the members that must apply it. */
  readonly ackTimeoutMs: number;
  /** A joiner's budget for fetching all sessions from a peer. */
  readonly stateTransferTimeoutMs: number;
  /** Expiry sweep period. */
  readonly sweepIntervalMs: number;
  /** Minimum time between two replicated touches of an unchanged session. */
  readonly touchIntervalMs: number;
  /** How long ended sessions stay as tombstones, absorbing late messages. */
  readonly tombstoneTtlMs: number;
  /** How much one state transfer page carries. */
  readonly pageLimits: PageLimits;
}

/** How one request's changes are committed. */
export interface CommitOptions {
  /** False for requests the valve's filter matched: applied here, replicated with the next request. */
  readonly replicate: boolean;
  readonly mode: SendMode;
  /** The route the request's cookie named, for log lines about this commit. */
  readonly route?: string;
}

/** Progress of the state transfer a starting node runs. */
export interface StateTransferStatus {
  state: 'pending' | 'running' | 'done' | 'skipped' | 'failed';
  /** Where the state came from: a live peer, or the snapshot store plus the log. */
  source?: 'peer' | 'snapshot';
  /** The member that sent the sessions. */
  donor?: string;
  sessionsReceived: number;
  pages: number;
  /** Why the node started empty, when it did. */
  detail?: string;
  durationMs?: number;
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

/** A replication strategy. */
export interface SessionManager {
  /** `delta` (all-to-all) or `backup` (primary/backup). */
  readonly name: 'delta' | 'backup';
  /** True once state transfer finished: the node may serve traffic. */
  readonly ready: boolean;
  /**
   * True while the node, after a long gap (disconnected longer than `memberDropMs`, or cut off while stalled), has not
   * caught up: it serves no session until then. @default false (a manager without gap handling)
   */
  readonly catchingUp?: boolean;
  /**
   * After this process stalled past `memberDropMs`: resolves once it read what its connection kept meanwhile (or
   * found itself cut off, then `catchingUp`); undefined when nothing waits. The middleware awaits it first.
   * @default undefined (a manager without gap handling)
   */
  drained?(): Promise<void> | undefined;
  /** Subscribes, joins the cluster and runs state transfer; resolves when ready. */
  start(): Promise<void>;
  /** Leaves the cluster gracefully and stops timers. */
  stop(): Promise<void>;
  /** The live session data this node holds for a key, or undefined (unknown, ended, expired, or only a proxy here). */
  find(key: string): SessionState | undefined;
  /**
   * The session a request names, wherever it lives: the backup manager fetches it from its primary
   * or backup and takes it over. `routeHint` is the node the cookie's route names, asked first
   * when this node does not know the key yet.
   */
  resolve(key: string, routeHint?: string): Promise<SessionState | undefined>;
  /**
   * Read-your-writes: resolves once this node's copy of `key` holds `version` (a version the client
   * was told, see `SessionVersions`) with `current`, or `ended` when the session ended; `behind` when
   * the newer state did not arrive within `waitMs`; `lost` when the writer and every member answered
   * without it (or are gone) and the log has nothing newer. Meanwhile it asks the member that wrote
   * the version, then the other members, and (with a log) replays the log to its end.
   * @default none: a manager without it gets no read-your-writes check
   */
  awaitVersion?(key: string, version: Stamp, options: VersionWaitOptions): Promise<VersionWait>;
  /** Live sessions whose data this node holds. */
  liveSessions(): IterableIterator<SessionState>;
  /**
   * Applies a request's changes here and replicates them. Resolves at once in `async` mode, after
   * every live member applied them (or `ackTimeoutMs`) in `ack` mode, after JetStream stored them in
   * `persist` mode. Never rejects: replication failures are logged and counted, and the promise
   * resolves to false when the changes could not be sent (the middleware answers 503 in `persist`).
   */
  commit(changes: SessionChanges, options: CommitOptions): Promise<boolean | void>;
  /** Handles a message sent to this node's own subject (acks, state pages, copies, fetches). */
  onDirect(incoming: Incoming): void;
  /** The session data this node holds for a key, tombstones included (tests and diagnostics). */
  inspect(key: string): SessionState | undefined;
  /** Sessions whose data this node holds (Tomcat's activeSessions: proxies excluded), for `maxActiveSessions`. */
  activeSessions(): number;
  /** Session counts for `/cluster`. */
  sessionCounts(): Record<string, number>;
  /** State transfer progress for `/cluster` and `/healthz`. */
  readonly stateTransfer: StateTransferStatus;
  /**
   * Prepares this node to stop without losing sessions: the backup manager hands every session it is
   * primary or backup of to other members; the delta manager (every session is everywhere already)
   * waits for outstanding acks. Resolves when nothing is left here; keeps handing over late arrivals
   * until `stop()`. The caller announces draining (`Membership.setDraining`).
   */
  drain(): Promise<void>;
  /** Sessions (backup) or unacknowledged writes (delta) that still keep this node from stopping safely. */
  drainRemaining(): number;
  /** Ends the sessions idle past their timeout as of `now` (ms since epoch); runs every `sweepIntervalMs` by itself. */
  sweep(now: number): void;
  /** Replication log and snapshot store progress for `/cluster`, when they are configured. */
  readonly persistence?: Record<string, unknown>;
  /**
   * The sessions this node knows, at most `limit` rows, for `/cluster/sessions`: the delta manager
   * the sessions it holds, the backup manager every live ownership entry with this node's role.
   * `total` counts them all.
   */
  summaries(limit: number): { total: number; sessions: SessionSummary[] };
}
