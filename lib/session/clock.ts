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

/** Issues strictly increasing stamps for one node and advances past every stamp it observes. */
export class HybridClock {
  #wall = 0;
  #counter = 0;

  constructor(
    readonly node: string,
    private readonly now: () => number = Date.now,
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

  /** Moves the clock past a remote stamp so our next write orders after what we have seen. */
  observe(stamp: Stamp): void {
    const [wall, counter] = stamp;
    // A remote clock far in the future must not drag ours along: cap the jump at one minute.
    if (wall > this.now() + 60_000) return;
    if (wall > this.#wall) {
      this.#wall = wall;
      this.#counter = counter;
    } else if (wall === this.#wall && counter > this.#counter) {
      this.#counter = counter;
    }
  }
}
