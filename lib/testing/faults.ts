/**
 * Fault injection for tests: `FaultInjector` holds the faults in force, and `faultyChannel(inner,
 * node, faults)` wraps one node's channel so its messages suffer them. Drop, duplicate, reorder and
 * delay act on what a node publishes; partition cuts one node off (its channel reports a disconnect,
 * as a NATS client does); freeze holds everything to and from one node until heal, like a paused
 * process whose socket buffers fill. `heal()` ends every fault.
 */
import type { Channel, ChannelStatus, ChannelSubscription } from '../channel/channel.ts';
import type { MessageHandler, SubscribeOptions } from '../channel/channel.ts';
import { subjectMatches } from '../channel/subjects.ts';
import { ChannelRequestError } from '../errors.ts';

/** Which messages a fault applies to; every field narrows it. */
export interface FaultScope {
  /**
   * The share of matching messages hit, from 0 to 1.
   * @default 1
   */
  readonly probability?: number;
  /** Only messages published by this node. */
  readonly from?: string;
  /** Only subjects matching this NATS pattern (`*` one token, `>` the rest), e.g. `sessrep.*.delta`. */
  readonly subject?: string;
}

/** How many messages each fault has hit so far. */
export interface FaultCounts {
  dropped: number;
  duplicated: number;
  reordered: number;
  delayed: number;
  /** Messages held for a frozen node, or published by one. */
  held: number;
  /** Messages a partitioned node did not get or send. */
  cut: number;
}

interface Rule extends FaultScope {
  readonly kind: 'drop' | 'duplicate' | 'reorder' | 'delay';
  readonly delayMs?: number;
}

/** The channel side the injector talks to. */
interface FaultyEnd {
  readonly node: string;
  report(status: ChannelStatus): void;
  releaseHeld(): void;
}

/** The faults in force across the channels of a test cluster. */
export class FaultInjector {
  /** How many messages each fault has hit so far. */
  readonly counts: FaultCounts = { dropped: 0, duplicated: 0, reordered: 0, delayed: 0, held: 0, cut: 0 };
  readonly #rules: Rule[] = [];
  readonly #partitioned = new Set<string>();
  readonly #frozen = new Set<string>();
  readonly #ends = new Set<FaultyEnd>();
  /** Nodes that lost messages since the last heal: their channels report a reconnect on heal. */
  readonly #lossy = new Set<string>();
  readonly #random: () => number;

  /** @param random the source of randomness for probabilities (default `Math.random`); pass a seeded one to replay a run. */
  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  /** Drops matching messages. */
  drop(scope: FaultScope = {}): this {
    return this.#add({ kind: 'drop', ...scope });
  }

  /** Delivers matching messages twice. */
  duplicate(scope: FaultScope = {}): this {
    return this.#add({ kind: 'duplicate', ...scope });
  }

  /** Holds a matching message until the publisher's next message has gone (or 50 ms passed), so the two arrive swapped. */
  reorder(scope: FaultScope = {}): this {
    return this.#add({ kind: 'reorder', ...scope });
  }

  /** Delivers matching messages `delayMs` later. */
  delay(delayMs: number, scope: FaultScope = {}): this {
    return this.#add({ kind: 'delay', delayMs, ...scope });
  }

  /** Cuts `node` off: nothing reaches it or leaves it, its requests time out, and its channel reports `disconnected`. */
  partition(node: string): this {
    this.#partitioned.add(node);
    this.#lossy.add(node);
    for (const end of this.#ends) if (end.node === node) end.report('disconnected');
    return this;
  }

  /** Freezes `node`: what it publishes and what is sent to it is held, in order, until `heal()`. */
  freeze(node: string): this {
    this.#frozen.add(node);
    return this;
  }

  /**
   * Ends every fault: frozen nodes get (and send) what was held, partitioned nodes and nodes that
   * lost messages report a reconnect (`disconnected`, then `connected`), as a NATS client does
   * after the connection blinked, so the library's resync repairs what they missed.
   */
  heal(): this {
    this.#rules.length = 0;
    this.#partitioned.clear();
    this.#frozen.clear();
    for (const end of this.#ends) end.releaseHeld();
    for (const end of this.#ends) {
      if (!this.#lossy.has(end.node)) continue;
      end.report('disconnected');
      end.report('connected');
    }
    this.#lossy.clear();
    return this;
  }

  /** @internal Registers a channel end. */
  attach(end: FaultyEnd): () => void {
    this.#ends.add(end);
    return () => this.#ends.delete(end);
  }

  /** @internal Whether `node` is partitioned. */
  isPartitioned(node: string): boolean {
    return this.#partitioned.has(node);
  }

  /** @internal Whether `node` is frozen. */
  isFrozen(node: string): boolean {
    return this.#frozen.has(node);
  }

  /** @internal The rules that hit one outgoing message (each rolls its own probability). */
  hits(node: string, subject: string): Rule[] {
    const tokens = subject.split('.');
    const hit = this.#rules.filter(
      (rule) =>
        (rule.from === undefined || rule.from === node) &&
        (rule.subject === undefined || subjectMatches(rule.subject.split('.'), tokens)) &&
        this.#random() < (rule.probability ?? 1),
    );
    if (hit.some((rule) => rule.kind === 'drop')) {
      this.#lossy.add(node);
      // Subscribers miss it: every end reports the blink on heal, as each would see its own gap.
      for (const end of this.#ends) this.#lossy.add(end.node);
    }
    return hit;
  }

  #add(rule: Rule): this {
    const probability = rule.probability ?? 1;
    if (!(probability >= 0 && probability <= 1))
      throw new RangeError(`probability must be from 0 to 1, got ${probability}`);
    this.#rules.push(rule);
    return this;
  }
}

/** Longest time `reorder` holds a message when its publisher sends nothing after it. */
const REORDER_MAX_HOLD_MS = 50;

/** Wraps one node's channel so the faults of `faults` act on its messages. */
export function faultyChannel(inner: Channel, node: string, faults: FaultInjector): Channel {
  return new FaultyChannel(inner, node, faults);
}

class FaultyChannel implements Channel {
  readonly kind: string;
  readonly maxPayload?: number;
  readonly #listeners: Array<(status: ChannelStatus, detail?: string) => void> = [];
  /** Outgoing and incoming work held while this node is frozen, in order. */
  readonly #held: Array<() => void> = [];
  #reordered: { send: () => void; timer: ReturnType<typeof setTimeout> } | undefined;
  /** Set by `close()`: delayed messages due afterwards are lost. */
  #closed = false;
  readonly #detach: () => void;

  constructor(
    readonly inner: Channel,
    readonly node: string,
    readonly faults: FaultInjector,
  ) {
    this.kind = inner.kind;
    if (inner.maxPayload !== undefined) this.maxPayload = inner.maxPayload;
    this.#detach = faults.attach({
      node,
      report: (status) => this.#report(status),
      releaseHeld: () => this.#releaseHeld(),
    });
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    const send = () => this.inner.publish(subject, data, options);
    if (this.faults.isPartitioned(this.node)) {
      this.faults.counts.cut++;
      return;
    }
    if (this.faults.isFrozen(this.node)) {
      this.faults.counts.held++;
      this.#held.push(send);
      return;
    }
    const hits = this.faults.hits(this.node, subject);
    if (hits.some((rule) => rule.kind === 'drop')) {
      this.faults.counts.dropped++;
      return;
    }
    let deliver = send;
    if (hits.some((rule) => rule.kind === 'duplicate')) {
      this.faults.counts.duplicated++;
      deliver = () => {
        send();
        send();
      };
    }
    const delayMs = Math.max(0, ...hits.map((rule) => rule.delayMs ?? 0));
    if (delayMs > 0) {
      this.faults.counts.delayed++;
      const now = deliver;
      deliver = () => void setTimeout(() => this.#sendLate(now), delayMs);
    }
    const previous = this.#reordered;
    if (previous === undefined && hits.some((rule) => rule.kind === 'reorder')) {
      this.faults.counts.reordered++;
      const timer = setTimeout(() => this.#flushReordered(), REORDER_MAX_HOLD_MS);
      this.#reordered = { send: deliver, timer };
      return;
    }
    deliver();
    this.#flushReordered();
  }

  /** Sends a delayed message; one still delayed when this channel or its connection closed is lost, as in flight on a real link. */
  #sendLate(send: () => void): void {
    if (this.#closed) return;
    try {
      send();
    } catch (error) {
      if (!(error instanceof ChannelRequestError && error.kind === 'closed')) throw error;
    }
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription {
    return this.inner.subscribe(
      subject,
      (message) => {
        if (this.faults.isPartitioned(this.node)) {
          this.faults.counts.cut++;
          return;
        }
        if (this.faults.isFrozen(this.node)) {
          this.faults.counts.held++;
          this.#held.push(() => handler(message));
          return;
        }
        handler(message);
      },
      options,
    );
  }

  async request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    if (this.faults.isPartitioned(this.node)) {
      this.faults.counts.cut++;
      await new Promise((resolve) => setTimeout(resolve, options.timeoutMs));
      throw new ChannelRequestError('timeout', subject);
    }
    return this.inner.request(subject, data, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#listeners.push(listener);
    this.inner.onStatus(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#detach();
    clearTimeout(this.#reordered?.timer);
    this.#reordered = undefined;
    this.#held.length = 0;
    await this.inner.close();
  }

  #report(status: ChannelStatus): void {
    for (const listener of this.#listeners) listener(status, 'fault injection');
  }

  #releaseHeld(): void {
    for (const work of this.#held.splice(0)) {
      try {
        work();
      } catch {
        // Like a live delivery: a handler error must not stop the others.
      }
    }
    this.#flushReordered();
  }

  #flushReordered(): void {
    const held = this.#reordered;
    if (!held) return;
    this.#reordered = undefined;
    clearTimeout(held.timer);
    held.send();
  }
}
