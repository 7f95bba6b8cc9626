/**
 * `StallAwareExpiry`: the delta manager's expiry. Every node sweeps; a session last used elsewhere
 * gets a replica's grace; and after this process stalled, expiry waits until it caught up, because
 * its access times are stale.
 */
import { isIdleExpired, type SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';

/** Timing of the expiry sweep. */
export interface ExpiryOptions {
  readonly sweepIntervalMs: number;
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
    /** True while something that refreshes access times runs (a resync). */
    private readonly catchingUp: () => boolean,
    private readonly end: (state: SessionState) => void,
  ) {}

  /** The sweep timer starts now. */
  start(): void {
    this.#lastSweepAt = Date.now();
  }

  /**
   * The sweep timer. A tick that comes much later than scheduled means this process was paused
   * (SIGSTOP, a frozen Lambda, a long GC): its access times are stale, and expiring now could end
   * sessions that were used elsewhere meanwhile, for good. So expiry waits until the node caught up
   * (the log replay or resync has had time to run); tombstones are still collected.
   */
  tick(): void {
    const now = Date.now();
    const { sweepIntervalMs, resyncAfterMs } = this.options;
    if (now - this.#lastSweepAt > sweepIntervalMs + (resyncAfterMs ?? 3000)) {
      this.#pausedUntil = now + sweepIntervalMs + (resyncAfterMs ?? 0) + 2000;
      this.core.parts.logger.warn({ lateMs: now - this.#lastSweepAt - sweepIntervalMs }, 'expiry paused: this process was stalled and may have missed accesses');
    }
    this.#lastSweepAt = now;
    if (this.#mayExpire(now)) this.sweep(now);
    else this.core.collectTombstones(now);
  }

  /** Expires idle sessions everywhere and forgets old tombstones. */
  sweep(now: number): void {
    for (const state of this.core.table.expired(now, (s) => this.#graceFor(s))) this.end(state);
    this.core.collectTombstones(now);
  }

  /** Ends `state` when it is idle past its interval and this node may expire now; true when it did. */
  expireIfIdle(state: SessionState, now: number): boolean {
    if (!this.#mayExpire(now) || !isIdleExpired(state, now, this.#graceFor(state))) return false;
    this.end(state);
    return true;
  }

  /** Whether this node's view of access times is fresh enough to expire sessions. */
  #mayExpire(now: number): boolean {
    return now >= this.#pausedUntil && !this.catchingUp();
  }

  /** A session last used on another node waits a replica's grace: touches reach us at most once per interval. */
  #graceFor(state: SessionState): number {
    return state.lastAccessedBy === this.core.self ? 0 : this.core.replicaGrace(state);
  }
}
