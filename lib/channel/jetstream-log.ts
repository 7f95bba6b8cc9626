/**
 * `JetStreamLog`: the replication log of one cluster in a NATS JetStream stream. The stream stores
 * the cluster's `.delta` subject (bounded by age and size, deduplicating by message id), so a
 * joining, restarted or thawed node can replay from a sequence instead of asking a peer.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';

/** A stored replication message. */
export interface LogMessage {
  readonly seq: number;
  readonly data: Uint8Array;
}

/** A running replay: delivers stored messages in order, then new ones as they are stored. */
export interface LogFollower {
  /** Stops delivering. */
  stop(): void;
}

/** The log contract the delta manager uses (implemented by `JetStreamLog`). */
export interface ReplicationLog {
  /** The stream name, for logs and `/cluster`. */
  readonly name: string;
  /** Creates the stream if it does not exist. */
  ensure(): Promise<void>;
  /** Stores a message (deduplicated by `msgId`) and resolves with its sequence once stored. */
  append(data: Uint8Array, msgId: string): Promise<number>;
  /** First retained and last stored sequence (`first` is `last + 1` for an empty stream). */
  bounds(): Promise<{ first: number; last: number }>;
  /** Delivers every message from `fromSeq` on, in order and without gaps, until stopped. */
  follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower>;
}

/** Stream limits. */
export interface JetStreamLogOptions {
  /** Stream name; default `SESSREP_<cluster>`. */
  readonly stream: string;
  /** The subject stored: the cluster's delta subject. */
  readonly subject: string;
  /** Oldest message kept; default 24 h. */
  readonly maxAgeMs?: number;
  /** Largest stream size; default 1 GiB. */
  readonly maxBytes?: number;
  /** Window in which a repeated message id is stored once; default 2 min. */
  readonly duplicateWindowMs?: number;
}

const nanos = (ms: number) => ms * 1_000_000;

/** A `ReplicationLog` on a JetStream stream reached through the node's own NATS connection. */
export class JetStreamLog implements ReplicationLog {
  readonly name: string;
  readonly #js: JetStreamClient;
  #manager?: JetStreamManager;

  constructor(
    private readonly connection: NatsConnection,
    private readonly options: JetStreamLogOptions,
  ) {
    this.name = options.stream;
    this.#js = jetstream(connection);
  }

  async ensure(): Promise<void> {
    const manager = await this.#jsm();
    const config = {
      name: this.options.stream,
      subjects: [this.options.subject],
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(this.options.maxAgeMs ?? 24 * 3600_000),
      max_bytes: this.options.maxBytes ?? 1024 ** 3,
      duplicate_window: nanos(this.options.duplicateWindowMs ?? 120_000),
    };
    try {
      await manager.streams.info(this.options.stream);
    } catch (error) {
      if ((error as Error).name !== 'StreamNotFoundError') throw error;
      try {
        await manager.streams.add(config);
      } catch (raced) {
        // Another node created it at the same moment.
        if (!/already in use/i.test((raced as Error).message)) throw raced;
      }
    }
  }

  async append(data: Uint8Array, msgId: string): Promise<number> {
    const ack = await this.#js.publish(this.options.subject, data, { msgID: msgId });
    return ack.seq;
  }

  async bounds(): Promise<{ first: number; last: number }> {
    const info = await (await this.#jsm()).streams.info(this.options.stream);
    return { first: info.state.first_seq, last: info.state.last_seq };
  }

  async follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower> {
    const consumer = await this.#js.consumers.get(this.options.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, fromSeq),
      filter_subjects: this.options.subject,
    });
    const messages = await consumer.consume({
      max_messages: 1000,
      callback: (message) => onMessage({ seq: message.seq, data: message.data }),
    });
    return { stop: () => void messages.close() };
  }

  async #jsm(): Promise<JetStreamManager> {
    this.#manager ??= await jetstreamManager(this.connection);
    return this.#manager;
  }
}

/** The replication log of `cluster`: stream `SESSREP_<cluster>` storing `<prefix>.<cluster>.delta`. */
export function jetStreamLogFor(connection: NatsConnection, cluster: string, options: { subjectPrefix?: string; maxAgeMs?: number; maxBytes?: number } = {}): JetStreamLog {
  const prefix = options.subjectPrefix ?? 'sessrep';
  return new JetStreamLog(connection, {
    stream: `${prefix.replaceAll('.', '_').toUpperCase()}_${cluster}`,
    subject: `${prefix}.${cluster}.delta`,
    ...(options.maxAgeMs !== undefined ? { maxAgeMs: options.maxAgeMs } : {}),
    ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
  });
}
