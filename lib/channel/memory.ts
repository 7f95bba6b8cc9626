/** The in-process channel: the embedded default, so one process or a unit test needs no broker. */
import { ChannelRequestError } from '../errors.ts';
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from './channel.ts';
import type { MessageHandler, SubscribeOptions } from './channel.ts';
import { assertPublishSubject, subjectMatches } from './subjects.ts';

interface Subscriber {
  readonly tokens: string[];
  readonly queue?: string;
  readonly owner: MemoryChannel;
  readonly deliver: (message: ChannelMessage) => void;
}

/** A broker living in one process; every `MemoryChannel` created on the same bus sees the others. */
export class MemoryBus {
  readonly #subscribers = new Set<Subscriber>();
  #inboxCounter = 0;

  /** Adds a subscriber; returns the function that removes it. */
  add(subscriber: Subscriber): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /** Delivers a message to every matching subscriber (one per queue group); returns how many got it. */
  route(message: ChannelMessage): number {
    const subject = message.subject.split('.');
    const groups = new Map<string, Subscriber[]>();
    let delivered = 0;
    for (const subscriber of this.#subscribers) {
      if (!subjectMatches(subscriber.tokens, subject)) continue;
      if (subscriber.queue === undefined) {
        subscriber.deliver(message);
        delivered++;
      } else {
        const group = groups.get(subscriber.queue) ?? [];
        group.push(subscriber);
        groups.set(subscriber.queue, group);
      }
    }
    for (const group of groups.values()) {
      group[Math.floor(Math.random() * group.length)]!.deliver(message);
      delivered++;
    }
    return delivered;
  }

  /** A unique reply subject. */
  inbox(): string {
    return `_INBOX.memory.${++this.#inboxCounter}`;
  }

  /** Removes every subscriber of one channel (it closed). */
  removeOwner(owner: MemoryChannel): void {
    for (const subscriber of this.#subscribers) if (subscriber.owner === owner) this.#subscribers.delete(subscriber);
  }
}

/** The bus shared by channels created without an explicit one. */
export const defaultMemoryBus = new MemoryBus();

/**
 * A `Channel` over a `MemoryBus`. Delivery is asynchronous (a microtask per message, in publish
 * order per subscriber), like a broker, so handlers never run inside `publish`.
 */
export class MemoryChannel implements Channel {
  readonly kind = 'memory';
  readonly ordered: boolean = true;
  #closed = false;
  /** Ends each request in flight with `closed` (called by `close`). */
  readonly #inFlight = new Set<() => void>();

  constructor(readonly bus: MemoryBus = defaultMemoryBus) {}

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    this.#publish(subject, data, options?.reply);
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription {
    this.#assertOpen(subject);
    let active = true;
    const remove = this.bus.add({
      tokens: subject.split('.'),
      ...(options?.queue !== undefined ? { queue: options.queue } : {}),
      owner: this,
      deliver: (message) =>
        queueMicrotask(() => {
          if (!active) return;
          try {
            handler(message);
          } catch {
            // A handler error must never break delivery to others.
          }
        }),
    });
    return {
      unsubscribe: () => {
        active = false;
        remove();
      },
    };
  }

  /** Async so that a closed channel rejects, as the `Channel` contract says, instead of throwing. */
  async request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    this.#assertOpen(subject);
    assertPublishSubject(subject);
    const inbox = this.bus.inbox();
    return new Promise((resolve, reject) => {
      const settle = (outcome: Uint8Array | ChannelRequestError) => {
        clearTimeout(timer);
        subscription.unsubscribe();
        this.#inFlight.delete(closed);
        if (outcome instanceof ChannelRequestError) reject(outcome);
        else resolve(outcome);
      };
      const closed = () => settle(new ChannelRequestError('closed', subject));
      const subscription = this.subscribe(inbox, (reply) => settle(reply.data));
      const timer = setTimeout(() => settle(new ChannelRequestError('timeout', subject)), options.timeoutMs);
      this.#inFlight.add(closed);
      if (this.#publish(subject, data, inbox) === 0) settle(new ChannelRequestError('no-responders', subject));
    });
  }

  async flush(): Promise<void> {
    // Deliveries are microtasks: yielding once lets every queued one run.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }

  /** Every publish is already queued for its subscribers (a microtask each) when it returns. */
  async sync(): Promise<void> {}

  onStatus(listener: (status: ChannelStatus) => void): void {
    listener('connected');
  }

  /** Later calls fail with `closed`, and so do the requests still in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    this.bus.removeOwner(this);
    for (const closed of [...this.#inFlight]) closed();
  }

  #publish(subject: string, data: Uint8Array, reply: string | undefined): number {
    this.#assertOpen(subject);
    assertPublishSubject(subject);
    return this.bus.route({ subject, data: data.slice(), ...(reply !== undefined ? { reply } : {}) });
  }

  #assertOpen(subject: string): void {
    if (this.#closed) throw new ChannelRequestError('closed', subject);
  }
}
