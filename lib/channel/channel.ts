/** The `Channel` contract: the pub-sub primitives replication needs, independent of the broker. */

/** A message as delivered to a subscriber. */
export interface ChannelMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Where to send a reply, when the sender asked for one. */
  readonly reply?: string;
}

/** What a subscription calls with each message; it must not throw (errors it throws are swallowed). */
export type MessageHandler = (message: ChannelMessage) => void;

/** Options of `Channel.subscribe`. */
export interface SubscribeOptions {
  /** A queue group: each message goes to one member of the group only. @default none (every subscriber gets it) */
  readonly queue?: string;
}

/** An active subscription. */
export interface ChannelSubscription {
  unsubscribe(): void;
}

/**
 * Connection state changes a channel reports (a memory channel never disconnects). `error` is a
 * server-side refusal on a live connection, such as a permission violation on a subject.
 */
export type ChannelStatus = 'connected' | 'disconnected' | 'reconnecting' | 'closed' | 'error';

/**
 * A publish/subscribe transport with NATS subject semantics (`.`-separated tokens, `*` and `>`
 * wildcards, see `subjects.ts`) and request/reply. Implementations: `MemoryChannel` (in-process),
 * `NatsChannel` and `SnsSqsChannel`.
 */
export interface Channel {
  /** A short name for logs and `/cluster`: `memory`, `nats` or `sns-sqs`. */
  readonly kind: string;
  /** The largest message the broker accepts, in bytes, when it is known. */
  readonly maxPayload?: number;
  /**
   * Messages from one publisher reach each subscriber in publish order, across subjects (NATS, memory;
   * not SNS standard topics). The backup manager then sends an ownership entry a holder already got
   * only once, not with every write. @default false
   */
  readonly ordered?: boolean;
  /**
   * Publishes fire-and-forget; with `reply`, receivers may answer to that subject. A subject with a
   * wildcard or an empty token throws `InvalidOptionsError`.
   */
  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void;
  /**
   * Subscribes to a subject (wildcards allowed). With `queue`, each message goes to one member of
   * the queue group only. The handler must not throw; errors it throws are swallowed.
   */
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription;
  /**
   * Sends a request and resolves with the first reply. Rejects with `ChannelRequestError`: kind
   * `no-responders` at once when nobody subscribes, `timeout` after `timeoutMs`.
   */
  request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array>;
  /** Resolves once everything published so far has left this process. */
  flush(): Promise<void>;
  /**
   * Resolves once the broker has received every earlier publish and queued it for its subscribers:
   * one cheap round trip (NATS: PING/PONG on the connection, which the server answers in order). An
   * async write is answered after it (bounded), so a read elsewhere right after the answer finds the
   * write. Omitted where no cheap round trip exists (SNS + SQS): async writes then do not wait.
   */
  sync?(): Promise<void>;
  /**
   * Resolves once the broker answered one round trip (NATS: a PING and its PONG). Optional: a channel
   * without a connection worth checking leaves it out. The managers use it to notice a silent partition
   * (packets dropped, the connection left half-open), which no status change reports for minutes.
   */
  ping?(): Promise<void>;
  /** Registers a listener for connection state changes. */
  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void;
  /**
   * Closes the channel; later calls fail with `ChannelRequestError` kind `closed`, and so do requests
   * still in flight (at once, not at their timeout).
   */
  close(): Promise<void>;
}
