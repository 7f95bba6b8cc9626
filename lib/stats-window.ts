/**
 * Windowed statistics for `/cluster` and metrics, cheap enough for every message and Web-standard:
 * `RateWindow` turns counters sampled once a second into per-second rates over the last ~10 s;
 * `LagWindow` keeps replication lag in per-second histogram buckets for p50/p99 over the last minute.
 */

/** Rates over a window of counter samples. */
export class RateWindow<K extends string> {
  readonly #times: number[] = [];
  readonly #values: number[][] = [];

  /**
   * @param names the counters, in the order `sample` receives them
   * @param windowSeconds how far back rates look (default 10 s; samples are expected once a second)
   */
  constructor(
    readonly names: readonly K[],
    readonly windowSeconds = 10,
  ) {}

  /** Records the counters' current values (call once a second). Counters only grow; a reset restarts the window. */
  sample(now: number, values: readonly number[]): void {
    const last = this.#values.at(-1);
    if (last && values.some((value, i) => value < last[i]!)) this.#clear();
    this.#times.push(now);
    this.#values.push([...values]);
    // Keep one sample older than the window, so a full window is always covered.
    while (this.#times.length > 2 && this.#times[1]! <= now - this.windowSeconds * 1000) {
      this.#times.shift();
      this.#values.shift();
    }
  }

  /**
   * Per-second rates between the oldest sample at most `windowSeconds` before the newest (or, when
   * samples are sparse, the one just before that) and the newest; zeros until two samples exist.
   */
  rates(): Record<K, number> & { windowSeconds: number } {
    const out = { windowSeconds: 0 } as Record<K, number> & { windowSeconds: number };
    for (const name of this.names) (out as Record<string, number>)[name] = 0;
    const n = this.#times.length;
    if (n < 2) return out;
    const newest = this.#times[n - 1]!;
    let from = 0;
    while (from < n - 2 && this.#times[from + 1]! <= newest - this.windowSeconds * 1000) from++;
    const seconds = (newest - this.#times[from]!) / 1000;
    if (seconds <= 0) return out;
    out.windowSeconds = round(seconds, 1);
    this.names.forEach((name, i) => {
      (out as Record<string, number>)[name] = round((this.#values[n - 1]![i]! - this.#values[from]![i]!) / seconds, 2);
    });
    return out;
  }

  #clear(): void {
    this.#times.length = 0;
    this.#values.length = 0;
  }
}

/** Lag quantiles over the window, in milliseconds. */
export interface LagSummary {
  /** Median lag, ms (about ±5%: histogram bins grow by 2^(1/8)); null without samples in the window. */
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** Samples in the window. */
  samples: number;
  windowSeconds: number;
}

/** Histogram bins per doubling: 8 gives about ±4.5% relative error. */
const STEPS_PER_DOUBLING = 8;
/** Bin 0 holds lags below 1 ms; bins 1.. cover 1 ms up to 2^24 ms (4.6 h), the last bin everything above. */
const BINS = 1 + 24 * STEPS_PER_DOUBLING + 1;

/** Index of the histogram bin holding `ms`. */
export function lagBin(ms: number): number {
  if (!(ms >= 1)) return 0;
  return Math.min(BINS - 1, 1 + Math.floor(Math.log2(ms) * STEPS_PER_DOUBLING));
}

/** The value a bin reports: 0 for bin 0, else the geometric middle of the bin (whole ms stay whole below 12 ms). */
export function lagBinValue(bin: number): number {
  if (bin <= 0) return 0;
  const low = 2 ** ((bin - 1) / STEPS_PER_DOUBLING);
  const high = 2 ** (bin / STEPS_PER_DOUBLING);
  // Below 12 ms a bin holds at most one whole number of ms (stamps are whole ms): report it exactly.
  if (high - low < 1) return Math.ceil(low - 1e-9);
  return Math.sqrt(low * high);
}

/**
 * Replication lag over the last `windowSeconds` (default 60): one histogram per second in a ring, so
 * recording is an array increment and memory is fixed whatever the traffic. Also keeps the all-time
 * count and sum (a Prometheus summary's `_count` and `_sum`).
 */
export class LagWindow {
  readonly #bins: Uint32Array;
  /** The second (ms / 1000, floored) each ring slot holds, or -1. */
  readonly #seconds: Float64Array;
  readonly #max: Float64Array;
  /** Samples ever recorded. */
  count = 0;
  /** Sum of every lag ever recorded, ms. */
  sumMs = 0;
  /** Samples ever recorded, per bin (for a Prometheus histogram's `_bucket` lines). */
  readonly #allTime = new Float64Array(BINS);

  constructor(readonly windowSeconds = 60) {
    this.#bins = new Uint32Array(windowSeconds * BINS);
    this.#seconds = new Float64Array(windowSeconds).fill(-1);
    this.#max = new Float64Array(windowSeconds);
  }

  /** Records one lag (ms, measured at `now`); negative lags (clock skew) count as 0. */
  record(lagMs: number, now: number): void {
    const ms = Number.isFinite(lagMs) && lagMs > 0 ? lagMs : 0;
    const second = Math.floor(now / 1000);
    const slot = second % this.windowSeconds;
    if (this.#seconds[slot] !== second) {
      this.#bins.fill(0, slot * BINS, (slot + 1) * BINS);
      this.#seconds[slot] = second;
      this.#max[slot] = 0;
    }
    const bin = lagBin(ms);
    this.#bins[slot * BINS + bin]!++;
    this.#allTime[bin]!++;
    if (ms > this.#max[slot]!) this.#max[slot] = ms;
    this.count++;
    this.sumMs += ms;
  }

  /**
   * Cumulative all-time counts at the bin edges 2^k ms for k = 0..`doublings` (1 ms, 2 ms, 4 ms, ...):
   * `counts[k]` samples were below `boundsMs[k]`. Bin edges fall exactly on powers of two, so these
   * counts are exact, not interpolated; a Prometheus histogram reports them as `le` buckets.
   */
  cumulative(doublings = 16): { boundsMs: number[]; counts: number[] } {
    const boundsMs: number[] = [];
    const counts: number[] = [];
    let seen = 0;
    let bin = 0;
    for (let k = 0; k <= doublings; k++) {
      // Bins 0..k*STEPS_PER_DOUBLING hold every lag below 2^k ms.
      for (; bin <= Math.min(k * STEPS_PER_DOUBLING, BINS - 1); bin++) seen += this.#allTime[bin]!;
      boundsMs.push(2 ** k);
      counts.push(seen);
    }
    return { boundsMs, counts };
  }

  /** p50, p99 and max of the samples recorded in the last `windowSeconds` before `now`. */
  summary(now: number): LagSummary {
    const current = Math.floor(now / 1000);
    const totals = new Float64Array(BINS);
    let samples = 0;
    let max = 0;
    for (let slot = 0; slot < this.windowSeconds; slot++) {
      const second = this.#seconds[slot]!;
      if (second < 0 || second > current || second <= current - this.windowSeconds) continue;
      const base = slot * BINS;
      for (let bin = 0; bin < BINS; bin++) {
        const n = this.#bins[base + bin]!;
        if (n === 0) continue;
        totals[bin]! += n;
        samples += n;
      }
      max = Math.max(max, this.#max[slot]!);
    }
    if (samples === 0) return { p50Ms: null, p99Ms: null, maxMs: null, samples: 0, windowSeconds: this.windowSeconds };
    const quantile = (q: number): number => {
      const rank = Math.max(1, Math.ceil(q * samples));
      let seen = 0;
      for (let bin = 0; bin < BINS; bin++) {
        seen += totals[bin]!;
        if (seen >= rank) return round(Math.min(lagBinValue(bin), max), 2);
      }
      return max;
    };
    return {
      p50Ms: quantile(0.5),
      p99Ms: quantile(0.99),
      maxMs: round(max, 2),
      samples,
      windowSeconds: this.windowSeconds,
    };
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
