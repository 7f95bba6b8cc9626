/** The contract every replication strategy (delta, later backup) fulfils for the middleware and the cluster. */
import type { SessionChanges } from '../session/session.ts';
import type { SessionState } from '../session/state.ts';

/** When a commit's promise resolves (Tomcat's channelSendOptions, simplified). */
export type SendMode = 'async' | 'ack';

/** How one request's changes are committed. */
export interface CommitOptions {
  /** False for requests the valve's filter matched: applied here, replicated with the next request. */
  readonly replicate: boolean;
  readonly mode: SendMode;
}

/** Progress of the state transfer a starting node runs. */
export interface StateTransferStatus {
  state: 'pending' | 'running' | 'done' | 'skipped' | 'failed';
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
  /** `delta` (all-to-all). */
  readonly name: string;
  /** True once state transfer finished: the node may serve traffic. */
  readonly ready: boolean;
  /** Subscribes, joins the cluster and runs state transfer; resolves when ready. */
  start(): Promise<void>;
  /** Leaves the cluster gracefully and stops timers. */
  stop(): Promise<void>;
  /** The live session with this key, or undefined (unknown, ended or expired). */
  find(key: string): SessionState | undefined;
  /**
   * Applies a request's changes here and replicates them. Resolves at once in `async` mode, and
   * after every live member applied them (or `ackTimeoutMs`) in `ack` mode. Never rejects:
   * replication failures are logged and counted.
   */
  commit(changes: SessionChanges, options: CommitOptions): Promise<void>;
  /** Session counts for `/cluster`. */
  sessionCounts(): Record<string, number>;
  /** State transfer progress for `/cluster` and `/healthz`. */
  readonly stateTransfer: StateTransferStatus;
}
