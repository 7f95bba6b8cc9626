// Owns: unit tests of lib/stats-window.ts (RateWindow, LagWindow, lag histogram bins) and the windowed
// parts of ReplicationStats (rates, lag, snapshot staying counters-only).
import { describe, expect, it } from 'vitest';
import { LagWindow, lagBin, lagBinValue, RateWindow } from '../../lib/stats-window.ts';
import { ReplicationStats } from '../../lib/stats.ts';

const T0 = 1_700_000_000_000;

describe('RateWindow', () => {
  it('gives zeros until two samples exist', () => {
    const window = new RateWindow(['a', 'b'] as const);
    expect(window.rates()).toEqual({ a: 0, b: 0, windowSeconds: 0 });
    window.sample(T0, [5, 7]);
    expect(window.rates()).toEqual({ a: 0, b: 0, windowSeconds: 0 });
  });

  it('computes per-second rates between the first and the last sample', () => {
    const window = new RateWindow(['a', 'b'] as const);
    for (let i = 0; i <= 5; i++) window.sample(T0 + i * 1000, [i * 10, i * 3]);
    expect(window.rates()).toEqual({ a: 10, b: 3, windowSeconds: 5 });
  });

  it('looks back only about windowSeconds: an old burst drops out', () => {
    const window = new RateWindow(['n'] as const, 10);
    window.sample(T0, [0]);
    window.sample(T0 + 1000, [1000]); // a burst of 1000 in the first second
    for (let i = 2; i <= 30; i++) window.sample(T0 + i * 1000, [1000 + (i - 1) * 2]); // then 2/s
    const rates = window.rates();
    expect(rates.n).toBe(2);
    expect(rates.windowSeconds).toBe(10);
  });

  it('spans a little more than the window when samples are sparse, never less than two samples', () => {
    const window = new RateWindow(['n'] as const, 10);
    window.sample(T0, [0]);
    window.sample(T0 + 25_000, [50]);
    expect(window.rates()).toEqual({ n: 2, windowSeconds: 25 });
  });

  it('restarts when a counter goes backwards (a reset)', () => {
    const window = new RateWindow(['n'] as const);
    window.sample(T0, [100]);
    window.sample(T0 + 1000, [200]);
    window.sample(T0 + 2000, [0]);
    expect(window.rates()).toEqual({ n: 0, windowSeconds: 0 });
    window.sample(T0 + 3000, [4]);
    expect(window.rates()).toEqual({ n: 4, windowSeconds: 1 });
  });

  it('keeps a bounded number of samples however long it runs', () => {
    const window = new RateWindow(['n'] as const, 10);
    for (let i = 0; i < 100_000; i++) window.sample(T0 + i * 1000, [i]);
    expect(window.rates()).toEqual({ n: 1, windowSeconds: 10 });
  });
});

describe('lag histogram bins', () => {
  it('puts sub-millisecond lags in bin 0, reported as 0', () => {
    expect(lagBin(0)).toBe(0);
    expect(lagBin(0.4)).toBe(0);
    expect(lagBin(-5)).toBe(0);
    expect(lagBin(Number.NaN)).toBe(0);
    expect(lagBinValue(0)).toBe(0);
  });

  it('reports whole milliseconds exactly below 12 ms', () => {
    for (let ms = 1; ms <= 11; ms++) expect(lagBinValue(lagBin(ms))).toBe(ms);
  });

  it('reports larger lags within 5%', () => {
    for (const ms of [12, 17, 50, 99, 250, 1000, 4321, 60_000, 3_600_000]) {
      const reported = lagBinValue(lagBin(ms));
      expect(Math.abs(reported - ms) / ms).toBeLessThan(0.05);
    }
  });

  it('bins grow monotonically', () => {
    let previous = -1;
    for (let ms = 0; ms < 100_000; ms = ms * 1.01 + 0.5) {
      const bin = lagBin(ms);
      expect(bin).toBeGreaterThanOrEqual(previous);
      previous = bin;
    }
  });
});

describe('LagWindow', () => {
  it('has no quantiles without samples', () => {
    expect(new LagWindow().summary(T0)).toEqual({
      p50Ms: null,
      p99Ms: null,
      maxMs: null,
      samples: 0,
      windowSeconds: 60,
    });
  });

  it('gives p50 and p99 of the samples in the window', () => {
    const window = new LagWindow();
    for (let ms = 1; ms <= 100; ms++) window.record(ms, T0 + ms * 10); // all within one second
    const summary = window.summary(T0 + 2000);
    expect(summary.samples).toBe(100);
    expect(summary.maxMs).toBe(100);
    expect(Math.abs(summary.p50Ms! - 50) / 50).toBeLessThan(0.05);
    expect(Math.abs(summary.p99Ms! - 99) / 99).toBeLessThan(0.05);
  });

  it('never reports a quantile above the largest sample', () => {
    const window = new LagWindow();
    window.record(13, T0);
    const summary = window.summary(T0);
    expect(summary.p50Ms).toBeLessThanOrEqual(13);
    expect(summary.p99Ms).toBeLessThanOrEqual(13);
    expect(summary.maxMs).toBe(13);
  });

  it('counts negative lags (clock skew) as 0', () => {
    const window = new LagWindow();
    window.record(-20, T0);
    expect(window.summary(T0)).toMatchObject({ p50Ms: 0, p99Ms: 0, maxMs: 0, samples: 1 });
  });

  it('forgets samples older than the window, one second at a time', () => {
    const window = new LagWindow(60);
    for (let i = 0; i < 1000; i++) window.record(5000, T0); // a slow spell at T0
    for (let s = 1; s <= 59; s++) window.record(2, T0 + s * 1000);
    expect(window.summary(T0 + 59_000)).toMatchObject({ samples: 1059, p50Ms: 5000, maxMs: 5000 }); // capped at the max seen
    // One minute later the slow second has left the window.
    expect(window.summary(T0 + 60_000)).toMatchObject({ samples: 59, p50Ms: 2, p99Ms: 2, maxMs: 2 });
    // Much later: nothing in the window, but the all-time totals stay.
    expect(window.summary(T0 + 3_600_000).samples).toBe(0);
    expect(window.count).toBe(1059);
    expect(window.sumMs).toBe(1000 * 5000 + 59 * 2);
  });

  it('reuses a ring slot for a new second, dropping what it held', () => {
    const window = new LagWindow(60);
    window.record(100, T0);
    window.record(1, T0 + 60_000); // the same slot, one minute on
    expect(window.summary(T0 + 60_000)).toMatchObject({ samples: 1, p50Ms: 1, maxMs: 1 });
  });

  it('ignores slots from the future (a clock that stepped back)', () => {
    const window = new LagWindow(60);
    window.record(7, T0 + 10_000);
    expect(window.summary(T0).samples).toBe(0);
    expect(window.summary(T0 + 10_000).samples).toBe(1);
  });
});

describe('LagWindow.cumulative (the Prometheus histogram buckets)', () => {
  it('counts every sample ever recorded below each power of two ms, exactly, outside the one-minute window too', () => {
    const lag = new LagWindow();
    const t0 = 1_000_000;
    for (const ms of [0, 0.5, 1, 1.9, 2, 3, 3.99, 4, 100, 70_000]) lag.record(ms, t0);
    lag.record(1, t0 + 5 * 60_000); // minutes later: the window forgot the first ones, the buckets did not
    const { boundsMs, counts } = lag.cumulative(16);
    expect(boundsMs).toEqual(Array.from({ length: 17 }, (_, k) => 2 ** k));
    const below = (ms: number) => counts[boundsMs.indexOf(ms)];
    expect(below(1)).toBe(2); // 0 and 0.5
    expect(below(2)).toBe(5); // + 1, 1.9 and the late 1
    expect(below(4)).toBe(8); // + 2, 3, 3.99
    expect(below(8)).toBe(9); // + 4
    expect(below(128)).toBe(10); // + 100
    expect(below(65536)).toBe(10); // 70 s is above the last edge: only in +Inf (the count)
    expect(lag.count).toBe(11);
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]!);
  });
});

describe('ReplicationStats windows', () => {
  it('rates come from the traffic counters sampled each second', () => {
    const stats = new ReplicationStats();
    stats.sampleRates(T0);
    for (let i = 0; i < 20; i++) stats.countSent('delta', 100);
    for (let i = 0; i < 10; i++) stats.countReceived('ack', 50);
    stats.sampleRates(T0 + 2000);
    expect(stats.rates()).toEqual({ messagesOut: 10, bytesOut: 1000, messagesIn: 5, bytesIn: 250, windowSeconds: 2 });
  });

  it('records lag, and the snapshot for /cluster stays plain counters', () => {
    const stats = new ReplicationStats();
    stats.recordLag(3, T0);
    stats.recordLag(5, T0);
    expect(stats.lag(T0)).toMatchObject({ samples: 2, maxMs: 5 });
    expect(stats.lagTotals()).toEqual({ count: 2, sumMs: 8 });
    stats.sampleRates(T0);
    const snapshot = stats.snapshot();
    expect(
      Object.values(snapshot).every(
        (v) => typeof v === 'number' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
      ),
    ).toBe(true);
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
    expect(snapshot).not.toHaveProperty('rates');
    expect(snapshot).not.toHaveProperty('lag');
  });
});
