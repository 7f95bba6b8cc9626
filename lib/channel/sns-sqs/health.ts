/**
 * How the SNS/SQS channel judges AWS failures and reports its status: network errors, 5xx and
 * throttling mean the broker is unreachable for now (`disconnected` until a call succeeds again,
 * `connected`); a 4xx is a refusal (`error`), reported each time.
 */
import type { ChannelStatus } from '../channel.ts';

/** Network errors, 5xx and throttling: worth retrying. A 4xx refusal (permissions, validation, missing queue) is not. */
export function isTransient(error: unknown): boolean {
  const e = error as { $metadata?: { httpStatusCode?: number }; name?: string } | undefined;
  const status = e?.$metadata?.httpStatusCode;
  if (/Throttl/i.test(e?.name ?? '')) return true;
  return status === undefined || status >= 500 || status === 429;
}

/** A call cut short by an abort signal (closing). */
export function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || /abort/i.test(error.message));
}

/** `Name: message` of an error, for status details and logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** The channel's connection state and its listeners. */
export class ChannelHealth {
  readonly #listeners: Array<(status: ChannelStatus, detail?: string) => void> = [];
  #healthy = true;
  #closed = false;

  /** Registers a listener for status changes. */
  listen(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#listeners.push(listener);
  }

  /** A call succeeded: `connected` again after a `disconnected`. */
  up(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.emit('connected');
  }

  /** A call failed: `disconnected` (once) when transient, else `error`; aborts while closing are not failures. */
  fail(error: unknown, what: string): void {
    if (this.#closed && isAbort(error)) return;
    const detail = `${what}: ${describeError(error)}`;
    if (!isTransient(error)) {
      this.emit('error', detail);
    } else if (this.#healthy) {
      this.#healthy = false;
      this.emit('disconnected', detail);
    }
  }

  /** The channel is closing: aborted calls from now on are expected. */
  closing(): void {
    this.#closed = true;
  }

  /** Tells every listener; a listener that throws does not stop the others. */
  emit(status: ChannelStatus, detail?: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(status, detail);
      } catch {
        // A listener error must not break the channel.
      }
    }
  }
}
