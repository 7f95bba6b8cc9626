/** `SessionTable`: the sessions one node holds, merged by the CRDT rule, with tombstones for ended ones. */
import { cloneState, isIdleExpired, mergeInto, type SessionState } from '../session/state.ts';

/** What a merge did to the table. */
export interface MergeOutcome {
  /** The key was unknown before. */
  readonly created: boolean;
  /** The session ended with this merge. */
  readonly ended: boolean;
  /** Anything changed at all. */
  readonly changed: boolean;
}

/** Sessions by key. Ended sessions stay as tombstones (no attributes) until `collect` removes them. */
export class SessionTable {
  readonly #states = new Map<string, SessionState>();
  #live = 0;

  /** Merges a delta or a full state; the table keeps its own copy. */
  merge(incoming: SessionState): MergeOutcome {
    const current = this.#states.get(incoming.key);
    if (!current) {
      const state = cloneState(incoming);
      mergeInto(state, incoming); // normalises an ended state (drops attributes)
      this.#states.set(state.key, state);
      if (!state.ended) this.#live++;
      return { created: !state.ended, ended: false, changed: true };
    }
    const wasLive = !current.ended;
    const changed = mergeInto(current, incoming);
    const ended = wasLive && current.ended !== undefined;
    if (ended) this.#live--;
    return { created: false, ended, changed };
  }

  /** The live session with this key, or undefined if unknown or ended. */
  live(key: string): SessionState | undefined {
    const state = this.#states.get(key);
    return state && !state.ended ? state : undefined;
  }

  /** Any state with this key, tombstones included. */
  get(key: string): SessionState | undefined {
    return this.#states.get(key);
  }

  /** Number of live sessions. */
  get liveCount(): number {
    return this.#live;
  }

  /** Number of tombstones. */
  get tombstoneCount(): number {
    return this.#states.size - this.#live;
  }

  /** All keys, tombstones included, in insertion order. */
  keys(): string[] {
    return [...this.#states.keys()];
  }

  /** All live sessions. */
  *liveStates(): IterableIterator<SessionState> {
    for (const state of this.#states.values()) if (!state.ended) yield state;
  }

  /** Live sessions idle past their interval plus the grace `graceFor(state)` gives. */
  expired(now: number, graceFor: (state: SessionState) => number): SessionState[] {
    const out: SessionState[] = [];
    for (const state of this.liveStates()) if (isIdleExpired(state, now, graceFor(state))) out.push(state);
    return out;
  }

  /** Drops a session's data outright (this node no longer holds it: a backup manager proxy). */
  remove(key: string): void {
    const state = this.#states.get(key);
    if (!state) return;
    this.#states.delete(key);
    if (!state.ended) this.#live--;
  }

  /** Removes tombstones that ended before `endedBefore`; returns the removed keys. */
  collect(endedBefore: number): string[] {
    const removed: string[] = [];
    for (const [key, state] of this.#states) {
      if (state.ended && state.ended.stamp[0] < endedBefore) {
        this.#states.delete(key);
        removed.push(key);
      }
    }
    return removed;
  }
}
