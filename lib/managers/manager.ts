/** The contract every replication strategy (delta, later backup) fulfils for the middleware and the cluster. */
import type { SessionChanges } from '../session/session.ts';
import type { SessionState } from '../session/state.ts';
import type { Incoming } from '../bus/cluster-bus.ts';

/**
 * When a commit's promise resolves (Tomcat's channelSendOptions, simplified): `async` at once,
 * `ack` when every replica applied it, `persist` when the replication log (JetStream) stored it.
 */
export type SendMode = 'async' | 'ack' | 'persist';

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

/** A replication strategy. */
export interface SessionManager {
  /** `delta` (all-to-all) or `backup` (primary/backup). */
  readonly name: 'delta' | 'backup';
  /** True once state transfer finished: the node may serve traffic. */
  readonly ready: boolean;
  /**
   * True while the node, after a gap (disconnected or stalled longer than `memberDropMs`), has not
   * caught up: it serves no session until then. @default false (a manager without gap handling)
   */
  readonly catchingUp?: boolean;
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
}
