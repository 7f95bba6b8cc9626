/** The `SnapshotStore` contract: durable session snapshots plus the log position they reflect. */
import type { SessionState } from '../session/state.ts';

/**
 * One session to write: its state at log sequence `version`. An ended state is kept as a tombstone
 * with its version (until `expiresAt`), so no older snapshot and no live state can bring it back.
 */
export interface SnapshotItem {
  readonly state: SessionState;
  /** The replication log sequence this state reflects; a write never replaces a higher version. */
  readonly version: number;
  /** When the store may forget the item by itself (epoch seconds), or undefined to keep it. */
  readonly expiresAt?: number;
}

/** An item the store can never hold (too large, invalid): skipped and reported instead of retried forever. */
export interface SnapshotRejection {
  readonly key: string;
  readonly reason: string;
}

/** What a batch write did. */
export interface SnapshotWriteResult {
  /** Items written (live states and tombstones). */
  written: number;
  /** Items skipped because the store already held a newer version, or the session's end. */
  superseded: number;
  /** Items skipped because the store can never hold them; absent when there are none. */
  rejected?: SnapshotRejection[];
}

/** Progress of a snapshot load. */
export interface LoadProgress {
  sessions: number;
  pages: number;
}

/**
 * Durable snapshots of one cluster's sessions. Implementations: `MemorySnapshotStore` (tests,
 * single process) and `DynamoSnapshotStore`.
 */
export interface SnapshotStore {
  /** A short name for logs and `/cluster`. */
  readonly kind: string;
  /**
   * Writes items; each is conditional on its version, so an older snapshot never overwrites a newer
   * one, and a live state never overwrites an end. Rejects with `SnapshotWriteError` (holding what was
   * done and the keys left unwritten) when some items could not be written now.
   */
  write(items: readonly SnapshotItem[]): Promise<SnapshotWriteResult>;
  /** Records that every change up to log sequence `sequence` is reflected in the items (never moves back). */
  writeCheckpoint(sequence: number): Promise<void>;
  /** The last checkpoint, or undefined when none was written. */
  readCheckpoint(): Promise<number | undefined>;
  /** Loads every session, page by page; returns the checkpoint read before loading. */
  load(
    onPage: (states: SessionState[]) => void,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<number | undefined>;
}
