/**
 * Long polling of one SQS queue: receive up to `maxMessages` at a time, hand each to the channel,
 * then delete what was handled and release (visibility 0) what another receiver should take, in
 * batches and in the background. Failed receives are retried with backoff until the poller stops.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { retrying } from '../../retry.ts';
import type { ChannelHealth } from './health.ts';

/** What to do with a received message: `delete` it (handled), or `release` it for another receiver. */
export type Verdict = 'delete' | 'release';

/** What a {@link Poller} polls and whom it tells. */
export interface PollerOptions {
  readonly sqs: SQSClient;
  readonly url: string;
  /** Messages per receive (1-10). */
  readonly maxMessages: number;
  /** Long-poll wait, 1-20 s. */
  readonly waitTimeSeconds: number;
  readonly health: ChannelHealth;
  /** Handles one message; a throw counts as `delete`. */
  readonly handle: (message: Message) => Verdict;
  /** Called for every message received. */
  readonly onReceived: () => void;
  /** Keeps a background call (delete, release) for `close` to await. */
  readonly track: (call: Promise<unknown>) => void;
}

/** Polls one queue until stopped. */
export class Poller {
  readonly #abort = new AbortController();
  /** Settles once the loop ended (after `stop`). */
  readonly done: Promise<void>;

  constructor(private readonly options: PollerOptions) {
    this.done = this.#poll();
  }

  /** Ends the loop (an outstanding long poll is aborted). */
  stop(): void {
    this.#abort.abort();
  }

  async #poll(): Promise<void> {
    const { sqs, url, maxMessages, waitTimeSeconds, health } = this.options;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      let messages: Message[];
      try {
        const out = await retrying(
          () =>
            sqs.send(
              new ReceiveMessageCommand({
                QueueUrl: url,
                MaxNumberOfMessages: maxMessages,
                WaitTimeSeconds: waitTimeSeconds,
                MessageAttributeNames: ['All'],
              }),
              { abortSignal: signal },
            ),
          { isRetryable: () => true, signal, onRetry: (error) => health.fail(error, 'receive') },
        );
        messages = out.Messages ?? [];
        health.up();
      } catch {
        break; // Only an abort ends the retries: stopped.
      }
      this.#settle(messages);
    }
  }

  /** Hands each message to the channel, then deletes or releases them in batches. */
  #settle(messages: Message[]): void {
    const { sqs, url, health, handle, onReceived, track } = this.options;
    const remove: string[] = [];
    const release: string[] = [];
    for (const message of messages) {
      onReceived();
      let verdict: Verdict = 'delete';
      try {
        verdict = handle(message);
      } catch {
        // Never let one message stop the loop.
      }
      if (message.ReceiptHandle) (verdict === 'delete' ? remove : release).push(message.ReceiptHandle);
    }
    if (remove.length > 0) {
      track(
        sqs
          .send(
            new DeleteMessageBatchCommand({
              QueueUrl: url,
              Entries: remove.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle })),
            }),
          )
          .catch((error: unknown) => health.fail(error, 'delete')),
      );
    }
    if (release.length > 0) {
      track(
        sqs
          .send(
            new ChangeMessageVisibilityBatchCommand({
              QueueUrl: url,
              Entries: release.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle, VisibilityTimeout: 0 })),
            }),
          )
          .catch((error: unknown) => health.fail(error, 'release')),
      );
    }
  }
}
