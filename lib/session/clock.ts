/** Hybrid logical clock: stamps that order writes across nodes even when wall clocks disagree. */

/** A write's timestamp: wall-clock ms, a logical counter, and the writing node (the final tie-break). */
export type Stamp = readonly [wallMs: number, counter: number, node: string];

/** Orders two stamps: negative when `a` is older, positive when newer, 0 when they are the same write. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  if (a[1] !== b[1]) return a[1] - b[1];
  return a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
}

/** The newer of two stamps. */
export function newerStamp(a: Stamp, b: Stamp): Stamp {
  return compareStamps(a, b) >= 0 ? a : b;
}

/** The furthest a remote stamp may be ahead of this node's wall clock and still move the clock forward. */
export const MAX_OBSERVED_SKEW_MS = 60_000;

/** What {@link HybridClock} reports about a clock ahead of this node's by more than {@link MAX_OBSERVED_SKEW_MS}. */
export interface ClockSkew {
  /**
   * `observe`: a received stamp was not followed (this clock keeps its pace); `write`: a write was
   * stamped just after the register it replaces, which a clock that far ahead had stamped.
   */
  readonly kind: 'observe' | 'write';
  /** How far the other stamp is ahead of this node's wall clock, in ms. */
  readonly aheadMs: number;
  /** The node whose clock made the stamp. */
  readonly from: string;
}

/** Issues strictly increasing stamps for one node and advances past every stamp it observes. */
export class HybridClock {
  #wall = 0;
  #counter = 0;

  constructor(
    readonly node: string,
    private readonly now: () => number = Date.now,
    /** Told about every stamp from a clock too far ahead (see {@link ClockSkew}); the cluster counts and logs them. */
    private readonly onSkew?: (skew: ClockSkew) => void,
  ) {}

  /** A new stamp, later than every stamp issued or observed so far. */
  tick(): Stamp {
    const wall = this.now();
    if (wall > this.#wall) {
      this.#wall = wall;
      this.#counter = 0;
    } else {
      this.#counter++;
    }
    return [this.#wall, this.#counter, this.node];
  }

  /**
   * A new stamp for a write that replaces the register stamped `previous`: `tick()`, or, when
   * `previous` is newer (its clock runs ahead of ours by more than `observe` follows), the stamp just
   * after it, so a write made after reading a value always wins over that value. Reports the skew.
   */
  tickAfter(previous: Stamp | undefined): Stamp {
    const stamp = this.tick();
    if (!previous || compareStamps(stamp, previous) > 0) return stamp;
    this.onSkew?.({ kind: 'write', aheadMs: previous[0] - this.now(), from: previous[2] });
    return [previous[0], previous[1] + 1, this.node];
  }

  /**
   * Moves the clock past a remote stamp so our next write orders after what we have seen. A stamp
   * more than {@link MAX_OBSERVED_SKEW_MS} ahead does not drag this clock along (one bad clock would
   * otherwise move every node's stamps into its future); it is reported instead, and `tickAfter`
   * keeps sequential writes in order.
   */
  observe(stamp: Stamp): void {
    const [wall, counter] = stamp;
    const now = this.now();
    if (wall > now + MAX_OBSERVED_SKEW_MS) {
      this.onSkew?.({ kind: 'observe', aheadMs: wall - now, from: stamp[2] });
      return;
    }
    if (wall > this.#wall) {
      this.#wall = wall;
      this.#counter = counter;
    } else if (wall === this.#wall && counter > this.#counter) {
      this.#counter = counter;
    }
  }
}
