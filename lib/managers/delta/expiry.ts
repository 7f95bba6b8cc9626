/**
 * `StallAwareExpiry`: the delta manager's expiry. Only the node that served a session last ends it
 * everywhere, one touch interval after its timeout (a newer access elsewhere may not have been sent
 * yet), and only from a caught-up view: not after this process stalled, not while disconnected or
 * catching up. Any other node declines to serve a session idle past its timeout plus two touch
 * intervals, and drops it locally at twice its timeout (Tomcat's replica expiry), or a sweep interval
 * past its lifetime's end: if its last server is still there it ends it first, and a resync brings
 * back what a stale view dropped too early.
 */
import { isIdleExpired, lifetimeEnd, type SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';
import { touchIntervalFor } from '../pending-replication.ts';

/** Timing of the expiry sweep. */
export interface ExpiryOptions {
  readonly sweepIntervalMs: number;
  readonly touchIntervalMs: number;
  /** See `DeltaManagerOptions.resyncAfterMs`; also how late a sweep may come before it counts as a stall. */
  readonly resyncAfterMs?: number | undefined;
}

/** Decides when sessions expire on this node and ends them through `end`. */
export class StallAwareExpiry {
  /** Expiry pauses after a stall until this time (see `tick`). */
  #pausedUntil = 0;
  #lastSweepAt = 0;

  constructor(
    private readonly core: ReplicaCore,
    private readonly options: ExpiryOptions,
    /** False while this node's view may lack accesses made elsewhere (a gap not caught up, a resync running). */
    private readonly caughtUp: () => boolean,
    private readonly end: (state: SessionState) => void,
  ) {}

  /** The sweep timer starts now. */
  start(): void {
    this.#lastSweepAt = Date.now();
  }

  /**
   * The sweep timer. A tick that comes much later than scheduled means this process was paused
   * (SIGSTOP, a frozen Lambda, a long GC): its access times are stale, so ending waits a while even
   * where no gap watch runs (Lambda); tombstones are still collected.
   */
  tick(): void {
    const now = Date.now();
    const { sweepIntervalMs, resyncAfterMs } = this.options;
    if (now - this.#lastSweepAt > sweepIntervalMs + (resyncAfterMs ?? 3000)) {
      this.#pausedUntil = now + sweepIntervalMs + (resyncAfterMs ?? 0) + 2000;
      this.core.parts.logger.warn(
        { lateMs: now - this.#lastSweepAt - sweepIntervalMs },
        'expiry paused: this process was stalled and may have missed accesses',
      );
    }
    this.#lastSweepAt = now;
    this.sweep(now);
  }

  /** Ends the idle sessions this node served last (from a caught-up view), drops stale replicas, forgets old tombstones. */
  sweep(now: number): void {
    const mayEnd = this.#mayEnd(now);
    for (const state of this.core.table.expired(now, (s) => this.#graceFor(s))) {
      if (this.#servedHere(state)) {
        if (mayEnd) this.end(state);
      } else if (this.#dropDue(state, now)) {
        this.core.table.remove(state.key);
        this.core.pending.forget(state.key);
        this.core.parts.logger.debug(
          { session: state.key.slice(0, 8), lastAccessedBy: state.lastAccessedBy },
          'session dropped here: idle twice its interval, served last elsewhere',
        );
      }
    }
    this.core.collectTombstones(now);
  }

  /**
   * Whether a live session may be served. Idle past its interval: the node that served it last ends
   * it (and does not serve it), unless its view is not caught up (then it serves it: the session
   * may be in use elsewhere); any other node declines it without ending it.
   */
  admit(state: SessionState, now: number): boolean {
    if (!isIdleExpired(state, now, this.#graceFor(state))) return true;
    if (!this.#servedHere(state)) return false;
    if (!this.#mayEnd(now)) return true;
    this.end(state);
    return false;
  }

  /**
   * Whether a copy served last elsewhere may be dropped here: idle twice its interval, or past its lifetime by a
   * sweep interval and the grace, so that its server's end arrives first (a replicated `ended` listener hears it).
   */
  #dropDue(state: SessionState, now: number): boolean {
    const grace = this.#graceFor(state);
    const idleMs = state.maxInactive.seconds * 1000;
    if (idleMs > 0 && now - state.lastAccessedAt >= 2 * idleMs + grace) return true;
    const lifetime = lifetimeEnd(state);
    return lifetime !== undefined && now >= lifetime + this.options.sweepIntervalMs + grace;
  }

  /** Whether this node's view is fresh enough to end sessions. */
  #mayEnd(now: number): boolean {
    return now >= this.#pausedUntil && this.caughtUp();
  }

  #servedHere(state: SessionState): boolean {
    return state.lastAccessedBy === this.core.self;
  }

  /** Touches are rate-limited per node: the last server waits one touch interval, any other node two. */
  #graceFor(state: SessionState): number {
    const interval = touchIntervalFor(state, this.options.touchIntervalMs);
    return this.#servedHere(state) ? interval : 2 * interval;
  }
}
