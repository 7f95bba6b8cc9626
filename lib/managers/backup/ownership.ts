/**
 * `Ownership`: this node's view of who holds every session (the `OwnershipMap`) and the decisions that
 * change it: claiming a session, picking backups, merging entries that arrive (and adjusting the data
 * held here to this node's new role), and reassigning sessions when members come and go.
 */
import { cloneState, mergeInto, type SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';
import { OwnershipMap, roleOf, RoundRobin, type OwnershipEntry } from './ownership-map.ts';
import type { CopySender } from './copies.ts';

/** The ownership map and every change to it. */
export class Ownership {
  readonly map = new OwnershipMap();
  readonly #roundRobin = new RoundRobin();
  /** Sessions this node handed to a new primary, with the state it handed over (see `#handOver`). */
  readonly #handedOver = new Map<string, { node: string; state: SessionState }>();

  constructor(
    private readonly core: ReplicaCore,
    private readonly copies: CopySender,
  ) {}

  /** Remembers that `node` got `state` of `key` from here, so a later role change does not send it again. */
  recordHandOver(key: string, node: string, state: SessionState): void {
    this.#handedOver.set(key, { node, state: cloneState(state) });
  }

  /** Merges an entry and adjusts local data to this node's new role; true when the entry won. */
  merge(entry: OwnershipEntry): boolean {
    const { table, pending } = this.core;
    this.core.parts.clock.observe(entry.stamp);
    if (!this.map.merge(entry)) return false;
    if (entry.ended) {
      // The ended entry is the tombstone here: it does not say why the session ended, so live data is
      // dropped rather than ended with a guessed reason (the node that ended it keeps the real one).
      if (table.live(entry.key)) table.remove(entry.key);
      pending.forget(entry.key);
      this.#handedOver.delete(entry.key);
    } else if (roleOf(entry, this.core.self) === 'proxy') {
      this.#handOver(entry);
      table.remove(entry.key);
      pending.forget(entry.key);
    }
    return true;
  }

  /**
   * Makes this node the primary of `key`. The backup stays where the data already is when possible
   * (the old backup, else the old primary, unless it just failed to answer); otherwise a new one is
   * picked round-robin and sent a full copy. The new entry is broadcast so every proxy follows.
   */
  claim(key: string, previous: OwnershipEntry | undefined, unreachable: string[] = []): OwnershipEntry {
    const self = this.core.self;
    const alive = (node: string) =>
      node !== '' && node !== self && !unreachable.includes(node) && this.eligible().includes(node);
    let backup = '';
    let needsCopy = false;
    if (previous && alive(previous.backup)) backup = previous.backup;
    else if (previous && alive(previous.primary)) backup = previous.primary;
    else {
      backup = this.pickBackup(unreachable);
      needsCopy = backup !== '';
    }
    const entry: OwnershipEntry = { key, primary: self, backup, stamp: this.core.parts.clock.tick() };
    this.map.merge(entry);
    this.copies.broadcast([entry]);
    const state = this.core.table.get(key);
    if (needsCopy && state && previous) void this.copies.copy([backup], [entry], [state], 'async');
    return entry;
  }

  /** A member picked round-robin among the eligible ones, or '' when there is none. */
  pickBackup(exclude: string[] = []): string {
    return this.#roundRobin.pick(this.eligible().filter((node) => !exclude.includes(node)));
  }

  /** Other members that may hold sessions: ready and not draining. */
  eligible(): string[] {
    return this.core.parts.membership
      .readyMembers()
      .filter((m) => !m.draining)
      .map((m) => m.node);
  }

  /**
   * A member left or died. Its primaries are taken over by their backups; sessions it backed up get
   * a new backup from their primary; sessions that lost both are forgotten.
   */
  memberGone(gone: string): void {
    const { self, table, parts } = this.core;
    const alive = (node: string) => node === self || parts.membership.has(node);
    const repaired = this.#reassign((entry) => {
      if (entry.primary !== gone && entry.backup !== gone) return undefined;
      const survivor = entry.primary === gone ? entry.backup : entry.primary;
      if (survivor === '' || !alive(survivor)) {
        this.map.delete(entry.key);
        table.remove(entry.key);
        return undefined;
      }
      if (survivor !== self) return undefined; // The survivor repairs it and broadcasts the new entry.
      return { key: entry.key, primary: self, backup: this.pickBackup([gone]), stamp: parts.clock.tick() };
    });
    if (repaired > 0) parts.logger.info({ gone, repaired }, 'took over and re-backed sessions of a departed member');
  }

  /** A member became ready: primaries here without a backup get one. */
  protectUnprotected(): void {
    this.#reassign((entry) => {
      if (entry.primary !== this.core.self || entry.backup !== '') return undefined;
      const backup = this.pickBackup();
      return backup === '' ? undefined : { ...entry, backup, stamp: this.core.parts.clock.tick() };
    });
  }

  /**
   * Replaces every live entry `next` gives a new entry for: merges and broadcasts the new entries and
   * copies the data held here to each new backup. Returns how many entries changed.
   */
  #reassign(next: (entry: OwnershipEntry) => OwnershipEntry | undefined): number {
    const changed: OwnershipEntry[] = [];
    const copies = new Map<string, SessionState[]>();
    for (const entry of [...this.map.live()]) {
      const updated = next(entry);
      if (!updated) continue;
      this.map.merge(updated);
      changed.push(updated);
      const state = this.core.table.live(entry.key);
      if (updated.backup !== '' && state) copies.set(updated.backup, [...(copies.get(updated.backup) ?? []), state]);
    }
    if (changed.length === 0) return 0;
    this.copies.broadcast(changed);
    for (const [backup, states] of copies) void this.copies.copy([backup], changed, states, 'async');
    return changed.length;
  }

  /**
   * This node became a proxy of a session it holds data for. Unless the new primary fetched exactly
   * this state from here, the data goes to it: a write committed here while the ownership moved (two
   * proxies taking one session over at once, or a request still running on the old primary) would
   * otherwise be missing on the new primary.
   */
  #handOver(entry: OwnershipEntry): void {
    const state = this.core.table.live(entry.key);
    const handed = this.#handedOver.get(entry.key);
    this.#handedOver.delete(entry.key);
    // Sent even to a primary this node does not list yet (right after a gap its heartbeat may come
    // after its entry): the data is dropped here next, so this is its last chance to reach it.
    if (!state) return;
    if (handed?.node === entry.primary && !mergeInto(cloneState(handed.state), state)) return;
    this.copies.pass(entry.primary, entry, state);
  }
}
