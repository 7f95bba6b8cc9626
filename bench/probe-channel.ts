/** `ProbeChannel`: a pass-through `Channel` that timestamps publishes and runs hooks around each delivery. */
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from '../lib/index.ts';

/** Hooks called by a {@link ProbeChannel}; both run synchronously and must be cheap. */
export interface ProbeHooks {
  /** Called just before the inner channel publishes. */
  onPublish?(subject: string, data: Uint8Array): void;
  /** Called when a message arrives, just before the subscriber's handler runs. */
  onReceive?(message: ChannelMessage): void;
  /** Called right after a subscriber's handler returned (the node has applied the message). */
  onDelivered?(message: ChannelMessage): void;
}

/**
 * Wraps a channel without changing its behaviour: the benchmark sees when node A publishes a delta
 * and when node B has applied one, without polling.
 */
export class ProbeChannel implements Channel {
  readonly kind: string;
  readonly maxPayload?: number;
  readonly sync?: () => Promise<void>;
  readonly ordered?: boolean;

  constructor(
    readonly inner: Channel,
    readonly hooks: ProbeHooks,
  ) {
    this.kind = inner.kind;
    if (inner.maxPayload !== undefined) this.maxPayload = inner.maxPayload;
    if (inner.sync) this.sync = () => inner.sync!();
    if (inner.ordered !== undefined) this.ordered = inner.ordered;
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    this.hooks.onPublish?.(subject, data);
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
        this.hooks.onReceive?.(message);
        handler(message);
        this.hooks.onDelivered?.(message);
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
    return this.inner.close();
  }
}
