// Owns: polling helpers (waitFor a condition, waitForHttp a status) with clear timeout errors.

/** Options for {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 10000). */
  timeoutMs?: number;
  /** Delay between attempts in milliseconds (default 20). */
  intervalMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Polls `fn` until it returns something other than undefined/null/false, and resolves with that value.
 * A throw (or rejection) counts as "not yet". Each attempt is bounded by the remaining time, so a hung
 * attempt cannot outlive the timeout. On timeout throws
 * `Error("timed out after Nms waiting for <what>: <last error or last value>")`.
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  { timeoutMs = 10000, intervalMs = 20 }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const PENDING = new Error("attempt still pending at deadline");
  let last = "";
  for (;;) {
    const remaining = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const attempt = Promise.resolve().then(fn);
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(PENDING), Math.max(remaining, 0));
      });
      const value = await Promise.race([attempt, expired]);
      if (value !== undefined && value !== null && value !== false) return value as T;
      last = `condition not met (last value: ${String(value)})`;
    } catch (e) {
      // A final attempt cut off by the deadline should not hide the previous attempt's more useful error.
      if (e !== PENDING || !last) last = describe(e);
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}: ${last}`);
    await sleep(Math.min(intervalMs, Math.max(deadline - Date.now(), 0)));
  }
}

/** Options for {@link waitForHttp}. */
export interface WaitForHttpOptions extends WaitOptions {
  /** Expected HTTP status (default 200). */
  status?: number;
}

/** Polls `GET url` until it answers `status` (default 200); resolves with that status and the body text. */
export async function waitForHttp(
  url: string,
  { status = 200, timeoutMs = 10000, intervalMs = 50 }: WaitForHttpOptions = {},
): Promise<{ status: number; body: string }> {
  return waitFor(
    `${url} to answer ${status}`,
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.status !== status) throw new Error(`got ${res.status}: ${body.slice(0, 200)}`);
      return { status: res.status, body };
    },
    { timeoutMs, intervalMs },
  );
}
