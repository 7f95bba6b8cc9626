/**
 * One backoff and retry policy for every retry loop in the library (DynamoDB transactions, the
 * snapshot writer, SNS publishing, SQS long polling). The delays come from cockatiel's exponential
 * backoff with decorrelated jitter, so nodes that failed together do not retry together. The loop is
 * ours because cockatiel's `RetryPolicy` waits out a delay even when its signal aborts, and a
 * closing channel must not wait for its next attempt.
 */
import { ExponentialBackoff, type IBackoff } from 'cockatiel';

/** How the delays between attempts grow. */
export interface BackoffOptions {
  /**
   * Roughly the first delay, in milliseconds (later ones about double each time, with jitter).
   * @default 50
   */
  readonly initialDelayMs?: number;
  /**
   * The longest delay, in milliseconds.
   * @default 5000
   */
  readonly maxDelayMs?: number;
}

/**
 * Growing, jittered delays for a caller that keeps its own schedule: `next()` after each failure
 * gives the time to wait, `reset()` after a success starts over.
 */
export class Backoff {
  readonly #factory: ExponentialBackoff<unknown>;
  #current?: IBackoff<unknown>;

  constructor({ initialDelayMs = 50, maxDelayMs = 5000 }: BackoffOptions = {}) {
    this.#factory = new ExponentialBackoff({ initialDelay: initialDelayMs, maxDelay: maxDelayMs });
  }

  /** The delay before the next attempt, in milliseconds. */
  next(): number {
    this.#current = this.#current ? this.#current.next(undefined) : this.#factory.next();
    return this.#current.duration;
  }

  /** Starts over from the first delay (after a success). */
  reset(): void {
    this.#current = undefined;
  }
}

/** When {@link retrying} tries again. */
export interface RetryOptions extends BackoffOptions {
  /** Whether a failure is worth another attempt; anything else rejects at once. */
  readonly isRetryable: (error: unknown) => boolean;
  /**
   * Attempts in all, the first included.
   * @default Infinity
   */
  readonly maxAttempts?: number;
  /** Ends the waiting: once aborted, no further attempt starts and the last failure rejects. */
  readonly signal?: AbortSignal;
  /** Called for each failure that will be retried, before waiting `delayMs`. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `operation` until it resolves, fails with an error `isRetryable` refuses, has run
 * `maxAttempts` times, or `signal` aborts; then rejects with the last failure.
 */
export async function retrying<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { isRetryable, maxAttempts = Number.POSITIVE_INFINITY, signal, onRetry } = options;
  const backoff = new Backoff(options);
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (attempt >= maxAttempts || signal?.aborted || !isRetryable(error)) throw error;
      const delayMs = backoff.next();
      onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, signal);
      if (signal?.aborted) throw error;
    }
  }
}

/** Waits `ms`, or less when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
