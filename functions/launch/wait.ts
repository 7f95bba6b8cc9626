/** Waiting for a condition (a server answering, a file appearing) with clear timeout errors. */
import type { TrackedProcess } from './processes.ts';

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. @default 10000 */
  timeoutMs?: number;
  /** Delay between attempts in milliseconds. @default 20 */
  intervalMs?: number;
  /** Stop waiting (rejects with an `AbortError`) when this aborts. */
  signal?: AbortSignal;
  /** Stop waiting when this process exits (rejects with its exit and output). */
  process?: TrackedProcess;
}

/** An `Error` named `AbortError`: the wait was cut short on purpose. */
export function abortError(): Error {
  return Object.assign(new Error('aborted'), { name: 'AbortError' });
}

/** Rejects with an `AbortError` once `signal` aborts. */
export function abortable(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(abortError());
    else signal.addEventListener('abort', () => reject(abortError()), { once: true });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns something other than undefined, null or false, and resolves with it.
 * A throw counts as "not yet"; each attempt is bounded by the time left, so a hung attempt cannot
 * outlive the timeout. Rejects with `timed out after Nms waiting for <what>: <last error or value>`,
 * or earlier when `signal` aborts or `process` exits.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  { timeoutMs = 10_000, intervalMs = 20, signal, process: child }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Error('attempt still pending at deadline');
  let last = '';
  for (;;) {
    if (signal?.aborted) throw abortError();
    if (child?.hasExited) {
      const exit = await child.exited;
      throw new Error(
        `${child.name} exited while waiting for ${what} (code ${exit.code}, signal ${exit.signal})\n${tail(child.output(), 8192).trimEnd()}`,
      );
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(pending), Math.max(deadline - Date.now(), 0));
      });
      const value = await Promise.race([Promise.resolve().then(check), expired]);
      if (value !== undefined && value !== null && value !== false) return value as T;
      last = `condition not met (last value: ${String(value)})`;
    } catch (error) {
      // A final attempt cut off by the deadline should not hide the previous attempt's more useful error.
      if (error !== pending || !last) last = error instanceof Error ? error.message : String(error);
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}: ${last}`);
    await sleep(Math.min(intervalMs, Math.max(deadline - Date.now(), 0)));
  }
}

/** Options of {@link waitForHttp}. */
export interface WaitForHttpOptions extends WaitOptions {
  /** The status to wait for. @default 200 */
  status?: number;
}

/** Polls `GET url` until it answers `status`; resolves with that status and the body text. */
export function waitForHttp(
  url: string,
  { status = 200, intervalMs = 50, ...options }: WaitForHttpOptions = {},
): Promise<{ status: number; body: string }> {
  return waitFor(
    `${url} to answer ${status}`,
    async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await response.text();
      if (response.status !== status) throw new Error(`got ${response.status}: ${body.slice(0, 200)}`);
      return { status: response.status, body };
    },
    { intervalMs, ...options },
  );
}

/** The last `n` characters of `text` (for error messages). */
export function tail(text: string, n = 4000): string {
  return text.length > n ? `...${text.slice(text.length - n)}` : text;
}
