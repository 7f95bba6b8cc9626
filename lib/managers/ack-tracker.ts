/** `AckTracker`: waits until every expected member acknowledged a message, a member leaves, or time runs out. */

interface Waiter {
  readonly pending: Set<string>;
  readonly done: (timedOut: string[]) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  readonly late: ReturnType<typeof setTimeout>;
}

/**
 * How long an acknowledgement may take before its member is checked (a ping that finds a dead
 * process's subject gone ends the wait at once); a late but live member is not dropped for it.
 */
export const ACK_LATE_MS = 20;

/** Tracks outstanding acknowledgements by message id. */
export class AckTracker {
  readonly #waiters = new Map<string, Waiter>();

  constructor(
    /** Called with the members still pending `ACK_LATE_MS` after a wait began. */
    private readonly onLate: (members: string[]) => void = () => {},
  ) {}

  /**
   * Resolves with the members that did not acknowledge within `timeoutMs` (empty when all did).
   * Resolves at once when `members` is empty.
   */
  wait(id: string, members: Iterable<string>, timeoutMs: number): Promise<string[]> {
    const pending = new Set(members);
    if (pending.size === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#finish(id, [...pending]), timeoutMs);
      const late = setTimeout(
        () => {
          if (this.#waiters.get(id)?.pending === pending) this.onLate([...pending]);
        },
        Math.min(ACK_LATE_MS, timeoutMs),
      );
      this.#waiters.set(id, { pending, done: resolve, timer, late });
    });
  }

  /** Messages still waiting for acknowledgements. */
  get size(): number {
    return this.#waiters.size;
  }

  /** Records an acknowledgement from `node`. */
  acknowledge(id: string, node: string): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    waiter.pending.delete(node);
    if (waiter.pending.size === 0) this.#finish(id, []);
  }

  /** A member left: no waiter expects it any longer. */
  forget(node: string): void {
    for (const [id, waiter] of this.#waiters) {
      if (waiter.pending.delete(node) && waiter.pending.size === 0) this.#finish(id, []);
    }
  }

  /** Stops waiting for one message (it was never sent). */
  cancel(id: string): void {
    this.#finish(id, []);
  }

  /** Resolves every waiter now (shutdown); members still pending count as timed out. */
  releaseAll(): void {
    for (const [id, waiter] of this.#waiters) this.#finish(id, [...waiter.pending]);
  }

  #finish(id: string, timedOut: string[]): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    clearTimeout(waiter.timer);
    clearTimeout(waiter.late);
    waiter.done(timedOut);
  }
}
