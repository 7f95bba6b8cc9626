// Owns: unit tests of lib/retry.ts (the one backoff and retry helper every retry loop uses).
import { describe, expect, it } from 'vitest';
import { Backoff, retrying } from '../../lib/retry.ts';

const transient = Object.assign(new Error('throttled'), { transient: true });
const fatal = new Error('refused');
const isTransient = (error: unknown) => (error as { transient?: boolean }).transient === true;

describe('retrying', () => {
  it('retries retryable failures until the operation succeeds, reporting each retry', async () => {
    const retries: Array<[number, number]> = [];
    let calls = 0;
    const value = await retrying(
      async (attempt) => {
        calls++;
        expect(attempt).toBe(calls);
        if (attempt < 4) throw transient;
        return 'done';
      },
      {
        isRetryable: isTransient,
        initialDelayMs: 1,
        maxDelayMs: 5,
        onRetry: (_, attempt, delayMs) => retries.push([attempt, delayMs]),
      },
    );
    expect(value).toBe('done');
    expect(calls).toBe(4);
    expect(retries.map(([attempt]) => attempt)).toEqual([1, 2, 3]);
    for (const [, delayMs] of retries) expect(delayMs).toBeLessThanOrEqual(5);
  });

  it('rejects at once with an error that is not retryable', async () => {
    let calls = 0;
    const failing = retrying(
      async () => {
        calls++;
        throw fatal;
      },
      { isRetryable: isTransient, initialDelayMs: 1 },
    );
    await expect(failing).rejects.toBe(fatal);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts with the last failure', async () => {
    let calls = 0;
    const failing = retrying(
      async () => {
        calls++;
        throw transient;
      },
      { isRetryable: isTransient, maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 },
    );
    await expect(failing).rejects.toBe(transient);
    expect(calls).toBe(3);
  });

  it('stops waiting when the signal aborts: no further attempt, the last failure rejects at once', async () => {
    const abort = new AbortController();
    let calls = 0;
    const started = Date.now();
    const failing = retrying(
      async () => {
        calls++;
        queueMicrotask(() => abort.abort());
        throw transient;
      },
      { isRetryable: isTransient, initialDelayMs: 10_000, maxDelayMs: 10_000, signal: abort.signal },
    );
    await expect(failing).rejects.toBe(transient);
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('Backoff', () => {
  it('grows with jitter up to maxDelayMs and starts over after reset', () => {
    const backoff = new Backoff({ initialDelayMs: 100, maxDelayMs: 2000 });
    const delays = Array.from({ length: 30 }, () => backoff.next());
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(2000);
    }
    expect(delays.slice(-5).every((delay) => delay === 2000)).toBe(true);
    backoff.reset();
    expect(backoff.next()).toBeLessThan(500);
  });
});
