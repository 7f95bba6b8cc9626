/**
 * `HandOver`: draining a backup-manager node. Every session it is primary or backup of goes to other
 * members in rounds, each new holder acknowledging the data before the new entries are broadcast.
 */
import type { OwnershipEntry } from '../../codec/envelope.ts';
import { sessionFields } from '../../logger.ts';
import { cloneState, type SessionState } from '../../session/state.ts';
import { batchBySize } from '../batching.ts';
import type { ReplicaCore } from '../core.ts';
import { roleOf } from './ownership-map.ts';
import { BATCH, copyBatches, type CopySender } from './copies.ts';
import type { Ownership } from './ownership.ts';

/** How often a draining node looks again for sessions that still name it. */
const DRAIN_RETRY_MS = 250;

/** The sessions that go to one pair of new holders. */
interface HandOverGroup {
  readonly holders: string[];
  readonly entries: OwnershipEntry[];
  readonly states: SessionState[];
}

/** Hands this node's sessions over while it drains. */
export class HandOver {
  /** Set by `drain()`: no takeovers here any more, and sessions still involving this node are handed over. */
  #draining = false;
  #timer?: ReturnType<typeof setInterval>;
  #round?: Promise<void>;

  constructor(
    private readonly core: ReplicaCore,
    private readonly ownership: Ownership,
    private readonly copies: CopySender,
    private readonly ackTimeoutMs: number,
  ) {}

  /** True once draining started. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Hands every session this node is primary or backup of to other members: its backup (else a
   * member picked round-robin) becomes primary, a new backup is picked round-robin among the others,
   * both are sent the data and acknowledge it, then the new entries are broadcast. Resolves when no
   * session names this node any more; until `stop()` it keeps handing over sessions that still do
   * (made elsewhere before this node's `draining` heartbeat arrived).
   */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#timer ??= setInterval(() => void this.#handOverAll(), DRAIN_RETRY_MS);
    while (this.core.ready && this.remaining() > 0) {
      await this.#handOverAll();
      if (this.remaining() > 0) await new Promise((resolve) => setTimeout(resolve, DRAIN_RETRY_MS));
    }
  }

  /** Sessions this node is still primary or backup of. */
  remaining(): number {
    const counts = this.ownership.map.counts(this.core.self);
    return counts.primary + counts.backup;
  }

  /** Stops the retry timer. */
  stop(): void {
    clearInterval(this.#timer);
  }

  /** One hand-over round (one at a time). */
  #handOverAll(): Promise<void> {
    this.#round ??= this.#handOverRound()
      .catch((error: unknown) => this.core.parts.logger.error({ error }, 'draining: hand-over round failed'))
      .finally(() => (this.#round = undefined));
    return this.#round;
  }

  async #handOverRound(): Promise<void> {
    const { self, table, parts } = this.core;
    const targets = this.ownership.eligible();
    if (targets.length === 0) return; // Nobody to hand over to (yet): not safe to stop.
    const groups = new Map<string, HandOverGroup>();
    for (const entry of [...this.ownership.map.live()]) {
      const role = roleOf(entry, self);
      if (role === 'proxy') continue;
      const other = role === 'primary' ? entry.backup : entry.primary;
      const primary = targets.includes(other) ? other : this.ownership.pickBackup();
      const backup = this.ownership.pickBackup([primary]);
      const next: OwnershipEntry = { key: entry.key, primary, backup, stamp: parts.clock.tick() };
      const holders = [primary, backup].filter((node) => node !== '');
      const id = holders.join(' ');
      let group = groups.get(id);
      if (!group) groups.set(id, (group = { holders, entries: [], states: [] }));
      group.entries.push(next);
      const state = table.live(entry.key);
      if (state) {
        group.states.push(cloneState(state));
        // What the new primary got: a later role change passes the data on again only if it changed since.
        this.ownership.recordHandOver(entry.key, primary, state);
      }
    }
    if (groups.size === 0) return;
    const results = await Promise.all(
      [...groups.values()].map(async (group) => ({ group, ok: await this.#copyAcked(group) })),
    );
    const moved: OwnershipEntry[] = [];
    for (const { group, ok } of results) {
      if (!ok) continue; // Retried in the next round, with a newer entry.
      for (const entry of group.entries) {
        this.ownership.merge(entry);
        moved.push(entry);
      }
    }
    this.copies.broadcast(moved);
    parts.logger.info(
      { ...sessionFields(moved.map((e) => e.key)), moved: moved.length, remaining: this.remaining() },
      'draining: sessions handed over',
    );
  }

  /** Sends new entries with their data to the new holders; true once every holder acknowledged every batch. */
  async #copyAcked({ holders, entries, states }: HandOverGroup): Promise<boolean> {
    const { bus, logger } = this.core.parts;
    const byKey = new Map(entries.map((entry) => [entry.key, entry]));
    const batches = copyBatches(states).map((batch) => ({ e: batch.flatMap((s) => byKey.get(s.key) ?? []), s: batch }));
    const withData = new Set(states.map((state) => state.key));
    const bare = entries.filter((entry) => !withData.has(entry.key));
    for (const e of batchBySize(bare, { maxCount: BATCH })) batches.push({ e, s: [] });
    const waits: Promise<string[]>[] = [];
    for (const batch of batches) {
      const id = this.core.nextMessageId();
      waits.push(this.core.acks.wait(id, holders, this.ackTimeoutMs));
      for (const holder of holders) {
        try {
          bus.send(
            bus.subjects.node(holder),
            'copy',
            { id, e: batch.e, s: batch.s },
            bus.subjects.node(this.core.self),
          );
        } catch (error) {
          this.core.acks.cancel(id);
          logger.error({ holder, error }, 'draining: copy failed');
          return false;
        }
      }
    }
    const missing = [...new Set((await Promise.all(waits)).flat())];
    if (missing.length > 0)
      logger.warn(
        { missing, sessions: entries.length, timeoutMs: this.ackTimeoutMs },
        'draining: a new holder did not confirm, retrying',
      );
    return missing.length === 0;
  }
}
