/**
 * `GapRecovery`: the backup manager's anti-entropy. Core NATS drops what a disconnected subscriber
 * misses, so a node that blinked (a reconnect) or stalled (paused, frozen, blocked event loop) may
 * have missed `.map` broadcasts and copies: it would stay primary of sessions that moved, keep
 * proxies of sessions that ended, and expire sessions in use elsewhere from its stale view. After a
 * gap (noticed by the same `GapWatch` as the delta manager's) the node exchanges ownership entries
 * with every ready member and repairs what differs, and until that succeeded it ends nothing (see
 * `mayExpire`).
 */
import type { OwnershipEntry } from '../../codec/envelope.ts';
import type { ReplicaCore } from '../core.ts';
import type { GapReason, GapWatch, RepairRunner } from '../gaps.ts';
import { receiveFromEach } from '../state-transfer.ts';
import { roleOf } from './ownership-map.ts';
import type { CopySender } from './copies.ts';
import type { Ownership } from './ownership.ts';
import type { Takeover } from './takeover.ts';

/** Timing of gap recovery. */
export interface GapRecoveryOptions {
  /** The budget of one member's whole map. */
  readonly stateTransferTimeoutMs: number;
  /** A page's budget: a live member answers at once. */
  readonly ackTimeoutMs: number;
}

/** Reconciles the ownership map and held copies with the members after each gap `GapWatch` reports, and guards expiry meanwhile. */
export class GapRecovery {
  /** One reconciliation at a time; a gap during one asks again at once, a member that did not answer after `afterMs`. */
  readonly #runner: RepairRunner;

  constructor(
    private readonly core: ReplicaCore,
    private readonly gaps: GapWatch,
    private readonly ownership: Ownership,
    private readonly copies: CopySender,
    private readonly takeover: Takeover,
    private readonly options: GapRecoveryOptions,
  ) {
    this.#runner = gaps.runner(
      (reason) => this.#run(reason),
      () => gaps.afterMs,
    );
  }

  /**
   * Whether this node's view is fresh enough to end sessions: connected, and reconciled since its
   * last disconnect or stall. A stale view would end sessions in use elsewhere, and an end wins everywhere.
   */
  mayExpire(): boolean {
    return !this.gaps.open && this.gaps.channelUp && !this.#runner.running;
  }

  /**
   * Reconciles after every channel reconnect and every stall, once the members are back and at the latest
   * `gaps.afterMs` later (see `RepairRunner.scheduleAfterGap`).
   */
  watch(): void {
    this.gaps.watch({
      repair: (reason) => this.#runner.scheduleAfterGap(reason, this.gaps.afterMs),
      disconnected: () => undefined,
    });
  }

  /** Stops watching and cancels a scheduled reconciliation. */
  stop(): void {
    this.gaps.stop();
    this.#runner.stop();
  }

  /**
   * Merges every ready member's ownership map (last writer wins, an end wins), forgets proxies whose
   * end was missed (no member knows the key any more), re-announces the entries this node is primary
   * of and copies their data to their backups, so members that missed this node's broadcasts or
   * copies catch up too. Data follows the merged entries: a node that lost the primary role passes
   * its data to the new primary (`Ownership.merge`). Resolves false when a member did not answer in full.
   */
  async #run(reason: GapReason): Promise<boolean> {
    const { bus, logger } = this.core.parts;
    if (!this.core.ready || !this.gaps.channelUp) return true;
    const started = Date.now();
    const startStamp = this.core.parts.clock.tick();
    const donors = this.core.parts.membership.readyMembers().map((member) => member.node);
    const self = this.core.self;
    const known = new Set<string>();
    /** Keys this node stays primary of that a member still sees on another primary: that one may hold newer writes. */
    const rivals = new Map<string, string[]>();
    const failed: string[] = [];
    let merged = 0;
    try {
      const { stateTransferTimeoutMs: timeoutMs, ackTimeoutMs: pageTimeoutMs } = this.options;
      const outcomes = await receiveFromEach(bus, donors, {
        timeoutMs,
        pageTimeoutMs,
        apply: (page) => {
          for (const entry of page.entries) {
            known.add(entry.key);
            if (this.ownership.merge(entry)) merged++;
            else if (!entry.ended && entry.primary !== self)
              rivals.set(entry.key, [...(rivals.get(entry.key) ?? []), entry.primary]);
          }
        },
        logger: logger.child({ gap: reason }),
      });
      for (const [donor, status] of outcomes) if (status.state !== 'done') failed.push(donor);
      if (failed.length > 0) return false;
      const pulled = await this.#pullFromRivals(rivals);
      const forgotten = this.#forgetOrphanedProxies(known, startStamp[0]);
      const announced = this.#announcePrimaries();
      this.ownership.protectUnprotected();
      this.gaps.close();
      this.core.parts.stats.resyncs++;
      this.core.parts.stats.resyncRepairs += merged + pulled + forgotten;
      logger.info(
        { reason, donors, merged, pulled, forgotten, announced, ms: Date.now() - started },
        'gap recovery: reconciled ownership with every ready member',
      );
    } finally {
      if (failed.length > 0)
        logger.warn({ reason, failed }, 'gap recovery: some members did not answer in full, trying again');
    }
    return true;
  }

  /**
   * Two nodes were primary of one session during the gap and this node's entry won: the other may
   * have served writes meanwhile, so its data is merged in here (the CRDT keeps what is newer)
   * before it goes to the backup. Returns how many sessions got data.
   */
  async #pullFromRivals(rivals: Map<string, string[]>): Promise<number> {
    const { self, parts } = this.core;
    let pulled = 0;
    for (const [key, nodes] of rivals) {
      for (const node of new Set(nodes)) {
        const entry = this.ownership.map.get(key);
        if (!entry || roleOf(entry, self) !== 'primary' || node === self || !parts.membership.has(node)) continue;
        if (await this.takeover.pull(node, key)) pulled++;
      }
    }
    return pulled;
  }

  /** Proxies older than this exchange that no member knows: their end was missed and its tombstone collected. */
  #forgetOrphanedProxies(known: Set<string>, before: number): number {
    const { map } = this.ownership;
    let forgotten = 0;
    for (const entry of [...map.live()]) {
      if (known.has(entry.key) || roleOf(entry, this.core.self) !== 'proxy' || entry.stamp[0] >= before) continue;
      map.delete(entry.key);
      forgotten++;
    }
    return forgotten;
  }

  /** Broadcasts the entries this node is primary of and sends their data to their backups; returns how many. */
  #announcePrimaries(): number {
    const { self, table, parts } = this.core;
    const mine = [...this.ownership.map.live()].filter((entry) => roleOf(entry, self) === 'primary');
    this.copies.broadcast(mine);
    const byBackup = new Map<
      string,
      { entries: OwnershipEntry[]; states: NonNullable<ReturnType<typeof table.live>>[] }
    >();
    for (const entry of mine) {
      const state = table.live(entry.key);
      if (entry.backup === '' || !state || !parts.membership.has(entry.backup)) continue;
      let group = byBackup.get(entry.backup);
      if (!group) byBackup.set(entry.backup, (group = { entries: [], states: [] }));
      group.entries.push(entry);
      group.states.push(state);
    }
    for (const [backup, { entries, states }] of byBackup) void this.copies.copy([backup], entries, states, 'async');
    return mine.length;
  }
}
