/**
 * `DeltaPublisher`: puts the delta manager's writes on the wire. Async writes of one event-loop turn
 * share messages (one broker round, one decode per peer); `ack` writes wait for every ready member
 * (and are refused while disconnected, where nats.js would drop them); `persist` writes go to the
 * replication log and resolve once it stored them. A touch (only the access time changed) rides in
 * the same messages but resolves at once: nobody reads it back, so it waits neither for the turn's
 * end nor the broker nor acks (an ack-mode touch is still tracked and sent again). With a log, keys
 * sent while disconnected or just before are kept in an outbox and sent again after the catch-up.
 */
import type { ReplicationLog } from '../../log/replication-log.ts';
import { sessionWireBytes } from '../../codec/wire-size.ts';
import { sessionFields } from '../../logger.ts';
import { cloneState, type SessionState } from '../../session/state.ts';
import { ASYNC_SYNC_MS, batchBySize, nextTurn } from '../batching.ts';
import type { ReplicaCore } from '../core.ts';
import type { SendMode } from '../manager.ts';
import { fitPayload } from '../state-transfer.ts';

/** Most sessions one async message carries (small deltas: well under the broker's payload limit). */
export const BATCH_SESSIONS = 64;
/** Bytes of session data above which a message is split (a single larger delta still goes alone). */
const BATCH_BYTES = 256 * 1024;
/**
 * How long before a disconnect is noticed a sent delta may still be lost with the connection (nats.js
 * drops its unsent buffer on every dial): such keys go to the outbox.
 */
const IN_FLIGHT_MS = 5000;

/**
 * What sending did: `sent`; `refused` (it did not leave this node, was not stored by the log, or an
 * `ack` write found the channel down); `unconfirmed` (sent, but not every member acknowledged in time).
 */
export type SendOutcome = 'sent' | 'refused' | 'unconfirmed';

/** Options of {@link DeltaPublisher}. */
export interface DeltaPublisherOptions {
  readonly ackTimeoutMs: number;
  readonly log?: ReplicationLog | undefined;
  /** False while the channel is down. */
  readonly connected: () => boolean;
}

/** Sends deltas on `.delta` (or to the log), batched per event-loop turn in `async` mode. */
export class DeltaPublisher {
  /** Async deltas waiting for the end of the current event-loop turn. */
  readonly #batch: SessionState[] = [];
  #batchScheduled = false;
  /** Some write in the turn's batch waits for the members' acknowledgements / only for the broker. */
  #batchAck = false;
  #batchAsync = false;
  /** Resolves once the current turn's batch was sent and the broker confirmed it (bounded). */
  #batchSent: Promise<SendOutcome> = Promise.resolve('sent');
  #markBatchSent: () => void = () => {};
  /** A broker round trip of an async batch is in flight: the next async batch waits for it (see `#flushTurn`). */
  #confirming = false;
  /** Resolves with the outcome of the batch's acknowledgements (ack mode). */
  #batchAcked: Promise<SendOutcome> = Promise.resolve('sent');
  #settleBatchAcked: (outcome: Promise<SendOutcome>) => void = () => {};
  /** Log mode: keys whose latest change may not have reached the broker. */
  readonly #outbox = new Set<string>();
  /** Log mode: when each key was last sent, oldest first. */
  readonly #sentAt = new Map<string, number>();

  constructor(
    private readonly core: ReplicaCore,
    private readonly options: DeltaPublisherOptions,
  ) {}

  /** The byte budget of one delta message on this channel. */
  get maxBytes(): number {
    return fitPayload(BATCH_BYTES, this.core.parts.bus.channel.maxPayload);
  }

  /**
   * Sends deltas in `mode`. Async and ack writes of one event-loop turn share messages. Resolves once
   * the broker confirmed the turn's batch, or after `ASYNC_SYNC_MS` (async: the caller responds after
   * that, so a read on another node right after the response finds the write; without the round trip
   * the answer raced the broker's delivery), when every ready member acknowledged the batch or
   * `ackTimeoutMs` passed (ack: one ack per member and message, not per write), or when the log
   * stored them (persist). With `touch` (async and ack), at once (an ack touch is refused while disconnected).
   */
  async publish(deltas: SessionState[], mode: SendMode, route?: string, touch = false): Promise<SendOutcome> {
    if (mode === 'persist') return this.#send(deltas, mode, route);
    if (mode === 'ack' && !this.options.connected()) return this.#refuseAck(deltas, route);
    this.#batch.push(...deltas);
    if (mode === 'ack') this.#batchAck = true;
    else if (!touch) this.#batchAsync = true;
    if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      this.#batchSent = new Promise((resolve) => (this.#markBatchSent = () => resolve('sent')));
      this.#batchAcked = new Promise((resolve) => (this.#settleBatchAcked = resolve));
      nextTurn(() => this.#flushTurn());
    } else if (mode === 'ack' && this.#confirming) nextTurn(() => this.#flushTurn()); // An ack write never waits for a round trip.
    if (touch) return 'sent';
    return mode === 'ack' ? this.#batchAcked : this.#batchSent;
  }

  /** The channel went down: what was sent in the last moments may be lost with the connection. */
  disconnected(): void {
    for (const key of this.#sentAt.keys()) this.#outbox.add(key);
    this.#sentAt.clear();
  }

  /** Log mode, after the catch-up: sends the latest state of every key in the outbox again (a CRDT merge: repeating it is harmless). */
  flushOutbox(): void {
    if (this.#outbox.size === 0) return;
    const { table, parts } = this.core;
    const states = [...this.#outbox].flatMap((key) => table.get(key) ?? []).map(cloneState);
    this.#outbox.clear();
    parts.logger.info({ sessions: states.length }, 'outbox: changes made around the disconnect sent again');
    void this.publish(states, 'async');
  }

  /**
   * The end-of-turn flush. An async-only batch made while the broker has not yet confirmed the
   * previous one waits for that confirmation and then leaves with everything written meanwhile, its
   * round trip in the same socket write: its writes would be answered only after a round trip started
   * once the previous one returned anyway, so the answers come no later, while a busy node sends one
   * message per broker round trip instead of one per event-loop turn (fewer messages to route and to
   * decode on every member). Only the other members get such a write up to one round trip later.
   */
  #flushTurn(): void {
    if (!this.#confirming || this.#batchAck) this.flush();
  }

  /**
   * Sends the deltas of the current turn now, in messages that fit the broker (asking for acks when
   * an ack write is among them). Async writes are answered once the broker confirmed them (one round
   * trip for the whole batch, written to the socket together with it), at most `ASYNC_SYNC_MS` later,
   * or at once while disconnected; ack writes once every ready member acknowledged every message.
   */
  flush(): void {
    if (!this.#batchScheduled) return;
    this.#batchScheduled = false;
    const ack = this.#batchAck;
    const anyAsync = this.#batchAsync;
    this.#batchAck = false;
    this.#batchAsync = false;
    const outcomes: Promise<SendOutcome>[] = [];
    for (const message of batchBySize(this.#batch.splice(0), {
      maxCount: BATCH_SESSIONS,
      maxBytes: this.maxBytes,
      sizeOf: sessionWireBytes,
    })) {
      outcomes.push(this.#send(message, ack ? 'ack' : 'async'));
    }
    this.#settleBatchAcked(Promise.all(outcomes).then(worstOutcome));
    const markSent = this.#markBatchSent;
    const confirmed = anyAsync && this.options.connected() ? this.core.parts.bus.sync(ASYNC_SYNC_MS) : undefined;
    if (!confirmed) {
      markSent();
      return;
    }
    this.#confirming = true;
    void confirmed.then(() => {
      this.#confirming = false;
      markSent();
      this.#flushTurn(); // What was written meanwhile.
    });
  }

  /** An ack write while the channel is down: nats.js would drop it, so it is refused at once. */
  #refuseAck(deltas: SessionState[], route: string | undefined): SendOutcome {
    const { stats, logger } = this.core.parts;
    stats.replicationErrors++;
    logger.warn(
      { ...sessionFields(deltas.map((d) => d.key)), route },
      'ack write refused: not connected to the cluster',
    );
    return 'refused';
  }

  /** Sends one message. */
  async #send(deltas: SessionState[], mode: SendMode, route?: string): Promise<SendOutcome> {
    const { bus, membership, stats, logger } = this.core.parts;
    const { acks } = this.core;
    if (mode === 'ack' && !this.options.connected()) return this.#refuseAck(deltas, route);
    if (this.options.log && mode !== 'persist') this.#noteSent(deltas.map((d) => d.key));
    const id = this.core.nextMessageId();
    const body = { id, s: deltas, ...(mode === 'ack' ? { r: bus.subjects.node(bus.identity.node) } : {}) };
    // A delta or its ack lost on the way (a server of a NATS cluster died with it) goes again, point to point, to the members that did not ack.
    const resend = (members: string[]) => {
      for (const member of members) {
        try {
          bus.send(bus.subjects.node(member), 'delta', body);
        } catch {
          // Down again: sent once more after the reconnect, or the wait runs out.
        }
      }
    };
    const acked =
      mode === 'ack'
        ? acks.wait(
            id,
            membership.readyMembers().map((m) => m.node),
            this.options.ackTimeoutMs,
            resend,
          )
        : undefined;
    try {
      if (mode === 'persist' && this.options.log) await this.options.log.append(await bus.encode('delta', body), id);
      else bus.send(bus.subjects.delta, 'delta', body);
    } catch (error) {
      stats.replicationErrors++;
      logger.error(
        { ...sessionFields(deltas.map((d) => d.key)), route, mode, error: (error as Error).message },
        'replication failed: changes kept locally only',
      );
      acks.cancel(id);
      return 'refused';
    }
    if (!acked) return 'sent';
    const missing = await acked;
    if (missing.length === 0) return 'sent';
    stats.acksTimedOut++;
    logger.warn(
      { ...sessionFields(deltas.map((d) => d.key)), route, missing, timeoutMs: this.options.ackTimeoutMs },
      'ack timeout: not every member confirmed the write',
    );
    return 'unconfirmed';
  }

  /** Log mode: remembers when keys were sent; while disconnected they go straight to the outbox. */
  #noteSent(keys: string[]): void {
    const now = Date.now();
    const connected = this.options.connected();
    for (const key of keys) {
      if (!connected) this.#outbox.add(key);
      this.#sentAt.delete(key);
      this.#sentAt.set(key, now);
    }
    // Oldest first (re-inserted on every send): forget what left long enough ago to be on the broker.
    for (const [key, at] of this.#sentAt) {
      if (now - at <= IN_FLIGHT_MS) break;
      this.#sentAt.delete(key);
    }
  }
}

/** The outcome of a batch sent in several messages: refused if one was, unconfirmed if one was, else sent. */
function worstOutcome(outcomes: SendOutcome[]): SendOutcome {
  if (outcomes.includes('refused')) return 'refused';
  return outcomes.includes('unconfirmed') ? 'unconfirmed' : 'sent';
}
