/**
 * The `ReplicationLog` contract: an ordered, durable, bounded record of one cluster's replication
 * messages that joining, restarted and thawed nodes replay from a sequence instead of asking a peer.
 * Implemented by `JetStreamLog` (`session-replication/jetstream`); the contract suite in
 * `test/contracts/replication-log.ts` holds every implementation to it.
 */

/** A stored replication message. */
export interface LogMessage {
  /** Its position in the log: 1 for the first message ever stored, increasing by one per message. */
  readonly seq: number;
  /** The bytes given to `append`, unchanged. */
  readonly data: Uint8Array;
}

/** A running replay: delivers stored messages in order, then new ones as they are stored. */
export interface LogFollower {
  /** Stops delivering. */
  stop(): void;
}

/** The log contract the delta manager uses. */
export interface ReplicationLog {
  /** The log's name, for logs and `/cluster`. */
  readonly name: string;
  /** Creates the log's storage if it does not exist (idempotent; nodes may race). */
  ensure(): Promise<void>;
  /**
   * Stores a message and resolves with its sequence once stored. `msgId` names the message for its
   * writer: appending the same `msgId` with the same data again (a retry) stores it once and resolves
   * with the first sequence. Ids of different writers (log instances) never collide. An id this
   * writer already used for different data rejects with `DuplicateMessageIdError` and stores nothing.
   */
  append(data: Uint8Array, msgId: string): Promise<number>;
  /** First retained and last stored sequence (`first` is `last + 1` for an empty log). */
  bounds(): Promise<{ first: number; last: number }>;
  /** Delivers every message from `fromSeq` on, in order and without gaps, until stopped. */
  follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower>;
  /**
   * Waits (at most `timeoutMs`) until everything stored now was delivered to the follower and applied,
   * restarting a follower that stalled (`CatchUpLog` does, for a frozen or paused node); `ok` is false
   * when it did not get there. Read-your-writes uses it when a client presents a newer version.
   * @default none: the delta manager waits for its follower instead
   */
  catchUp?(timeoutMs: number): Promise<{ readonly ok: boolean }>;
}
