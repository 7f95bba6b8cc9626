/**
 * `OwnershipMap` (backup manager): for every session, which node is primary and which is backup.
 * Entries merge last-writer-wins by hybrid-clock stamp, an ended entry is a terminal tombstone, so
 * every node converges on the same map whatever order the `.map` broadcasts arrive in.
 */
import type { OwnershipEntry } from '../../codec/envelope.ts';
import { compareStamps } from '../../session/clock.ts';

export type { OwnershipEntry };

/** A node's role for one session. */
export type Role = 'primary' | 'backup' | 'proxy';

/** The role `node` plays in `entry`. */
export function roleOf(entry: OwnershipEntry, node: string): Role {
  return entry.primary === node ? 'primary' : entry.backup === node ? 'backup' : 'proxy';
}

/** Entries by session key. */
export class OwnershipMap {
  readonly #entries = new Map<string, OwnershipEntry>();

  /** Merges an entry; returns the previous entry when the incoming one won, undefined when it lost. */
  merge(entry: OwnershipEntry): { previous: OwnershipEntry | undefined } | undefined {
    const current = this.#entries.get(entry.key);
    if (current) {
      if (current.ended && !entry.ended) return undefined;
      if (!(entry.ended && !current.ended) && compareStamps(entry.stamp, current.stamp) <= 0) return undefined;
    }
    this.#entries.set(entry.key, entry);
    return { previous: current };
  }

  /** The entry of a live session. */
  get(key: string): OwnershipEntry | undefined {
    const entry = this.#entries.get(key);
    return entry && !entry.ended ? entry : undefined;
  }

  /** The entry, tombstones included. */
  raw(key: string): OwnershipEntry | undefined {
    return this.#entries.get(key);
  }

  /** Every entry, tombstones included (for state transfer). */
  all(): IterableIterator<OwnershipEntry> {
    return this.#entries.values();
  }

  /** Live entries. */
  *live(): IterableIterator<OwnershipEntry> {
    for (const entry of this.#entries.values()) if (!entry.ended) yield entry;
  }

  /** Forgets an entry outright (orphaned proxies, collected tombstones). */
  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Counts of live entries by the role `node` plays. */
  counts(node: string): Record<Role, number> {
    const counts: Record<Role, number> = { primary: 0, backup: 0, proxy: 0 };
    for (const entry of this.live()) counts[roleOf(entry, node)]++;
    return counts;
  }
}

/** Picks backups round-robin over the current candidates, so backups spread evenly. */
export class RoundRobin {
  #next = 0;

  /** The next candidate (sorted for a stable order), or '' when there is none. */
  pick(candidates: readonly string[]): string {
    if (candidates.length === 0) return '';
    const sorted = [...candidates].sort();
    return sorted[this.#next++ % sorted.length]!;
  }
}
