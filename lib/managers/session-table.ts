/** `SessionTable`: the sessions one node holds, merged by the CRDT rule, with tombstones for ended ones. */
import type { SessionObserver } from '../session/events.ts';
import { isIdleExpired, mergeInto, wholeState, type AttributeRegister, type SessionState } from '../session/state.ts';

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
  #observer?: SessionObserver;

  /** Reports every change a merge makes (events, the principal index, schema drift checks). */
  observe(observer: SessionObserver): void {
    this.#observer = observer;
  }

  /** Merges a delta or a full state; the table keeps its own copy. */
  merge(incoming: SessionState): MergeOutcome {
    const current = this.#states.get(incoming.key);
    if (!current) {
      const state = wholeState(incoming);
      mergeInto(state, incoming); // normalises an ended state (drops attributes)
      this.#states.set(state.key, state);
      if (!state.ended) this.#live++;
      // The creator's stamp: a new state's interval is stamped at creation.
      if (!state.ended && this.#observer) {
        this.#observer.created(state, state.maxInactive.stamp[2]);
        for (const [name, register] of state.attributes)
          if (register.value !== undefined) this.#observer.attribute(state, name, false, register.stamp[2]);
      }
      return { created: !state.ended, ended: false, changed: true };
    }
    const wasLive = !current.ended;
    const before = this.#observer && wasLive ? new Map(current.attributes) : undefined;
    const changed = mergeInto(current, incoming);
    const ended = wasLive && current.ended !== undefined;
    if (ended) this.#live--;
    if (this.#observer && changed) this.#report(current, before, ended);
    return { created: false, ended, changed };
  }

  #report(state: SessionState, before: Map<string, AttributeRegister> | undefined, ended: boolean): void {
    const observer = this.#observer!;
    if (ended) return observer.ended(state, state.ended!.stamp[2]);
    if (!before) return;
    for (const [name, register] of state.attributes) {
      const previous = before.get(name);
      if (previous === register) continue;
      // A removal of an attribute this node never had set is no change to report.
      if (register.value === undefined && previous?.value === undefined) continue;
      observer.attribute(state, name, register.value === undefined, register.stamp[2]);
    }
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
    this.#observer?.removed(key);
  }

  /** Removes the tombstones `due` says may be forgotten; returns the removed keys. */
  collect(due: (tombstone: SessionState) => boolean): string[] {
    const removed: string[] = [];
    for (const [key, state] of this.#states) {
      if (state.ended && due(state)) {
        this.#states.delete(key);
        removed.push(key);
      }
    }
    return removed;
  }
}
