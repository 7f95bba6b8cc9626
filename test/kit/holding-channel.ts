// Owns: a channel wrapper that holds back what one node receives on chosen subjects (a node that missed or has not yet
// got messages), while everything else (heartbeats, requests and their replies) flows: the read-your-writes tests' stale node.
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from '../../lib/channel/channel.ts';
import { subjectMatches } from '../../lib/channel/subjects.ts';

/** Wraps `inner`; while `hold` is on, messages arriving on subjects matching `patterns` wait until `release()`. */
export class HoldingChannel implements Channel {
  readonly kind: string;
  readonly maxPayload?: number;
  /** Whether matching deliveries are held now. */
  holding = false;
  readonly #held: Array<() => void> = [];

  constructor(
    readonly inner: Channel,
    readonly patterns: readonly string[],
  ) {
    this.kind = inner.kind;
    if (inner.maxPayload !== undefined) this.maxPayload = inner.maxPayload;
  }

  /** How many deliveries wait now. */
  get held(): number {
    return this.#held.length;
  }

  /** Holds matching deliveries from now on. */
  hold(): void {
    this.holding = true;
  }

  /** Delivers what was held, in order, and stops holding. */
  release(): void {
    this.holding = false;
    for (const deliver of this.#held.splice(0)) deliver();
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    this.inner.publish(subject, data, options);
  }

  subscribe(
    subject: string,
    handler: (message: ChannelMessage) => void,
    options?: { queue?: string },
  ): ChannelSubscription {
    return this.inner.subscribe(
      subject,
      (message) => {
        const tokens = message.subject.split('.');
        if (this.holding && this.patterns.some((pattern) => subjectMatches(pattern.split('.'), tokens)))
          this.#held.push(() => handler(message));
        else handler(message);
      },
      options,
    );
  }

  request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    return this.inner.request(subject, data, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.inner.onStatus(listener);
  }

  close(): Promise<void> {
    this.#held.length = 0;
    return this.inner.close();
  }
}
