/**
 * `SnapshotWriter`: write-behind of the replication log into the snapshot store. Every node notes
 * which sessions each log message touched; the snapshot leader (the oldest ready member) writes
 * those sessions once per interval, however often they changed (coalescing), then advances the
 * checkpoint: every change up to that sequence is in the store. Other nodes forget what the
 * checkpoint covers, so whoever becomes leader next knows exactly what is still unwritten.
 *
 * Failures: items written before a failure are not written again; an item the store can never hold
 * is reported, counted and skipped, so it cannot hold the checkpoint back. Sessions this node no
 * longer holds are forgotten, so the unwritten set stays within the sessions held.
 */
import { SnapshotWriteError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { Backoff } from '../retry.ts';
import { expiresAt, type SessionState } from '../session/state.ts';
import type { SnapshotItem, SnapshotStore, SnapshotWriteResult } from './snapshot-store.ts';

/** Extra time an item outlives its session's timeout before DynamoDB's TTL may delete it. */
const TTL_GRACE_SECONDS = 3600;
/**
 * Extra time a tombstone outlives the session's timeout: the log's default retention (24 h), so a
 * writer that stalled for as long as a replay could still cover cannot bring an ended session back.
 */
const TOMBSTONE_GRACE_SECONDS = 24 * 3600;

/** Counters of the writer, shown on `/cluster`. */
export interface SnapshotWriterStatus {
  leader: boolean;
  /** Sessions changed since the last checkpoint. */
  dirty: number;
  checkpoint?: number;
  itemsWritten: number;
  itemsSuperseded: number;
  /** Items the store can never hold (over its size limit): skipped, so they cannot hold the checkpoint back. */
  itemsRejected: number;
  flushes: number;
  errors: number;
  lastError?: string;
}

/** Write-behind settings. */
export interface SnapshotWriterOptions {
  /** How often the leader writes. */
  readonly intervalMs: number;
  /** How often other nodes read the checkpoint to forget what it covers. */
  readonly checkpointPollMs: number;
}

/** Writes dirty sessions and checkpoints from the snapshot leader. */
export class SnapshotWriter {
  readonly status: SnapshotWriterStatus = {
    leader: false,
    dirty: 0,
    itemsWritten: 0,
    itemsSuperseded: 0,
    itemsRejected: 0,
    flushes: 0,
    errors: 0,
  };
  /** Sessions changed since the last checkpoint, with the sequence of their latest change. */
  readonly #dirty = new Map<string, number>();
  #applied = 0;
  #timer?: ReturnType<typeof setInterval>;
  #flushing?: Promise<void>;
  #lastPoll = 0;
  #backoffUntil = 0;
  readonly #backoff: Backoff;

  constructor(
    private readonly store: SnapshotStore,
    private readonly stateOf: (key: string) => SessionState | undefined,
    private readonly isLeader: () => boolean,
    private readonly options: SnapshotWriterOptions,
    private readonly logger: Logger,
  ) {
    this.#backoff = new Backoff({ initialDelayMs: options.intervalMs, maxDelayMs: 30_000 });
  }

  /** A log message with sequence `seq` changed these sessions. */
  noteApplied(seq: number, keys: Iterable<string>): void {
    for (const key of keys) this.#dirty.set(key, seq);
    if (seq > this.#applied) this.#applied = seq;
    this.status.dirty = this.#dirty.size;
  }

  /** The checkpoint a fresh node loaded: nothing at or below it needs writing. */
  startAt(checkpoint: number | undefined): void {
    if (checkpoint !== undefined) {
      this.status.checkpoint = checkpoint;
      if (checkpoint > this.#applied) this.#applied = checkpoint;
    }
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.tick(), this.options.intervalMs);
  }

  /** Stops the timer after a last flush when this node is the leader. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.isLeader()) await this.flush();
  }

  /** One timer tick: the leader flushes; others prune what the checkpoint covers. */
  async tick(): Promise<void> {
    const now = Date.now();
    if (now < this.#backoffUntil) return;
    this.status.leader = this.isLeader();
    if (this.status.leader) return this.flush();
    if (now - this.#lastPoll < this.options.checkpointPollMs) return;
    this.#lastPoll = now;
    this.#forgetGone();
    try {
      const checkpoint = await this.store.readCheckpoint();
      if (checkpoint !== undefined) this.#forgetUpTo(checkpoint);
    } catch (error) {
      this.#failed(error);
    }
  }

  /** Writes every dirty session and advances the checkpoint (one flush at a time). */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    const upTo = this.#applied;
    if (this.#dirty.size === 0 && upTo === this.status.checkpoint) return;
    const items: SnapshotItem[] = [];
    const captured = new Map<string, number>();
    for (const [key, seq] of this.#dirty) {
      const state = this.stateOf(key);
      if (!state) {
        this.#dirty.delete(key); // No longer held here: nothing to write.
        continue;
      }
      captured.set(key, seq);
      const expiresAt = expiryOf(state);
      items.push({ state, version: upTo, ...(expiresAt !== undefined ? { expiresAt } : {}) });
    }
    try {
      const result = await this.store.write(items);
      this.#count(result);
      this.#forgetWritten(captured);
      await this.store.writeCheckpoint(upTo);
      this.#forgetUpTo(upTo);
      this.status.flushes++;
      this.#backoff.reset();
    } catch (error) {
      if (error instanceof SnapshotWriteError) {
        // What was written stays written: only the rest is tried again.
        this.#count(error.done);
        this.#forgetWritten(captured, new Set(error.unwritten));
      }
      this.#failed(error);
    }
  }

  #count(result: SnapshotWriteResult): void {
    this.status.itemsWritten += result.written;
    this.status.itemsSuperseded += result.superseded;
    const rejected = result.rejected ?? [];
    if (rejected.length === 0) return;
    this.status.itemsRejected += rejected.length;
    this.logger.warn(
      { store: this.store.kind, rejected: rejected.slice(0, 10), count: rejected.length },
      'snapshot items the store can never hold: skipped',
    );
  }

  /** Forgets the sessions a write covered (unless they changed again meanwhile): they are not written again. */
  #forgetWritten(captured: Map<string, number>, unwritten: ReadonlySet<string> = new Set()): void {
    for (const [key, seq] of captured) if (!unwritten.has(key) && this.#dirty.get(key) === seq) this.#dirty.delete(key);
    this.status.dirty = this.#dirty.size;
  }

  /** Forgets sessions this node no longer holds: nothing left to write for them, and the set stays bounded. */
  #forgetGone(): void {
    for (const key of this.#dirty.keys()) if (!this.stateOf(key)) this.#dirty.delete(key);
    this.status.dirty = this.#dirty.size;
  }

  #forgetUpTo(checkpoint: number): void {
    for (const [key, seq] of this.#dirty) if (seq <= checkpoint) this.#dirty.delete(key);
    this.status.dirty = this.#dirty.size;
    if (this.status.checkpoint === undefined || checkpoint > this.status.checkpoint)
      this.status.checkpoint = checkpoint;
  }

  #failed(error: unknown): void {
    this.status.errors++;
    this.status.lastError = (error as Error).message;
    const delay = this.options.intervalMs + this.#backoff.next();
    this.#backoffUntil = Date.now() + delay;
    this.logger.warn(
      { store: this.store.kind, error: this.status.lastError, retryInMs: delay },
      'snapshot write failed, will retry',
    );
  }
}

/**
 * When the store may forget an item (epoch seconds): a live session's expiry (the earlier of its idle
 * timeout after the last access and its absolute lifetime), plus grace; a tombstone lives at least as
 * long as any copy of the session could (from now, since a stale writer may still hold one), plus a
 * day. Undefined for sessions that never expire.
 */
function expiryOf(state: SessionState): number | undefined {
  const seconds = state.maxInactive.seconds;
  if (!state.ended) {
    const deadline = expiresAt(state);
    return deadline === undefined ? undefined : Math.ceil(deadline / 1000) + TTL_GRACE_SECONDS;
  }
  // A copy outlives no lifetime: with no idle timeout, the lifetime bounds the tombstone.
  const end = seconds > 0 ? Math.max(Date.now(), state.lastAccessedAt) + seconds * 1000 : expiresAt(state);
  return end === undefined ? undefined : Math.ceil(end / 1000) + TOMBSTONE_GRACE_SECONDS;
}
