/**
 * The SNS/SQS channel's outbox: messages wait here and leave in PublishBatch calls of up to 10
 * messages and 256 KiB, one call at a time, in order. Delivery receipts take an urgent lane ahead of
 * the queue. While SNS is unreachable a batch is retried with backoff and the rest waits, within a
 * byte budget (like NATS's reconnect buffer): over it, the oldest messages are dropped and counted.
 */
import { PublishBatchCommand, type MessageAttributeValue, type SNSClient } from '@aws-sdk/client-sns';
import { retrying } from '../../retry.ts';
import { isTransient, type ChannelHealth } from './health.ts';

/** SNS's limit for one message, body and attributes together, and for one PublishBatch. */
export const SNS_MAX_BYTES = 256 * 1024;
/** Messages per PublishBatch at most (SNS's limit). */
const BATCH_MESSAGES = 10;

/** One SNS message waiting to be published. */
export interface Outgoing {
  /** The channel subject (for error reports). */
  readonly subject: string;
  readonly body: string;
  readonly attributes: Record<string, MessageAttributeValue>;
  /** Body plus attributes, as SNS counts them. */
  readonly bytes: number;
  /** Called once SNS accepted the message. */
  readonly sent?: () => void;
}

/** Counters the outbox keeps up to date. */
export interface OutboxStats {
  /** Messages accepted by SNS. */
  published: number;
  /** Messages SNS refused, that could not be sent, or that were dropped over the byte budget. */
  publishFailures: number;
}

/** What an {@link Outbox} publishes to and reports to. */
export interface OutboxOptions {
  readonly sns: SNSClient;
  readonly topicArn: string;
  readonly stats: OutboxStats;
  readonly health: ChannelHealth;
  /** Aborted when the channel closes: no more retries, and what is left is dropped. */
  readonly signal: AbortSignal;
  /** Bytes waiting at most. */
  readonly maxBytes: number;
}

interface Queued extends Outgoing {
  /** In the urgent lane: sent in a batch of its own kind. */
  readonly urgent: boolean;
}

/** Publishes queued messages in batches, in order, one PublishBatch at a time. */
export class Outbox {
  readonly #queue: Queued[] = [];
  #bytes = 0;
  #pumping?: Promise<void>;

  constructor(private readonly options: OutboxOptions) {}

  /** Messages waiting (not counting a batch in flight). */
  get length(): number {
    return this.#queue.length;
  }

  /** Settles once the outbox is empty; undefined while it is idle. */
  get pumping(): Promise<void> | undefined {
    return this.#pumping;
  }

  /**
   * Queues the SNS messages of one channel message (several for a fragmented one). `urgent` puts a
   * one-piece message ahead of the queue (delivery receipts).
   */
  add(messages: readonly Outgoing[], urgent = false): void {
    if (urgent && messages.length === 1) this.#queue.unshift({ ...messages[0]!, urgent: true });
    else for (const message of messages) this.#queue.push({ ...message, urgent: false });
    for (const message of messages) this.#bytes += message.bytes;
    // SNS unreachable for long: drop the oldest rather than grow without bound.
    while (this.#bytes > this.options.maxBytes && this.#queue.length > messages.length) {
      const dropped = this.#queue.shift()!;
      this.#bytes -= dropped.bytes;
      this.options.stats.publishFailures++;
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#pumping) return;
    // Starts on the next microtask: what one handler publishes shares batches, and its receipt goes first.
    this.#pumping = Promise.resolve()
      .then(() => this.#pump())
      .finally(() => {
        this.#pumping = undefined;
        // Something queued between the pump's last look and now: keep going.
        if (this.#queue.length > 0) this.#kick();
      });
  }

  /**
   * Sends the queue in order. A batch is retried with backoff while SNS is unreachable (network,
   * 5xx, throttling); a refusal (4xx) drops it and reports `error`; messages SNS refused one by one
   * are counted and reported.
   */
  async #pump(): Promise<void> {
    const { sns, topicArn, stats, health, signal } = this.options;
    while (this.#queue.length > 0) {
      const batch = this.#nextBatch();
      const what = `publish on ${batch[0]!.subject}`;
      const command = new PublishBatchCommand({
        TopicArn: topicArn,
        PublishBatchRequestEntries: batch.map((entry, i) => ({
          Id: String(i),
          Message: entry.body,
          MessageAttributes: entry.attributes,
        })),
      });
      try {
        const out = await retrying(() => sns.send(command), {
          isRetryable: isTransient,
          signal,
          onRetry: (error) => health.fail(error, what),
        });
        health.up();
        const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
        batch.forEach((entry, i) => {
          if (failed.has(String(i))) return;
          stats.published++;
          entry.sent?.();
        });
        if (failed.size > 0) {
          stats.publishFailures += failed.size;
          const first = [...failed.values()][0]!;
          health.emit(
            'error',
            `SNS refused ${failed.size} message(s), e.g. on ${batch[Number(first.Id)]?.subject}: ${first.Code} ${first.Message ?? ''}`.trim(),
          );
        }
      } catch (error) {
        health.fail(error, what);
        stats.publishFailures += batch.length;
        if (signal.aborted) {
          // Closing while SNS is unreachable: give up on the rest too.
          stats.publishFailures += this.#queue.length;
          this.#queue.length = 0;
          this.#bytes = 0;
        }
      }
    }
  }

  /** Takes the next batch off the queue: up to 10 messages and 256 KiB, all urgent or all not. */
  #nextBatch(): Queued[] {
    const batch: Queued[] = [];
    let bytes = 0;
    const urgent = this.#queue[0]!.urgent;
    while (batch.length < BATCH_MESSAGES && this.#queue.length > 0) {
      const next = this.#queue[0]!;
      if (next.urgent !== urgent || (batch.length > 0 && bytes + next.bytes > SNS_MAX_BYTES)) break;
      batch.push(this.#queue.shift()!);
      bytes += next.bytes;
    }
    this.#bytes -= bytes;
    return batch;
  }
}
