/**
 * `CatchUpLog`: a `ReplicationLog` decorator for a node that may have been paused (a frozen Lambda
 * environment, a stopped process) and must not serve from what it held before the pause.
 */
import type { LogFollower, LogMessage, ReplicationLog } from './replication-log.ts';

/** What `CatchUpLog.catchUp` found. */
export interface CatchUpResult {
  /** True when every message stored when the catch-up began has been delivered. */
  readonly ok: boolean;
  /** The log's last sequence when the catch-up began (undefined when it could not be read). */
  readonly target?: number;
  /** Messages that were missing when it began. */
  readonly missed: number;
  /** Whether the follower was restarted because it had stalled. */
  readonly restarted: boolean;
  /** How long the catch-up took. */
  readonly ms: number;
}

/** Options of `CatchUpLog`. */
export interface CatchUpLogOptions {
  /**
   * How long a catch-up waits for the running follower before it starts a fresh one.
   * @default 250
   */
  readonly stallMs?: number;
  /** Hears the result of every catch-up that ran (for counters and logs). @default none */
  readonly onCatchUp?: (result: CatchUpResult) => void;
}

/**
 * Wraps the replication log so a paused node can catch up on demand. It remembers the last
 * sequence delivered to the manager; `catchUp` reads the log's last sequence and waits for the
 * follower to deliver it, restarting the follower from the next sequence when nothing arrives
 * within `stallMs` (a pull request that expired or a consumer the server dropped during a long
 * pause is otherwise only noticed after missed heartbeats, tens of seconds later). Messages are
 * handed over once and in order: anything at or below the last one handed over is skipped. When the
 * consumer returns a promise for a message (the delta manager does while it decrypts one), the
 * message counts as delivered once that promise settled: caught up means applied.
 */
export class CatchUpLog implements ReplicationLog {
  readonly name: string;
  readonly #inner: ReplicationLog;
  readonly #stallMs: number;
  readonly #onCatchUp?: (result: CatchUpResult) => void;
  /** The highest sequence handed to the consumer. */
  #received = 0;
  /** The highest sequence the consumer has finished with. */
  #delivered = 0;
  #onMessage?: (message: LogMessage) => unknown;
  #follower?: LogFollower;
  #stopped = false;
  #waiters: Array<{ target: number; resolve: () => void }> = [];
  #running?: Promise<CatchUpResult>;

  constructor(inner: ReplicationLog, options: CatchUpLogOptions = {}) {
    this.#inner = inner;
    this.#stallMs = options.stallMs ?? 250;
    if (options.onCatchUp) this.#onCatchUp = options.onCatchUp;
    this.name = inner.name;
  }

  /** The highest sequence the consumer has finished with. */
  get delivered(): number {
    return this.#delivered;
  }

  ensure(): Promise<void> {
    return this.#inner.ensure();
  }

  append(data: Uint8Array, msgId: string): Promise<number> {
    return this.#inner.append(data, msgId);
  }

  bounds(): Promise<{ first: number; last: number }> {
    return this.#inner.bounds();
  }

  async follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower> {
    this.#onMessage = onMessage;
    this.#received = fromSeq - 1;
    this.#delivered = fromSeq - 1;
    this.#stopped = false;
    this.#follower = await this.#inner.follow(fromSeq, (message) => this.#deliver(message));
    return {
      stop: () => {
        this.#stopped = true;
        this.#follower?.stop();
      },
    };
  }

  /** Waits (at most `timeoutMs`) until everything stored now has been delivered; concurrent calls share one catch-up. */
  catchUp(timeoutMs: number): Promise<CatchUpResult> {
    this.#running ??= this.#catchUp(timeoutMs)
      .then((result) => {
        this.#onCatchUp?.(result);
        return result;
      })
      .finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #catchUp(timeoutMs: number): Promise<CatchUpResult> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    const result = (ok: boolean, extra: Partial<CatchUpResult> = {}): CatchUpResult => ({
      ok,
      missed: 0,
      restarted: false,
      ...extra,
      ms: Date.now() - started,
    });
    let target: number;
    try {
      target = (await withDeadline(this.#inner.bounds(), deadline)).last;
    } catch {
      return result(false);
    }
    const missed = Math.max(0, target - this.#delivered);
    if (missed === 0) return result(true, { target });
    if (await this.#reached(target, Math.min(deadline, Date.now() + this.#stallMs)))
      return result(true, { target, missed });
    // Nothing (or not enough) arrived: the follower stalled during the pause. Start a fresh one.
    let restarted = false;
    if (!this.#stopped && this.#onMessage) {
      const from = this.#received + 1;
      this.#follower?.stop();
      try {
        this.#follower = await withDeadline(
          this.#inner.follow(from, (message) => this.#deliver(message)),
          deadline,
        );
        restarted = true;
      } catch {
        return result(false, { target, missed });
      }
    }
    return result(await this.#reached(target, deadline), { target, missed, restarted });
  }

  #reached(target: number, until: number): Promise<boolean> {
    if (this.#delivered >= target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(
        () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(this.#delivered >= target);
        },
        Math.max(0, until - Date.now()),
      );
      this.#waiters.push(waiter);
    });
  }

  #deliver(message: LogMessage): void {
    if (message.seq <= this.#received) return;
    this.#received = message.seq;
    const handled = this.#onMessage?.(message);
    if (handled instanceof Promise)
      void handled.then(
        () => this.#settled(message.seq),
        () => this.#settled(message.seq),
      );
    else this.#settled(message.seq);
  }

  #settled(seq: number): void {
    if (seq <= this.#delivered) return;
    this.#delivered = seq;
    if (this.#waiters.length === 0) return;
    const done = this.#waiters.filter((w) => w.target <= seq);
    this.#waiters = this.#waiters.filter((w) => w.target > seq);
    for (const waiter of done) waiter.resolve();
  }
}

/** Settles like `promise`, or rejects once `deadline` (epoch ms) passes. */
function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('deadline passed')), Math.max(0, deadline - Date.now()));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error as Error);
      },
    );
  });
}
