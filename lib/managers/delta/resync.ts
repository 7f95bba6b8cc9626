/**
 * `Resync`: the delta manager's gap repair without a log (see `gaps.ts` for what opens a gap). After
 * a channel reconnect or an event-loop stall, the node merges the full state of every ready member
 * and, after a reconnect, sends its own; then the gap closes.
 */
import { sessionWireBytes } from '../../codec/wire-size.ts';
import type { SessionState } from '../../session/state.ts';
import { batchBySize } from '../batching.ts';
import type { ReplicaCore } from '../core.ts';
import { receiveFromEach } from '../state-transfer.ts';
import type { GapReason, GapWatch, RepairRunner } from '../gaps.ts';
import { BATCH_SESSIONS } from './publisher.ts';

/** Id prefix of the delta messages a resync sends: receivers do not count them as replication lag. */
export const RESYNC_ID = 'resync-';

/** Timing of resyncs. */
export interface ResyncOptions {
  /** How long after a reconnect or stall the resync runs at the latest (members have time to be back; it runs as soon as they are). */
  readonly resyncAfterMs: number;
  readonly stateTransferTimeoutMs: number;
  /** A page's budget: a live member answers at once. */
  readonly ackTimeoutMs: number;
  /** Byte budget of one delta message. */
  readonly maxBytes: () => number;
}

/** Repairs gaps by merging every ready member's state. */
export class Resync {
  /** One resync at a time; a reconnect during one asks again at once, a member that did not answer after the usual wait. */
  readonly #runner: RepairRunner;

  constructor(
    private readonly core: ReplicaCore,
    private readonly options: ResyncOptions,
    private readonly gaps: GapWatch,
  ) {
    this.#runner = gaps.runner(
      (reason) => this.#run(reason),
      () => this.options.resyncAfterMs,
    );
  }

  /** True while a resync merges: access times are being refreshed, so expiry waits. */
  get running(): boolean {
    return this.#runner.running;
  }

  /** Cancels a scheduled resync. */
  stop(): void {
    this.#runner.stop();
  }

  /** Runs a resync once the members are back, at the latest `resyncAfterMs` from now (see `RepairRunner.scheduleAfterGap`). */
  schedule(reason: GapReason): void {
    this.#runner.scheduleAfterGap(reason, this.options.resyncAfterMs);
  }

  /**
   * Merges the full state of every ready member (idempotent: the CRDT merge keeps what is newer).
   * Every member, not one: a delta lost with a broker may be held by its writer only. Resolves false
   * when a member did not answer in full.
   */
  async #run(reason: GapReason): Promise<boolean> {
    const { bus, membership, stats, logger } = this.core.parts;
    if (!this.core.ready || !this.gaps.channelUp) return true;
    const started = Date.now();
    const donors = membership.readyMembers().map((m) => m.node);
    let repaired = 0;
    let received = 0;
    const failed: string[] = [];
    try {
      const { stateTransferTimeoutMs: timeoutMs, ackTimeoutMs: pageTimeoutMs } = this.options;
      const outcomes = await receiveFromEach(bus, donors, {
        timeoutMs,
        pageTimeoutMs,
        apply: (page) => (repaired += this.#repair(page.sessions)),
        logger: logger.child({ resync: reason }),
      });
      for (const [donor, status] of outcomes) {
        received += status.sessionsReceived;
        if (status.state === 'failed') failed.push(donor);
      }
      // After a reconnect the gap goes both ways: what this node sent just before the connection
      // dropped may have been lost with it, and members that stayed connected never resync.
      const pushed = reason === 'reconnect' ? this.#pushAll() : 0;
      if (failed.length === 0) this.gaps.close();
      stats.resyncs++;
      stats.resyncRepairs += repaired;
      logger.info(
        { reason, donors, sessionsReceived: received, repaired, pushed, ms: Date.now() - started },
        'resync: merged the state of every ready member',
      );
    } finally {
      if (failed.length > 0)
        logger.warn({ reason, failed }, 'resync: some members did not answer in full, trying again');
    }
    return failed.length === 0;
  }

  /**
   * Sends every session this node holds (tombstones too) as async deltas, in messages that fit the
   * broker; their ids start with `resync-` so receivers do not count them as replication lag.
   * Returns how many sessions were sent.
   */
  #pushAll(): number {
    const { bus, logger } = this.core.parts;
    const { table } = this.core;
    const held = table.keys().flatMap((key) => table.get(key) ?? []);
    let sent = 0;
    try {
      for (const message of batchBySize(held, {
        maxCount: BATCH_SESSIONS,
        maxBytes: this.options.maxBytes(),
        sizeOf: sessionWireBytes,
      })) {
        bus.send(bus.subjects.delta, 'delta', { id: this.core.nextMessageId(RESYNC_ID), s: message });
        sent += message.length;
      }
    } catch (error) {
      logger.warn({ sent, error: (error as Error).message }, "resync: sending this node's sessions failed");
    }
    return sent;
  }

  /** Merges states of a resync; returns how many sessions' data it changed (access times aside: those replicate lazily). */
  #repair(states: SessionState[]): number {
    const { table } = this.core;
    let repaired = 0;
    for (const state of states) {
      const held = table.get(state.key);
      const before = held && { registers: new Map(held.attributes), ended: held.ended, maxInactive: held.maxInactive };
      this.core.applyStates([state]);
      const after = table.get(state.key);
      if (!after) continue;
      const changed = !before || after.ended !== before.ended || after.maxInactive !== before.maxInactive;
      if (changed || [...after.attributes].some(([name, r]) => before.registers.get(name) !== r)) repaired++;
    }
    return repaired;
  }
}
