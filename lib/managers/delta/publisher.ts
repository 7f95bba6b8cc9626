/**
 * `DeltaPublisher`: puts the delta manager's writes on the wire. Async writes of one event-loop turn
 * share messages (one broker round, one decode per peer); `ack` writes wait for every ready member;
 * `persist` writes go to the replication log and resolve once it stored them.
 */
import type { ReplicationLog } from '../../log/replication-log.ts';
import { sessionWireBytes } from '../../codec/wire-size.ts';
import { sessionFields } from '../../logger.ts';
import type { SessionState } from '../../session/state.ts';
import { batchBySize } from '../batching.ts';
import type { ReplicaCore } from '../core.ts';
import type { SendMode } from '../manager.ts';
import { fitPayload } from '../state-transfer.ts';

/** Most sessions one async message carries (small deltas: well under the broker's payload limit). */
export const BATCH_SESSIONS = 64;
/** Bytes of session data above which a message is split (a single larger delta still goes alone). */
const BATCH_BYTES = 256 * 1024;

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

  constructor(
    private readonly core: ReplicaCore,
    private readonly options: { readonly ackTimeoutMs: number; readonly log?: ReplicationLog | undefined },
  ) {}

  /** The byte budget of one delta message on this channel. */
  get maxBytes(): number {
    return fitPayload(BATCH_BYTES, this.core.parts.bus.channel.maxPayload);
  }

  /**
   * Sends deltas in `mode`. Resolves at once (async), when every ready member acknowledged or
   * `ackTimeoutMs` passed (ack), or when the log stored them (persist); false when they could not be sent.
   */
  async publish(deltas: SessionState[], mode: SendMode, route?: string): Promise<boolean | void> {
    if (mode !== 'async') return this.#send(deltas, mode, route);
    this.#batch.push(...deltas);
    if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      nextTurn(() => this.flush());
    }
  }

  /** Sends the async deltas of the current turn now, in messages that fit the broker. */
  flush(): void {
    if (!this.#batchScheduled) return;
    this.#batchScheduled = false;
    for (const message of batchBySize(this.#batch.splice(0), { maxCount: BATCH_SESSIONS, maxBytes: this.maxBytes, sizeOf: sessionWireBytes })) {
      void this.#send(message, 'async');
    }
  }

  /** Sends one message; resolves to false when it could not be sent (or stored, in `persist` mode). */
  async #send(deltas: SessionState[], mode: SendMode, route?: string): Promise<boolean> {
    const { bus, membership, stats, logger } = this.core.parts;
    const { acks } = this.core;
    const id = this.core.nextMessageId();
    const acked = mode === 'ack' ? acks.wait(id, membership.readyMembers().map((m) => m.node), this.options.ackTimeoutMs) : undefined;
    const body = { id, s: deltas, ...(mode === 'ack' ? { r: bus.subjects.node(bus.identity.node) } : {}) };
    try {
      if (mode === 'persist' && this.options.log) await this.options.log.append(await bus.encode('delta', body), id);
      else bus.send(bus.subjects.delta, 'delta', body);
    } catch (error) {
      stats.replicationErrors++;
      logger.error({ ...sessionFields(deltas.map((d) => d.key)), route, mode, error: (error as Error).message }, 'replication failed: changes kept locally only');
      acks.cancel(id);
      return false;
    }
    if (!acked) return true;
    const missing = await acked;
    if (missing.length > 0) {
      stats.acksTimedOut++;
      logger.warn({ ...sessionFields(deltas.map((d) => d.key)), route, missing, timeoutMs: this.options.ackTimeoutMs }, 'ack timeout: not every member confirmed the write');
    }
    return true;
  }
}
