/**
 * `DeltaPublisher`: puts the delta manager's writes on the wire. Async writes of one event-loop turn
 * share messages (one broker round, one decode per peer); `ack` writes wait for every ready member
 * (and are refused while disconnected, where nats.js would drop them); `persist` writes go to the
 * replication log and resolve once it stored them. With a log, keys sent while disconnected or just
 * before are kept in an outbox and sent again after the catch-up.
 */
import type { ReplicationLog } from '../../log/replication-log.ts';
import { sessionWireBytes } from '../../codec/wire-size.ts';
import { sessionFields } from '../../logger.ts';
import { cloneState, type SessionState } from '../../session/state.ts';
import { batchBySize } from '../batching.ts';
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

/**
 * Runs `task` once the current event-loop turn's I/O callbacks are done: `setImmediate` where the
 * runtime has it (Node, Bun, Deno), a zero timeout elsewhere.
 */
const nextTurn: (task: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (task) => (globalThis as unknown as { setImmediate: (task: () => void) => void }).setImmediate(task)
    : (task) => setTimeout(task, 0);

/** Sends deltas on `.delta` (or to the log), batched per event-loop turn in `async` mode. */
export class DeltaPublisher {
  /** Async deltas waiting for the end of the current event-loop turn. */
  readonly #batch: SessionState[] = [];
  #batchScheduled = false;
  /** Resolves once the current turn's batch was handed to the channel. */
  #batchSent: Promise<SendOutcome> = Promise.resolve('sent');
  #markBatchSent: () => void = () => {};
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
   * Sends deltas in `mode`. Resolves once the turn's batch was handed to the channel (async: the
   * caller responds after that, so a read on another node right after the response finds the write),
   * when every ready member acknowledged or `ackTimeoutMs` passed (ack), or when the log stored them
   * (persist).
   */
  async publish(deltas: SessionState[], mode: SendMode, route?: string): Promise<SendOutcome> {
    if (mode !== 'async') return this.#send(deltas, mode, route);
    this.#batch.push(...deltas);
    if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      this.#batchSent = new Promise((resolve) => (this.#markBatchSent = () => resolve('sent')));
      nextTurn(() => this.flush());
    }
    return this.#batchSent;
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

  /** Sends the async deltas of the current turn now, in messages that fit the broker. */
  flush(): void {
    if (!this.#batchScheduled) return;
    this.#batchScheduled = false;
    for (const message of batchBySize(this.#batch.splice(0), {
      maxCount: BATCH_SESSIONS,
      maxBytes: this.maxBytes,
      sizeOf: sessionWireBytes,
    })) {
      void this.#send(message, 'async');
    }
    this.#markBatchSent();
  }

  /** Sends one message. */
  async #send(deltas: SessionState[], mode: SendMode, route?: string): Promise<SendOutcome> {
    const { bus, membership, stats, logger } = this.core.parts;
    const { acks } = this.core;
    if (mode === 'ack' && !this.options.connected()) {
      stats.replicationErrors++;
      logger.warn(
        { ...sessionFields(deltas.map((d) => d.key)), route },
        'ack write refused: not connected to the cluster',
      );
      return 'refused';
    }
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
