/**
 * `JetStreamLog`: the replication log of one cluster in a NATS JetStream stream. The stream stores
 * the cluster's `.delta` subject (bounded by age and size, deduplicating by message id), so a
 * joining, restarted or thawed node can replay from a sequence instead of asking a peer.
 *
 * Message ids: JetStream drops a message whose `Nats-Msg-Id` it stored within the duplicate window
 * and answers with the first one's sequence. Each `JetStreamLog` prefixes the writer's `msgId` with
 * a random id of its own (122 bits), so ids of different writers never collide; a duplicate answer
 * is checked against the stored bytes, so a different message stored under the same id is refused
 * (`DuplicateMessageIdError`) instead of being reported as stored.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import {
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { DuplicateMessageIdError } from '../errors.ts';
import type { LogFollower, LogMessage, ReplicationLog } from './replication-log.ts';

export type { LogFollower, LogMessage, ReplicationLog } from './replication-log.ts';

/** The stream and its limits. */
export interface JetStreamLogOptions {
  /** Stream name (`jetStreamLogFor` uses `SESSREP_<cluster>`). */
  readonly stream: string;
  /** The subject stored: the cluster's delta subject. */
  readonly subject: string;
  /**
   * Oldest message kept.
   * @default 86400000 (24 h)
   */
  readonly maxAgeMs?: number;
  /**
   * Largest stream size in bytes.
   * @default 1073741824 (1 GiB)
   */
  readonly maxBytes?: number;
  /**
   * Window in which a repeated message id is stored once.
   * @default 120000 (2 min)
   */
  readonly duplicateWindowMs?: number;
}

const nanos = (ms: number) => ms * 1_000_000;

/** A `ReplicationLog` on a JetStream stream reached through the node's own NATS connection. */
export class JetStreamLog implements ReplicationLog {
  readonly name: string;
  readonly #js: JetStreamClient;
  /** Prefixes every message id: ids of different writers never collide. */
  readonly #writer = crypto.randomUUID();
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
    const id = `${this.#writer}.${msgId}`;
    const ack = await this.#js.publish(this.options.subject, data, { msgID: id });
    if (!ack.duplicate) return ack.seq;
    // A retry of this very message is fine; anything else under this id was not stored.
    const stored = await (await this.#jsm()).streams.getMessage(this.options.stream, { seq: ack.seq });
    if (stored && sameBytes(stored.data, data)) return ack.seq;
    throw new DuplicateMessageIdError(this.name, id, ack.seq);
  }

  async bounds(): Promise<{ first: number; last: number }> {
    const { state } = await (await this.#jsm()).streams.info(this.options.stream);
    // A stream that never stored anything reports first 0: the contract says last + 1.
    return { first: state.messages === 0 ? state.last_seq + 1 : state.first_seq, last: state.last_seq };
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The replication log of `cluster`: stream `SESSREP_<cluster>` storing `<prefix>.<cluster>.delta`. */
export function jetStreamLogFor(
  connection: NatsConnection,
  cluster: string,
  options: { subjectPrefix?: string; maxAgeMs?: number; maxBytes?: number } = {},
): JetStreamLog {
  const prefix = options.subjectPrefix ?? 'sessrep';
  return new JetStreamLog(connection, {
    stream: `${prefix.replaceAll('.', '_').toUpperCase()}_${cluster}`,
    subject: `${prefix}.${cluster}.delta`,
    ...(options.maxAgeMs !== undefined ? { maxAgeMs: options.maxAgeMs } : {}),
    ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
  });
}
