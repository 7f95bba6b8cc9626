/**
 * `AckTracker`: waits until every expected member acknowledged a message, a member leaves, or time
 * runs out. A message still unacknowledged after a while is sent again to the members that did not
 * answer (the message or its ack may have been lost: a NATS server of a cluster died with it in its
 * buffers, or the sender's reconnect had not yet reached the other servers); applying it twice is
 * harmless (the session merge is idempotent) and a second ack of one id counts once.
 */

/** Sends a message again to the members that have not acknowledged it yet. */
export type Resend = (members: string[]) => void;

interface Waiter {
  readonly pending: Set<string>;
  readonly done: (timedOut: string[]) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  /** When the wait began. */
  readonly since: number;
  readonly resend: Resend | undefined;
  /** The next retransmission. */
  retry?: ReturnType<typeof setTimeout>;
}

/**
 * How long a member may stay silent (no ack of any message) while an acknowledgement from it is
 * awaited before it is checked, and again every as long while it stays so: a ping that finds a dead
 * process's subject gone ends the wait at once. A member that acknowledged another message meanwhile
 * is alive, merely late, and is not checked; one that is checked and answers (or is paused) stays.
 */
export const ACK_LATE_MS = 10;

/**
 * When an unacknowledged message is first sent again; each later retransmission waits twice as long
 * as the one before (100, 200, 400 ms, ...), until the wait times out. Late enough that a loaded
 * receiver's ordinary delay costs no extra traffic, early enough that a lost message costs well
 * under a second.
 */
export const RESEND_AFTER_MS = 100;

/** Tracks outstanding acknowledgements by message id. */
export class AckTracker {
  readonly #waiters = new Map<string, Waiter>();
  /** When each member last acknowledged anything. */
  readonly #lastAck = new Map<string, number>();
  /** Checks every `ACK_LATE_MS` for silent members while any message waits. */
  #lateCheck?: ReturnType<typeof setInterval>;

  constructor(
    /** Called every `ACK_LATE_MS` with the members silent since a wait for them began at least `ACK_LATE_MS` ago. */
    private readonly onLate: (members: string[]) => void = () => {},
    /** False for a member not to wait for (its connection is gone: it catches up once back). */
    private readonly reachable: (member: string) => boolean = () => true,
    /** Called with how many members a message was just sent again to (`stats.messagesResent`). */
    private readonly onResend: (count: number) => void = () => {},
  ) {}

  /**
   * Resolves with the members that did not acknowledge within `timeoutMs` (empty when all did).
   * Resolves at once when `members` is empty or none is reachable. With `resend`, the message is sent again to the
   * members still pending after `RESEND_AFTER_MS`, then at doubling intervals, and on `resendAll`.
   */
  wait(id: string, members: Iterable<string>, timeoutMs: number, resend?: Resend): Promise<string[]> {
    const pending = new Set([...members].filter((member) => this.reachable(member)));
    if (pending.size === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#finish(id, [...pending]), timeoutMs);
      const waiter: Waiter = { pending, done: resolve, timer, since: Date.now(), resend };
      this.#waiters.set(id, waiter);
      this.#lateCheck ??= setInterval(() => this.#checkLate(), ACK_LATE_MS);
      if (resend) this.#scheduleResend(id, waiter, RESEND_AFTER_MS);
    });
  }

  /** Messages still waiting for acknowledgements. */
  get size(): number {
    return this.#waiters.size;
  }

  /** Records an acknowledgement from `node`. */
  acknowledge(id: string, node: string): void {
    this.#lastAck.set(node, Date.now());
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    waiter.pending.delete(node);
    if (waiter.pending.size === 0) this.#finish(id, []);
  }

  /** A member left (or cannot be reached): no waiter expects it any longer. */
  forget(node: string): void {
    this.#lastAck.delete(node);
    for (const [id, waiter] of this.#waiters) {
      if (waiter.pending.delete(node) && waiter.pending.size === 0) this.#finish(id, []);
    }
  }

  /**
   * Sends every waiting message again to its pending members now (this node's connection is back:
   * what it sent just before the disconnect, or the acks to it, may be lost).
   */
  resendAll(): void {
    for (const waiter of this.#waiters.values()) this.#resend(waiter);
  }

  /** Stops waiting for one message (it was never sent). */
  cancel(id: string): void {
    this.#finish(id, []);
  }

  /** Resolves every waiter now (shutdown); members still pending count as timed out. */
  releaseAll(): void {
    for (const [id, waiter] of this.#waiters) this.#finish(id, [...waiter.pending]);
  }

  /** Names the members silent since a wait for them began at least `ACK_LATE_MS` ago (waiters are in start order). */
  #checkLate(): void {
    const now = Date.now();
    const silent = new Set<string>();
    for (const waiter of this.#waiters.values()) {
      if (now - waiter.since < ACK_LATE_MS) break;
      for (const member of waiter.pending) if ((this.#lastAck.get(member) ?? 0) < waiter.since) silent.add(member);
    }
    if (silent.size > 0) this.onLate([...silent]);
  }

  #scheduleResend(id: string, waiter: Waiter, delayMs: number): void {
    waiter.retry = setTimeout(() => {
      if (this.#waiters.get(id) !== waiter) return;
      this.#resend(waiter);
      this.#scheduleResend(id, waiter, delayMs * 2);
    }, delayMs);
  }

  #resend(waiter: Waiter): void {
    if (!waiter.resend || waiter.pending.size === 0) return;
    this.onResend(waiter.pending.size);
    waiter.resend([...waiter.pending]);
  }

  #finish(id: string, timedOut: string[]): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    clearTimeout(waiter.timer);
    clearTimeout(waiter.retry);
    if (this.#waiters.size === 0) {
      clearInterval(this.#lateCheck);
      this.#lateCheck = undefined;
    }
    waiter.done(timedOut);
  }
}
