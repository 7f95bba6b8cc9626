/**
 * `SnapshotWriter`: write-behind of the replication log into the snapshot store. Every node notes
 * which sessions each log message touched; the snapshot leader (the oldest ready member) writes
 * those sessions once per interval, however often they changed (coalescing), then advances the
 * checkpoint: every change up to that sequence is in the store. Other nodes forget what the
 * checkpoint covers, so whoever becomes leader next knows exactly what is still unwritten.
 */
import type { Logger } from '../logger.ts';
import { expiresAt, type SessionState } from '../session/state.ts';
import type { SnapshotItem, SnapshotStore } from './snapshot-store.ts';

/** Extra time an item outlives its session's timeout before DynamoDB's TTL may delete it. */
const TTL_GRACE_SECONDS = 3600;

/** Counters of the writer, shown on `/cluster`. */
export interface SnapshotWriterStatus {
  leader: boolean;
  /** Sessions changed since the last checkpoint. */
  dirty: number;
  checkpoint?: number;
  itemsWritten: number;
  itemsSuperseded: number;
  flushes: number;
  errors: number;
  lastError?: string;
}

/** Write-behind settings. */
export interface SnapshotWriterOptions {
  /** How often the leader writes; default 1000 ms. */
  readonly intervalMs: number;
  /** How often other nodes read the checkpoint to forget what it covers; default 5000 ms. */
  readonly checkpointPollMs: number;
}

/** Writes dirty sessions and checkpoints from the snapshot leader. */
export class SnapshotWriter {
  readonly status: SnapshotWriterStatus = { leader: false, dirty: 0, itemsWritten: 0, itemsSuperseded: 0, flushes: 0, errors: 0 };
  readonly #dirty = new Map<string, number>();
  #applied = 0;
  #timer?: ReturnType<typeof setInterval>;
  #flushing?: Promise<void>;
  #lastPoll = 0;
  #backoffUntil = 0;
  #consecutiveErrors = 0;

  constructor(
    private readonly store: SnapshotStore,
    private readonly stateOf: (key: string) => SessionState | undefined,
    private readonly isLeader: () => boolean,
    private readonly options: SnapshotWriterOptions,
    private readonly logger: Logger,
  ) {}

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
    for (const key of this.#dirty.keys()) {
      const state = this.stateOf(key);
      if (!state) continue;
      // DynamoDB's TTL: the earlier of the idle timeout and the absolute lifetime, plus a grace.
      const deadline = expiresAt(state);
      const ttl = deadline !== undefined ? Math.ceil(deadline / 1000) + TTL_GRACE_SECONDS : undefined;
      items.push({ state, version: upTo, ...(ttl !== undefined ? { expiresAt: ttl } : {}) });
    }
    try {
      const result = await this.store.write(items);
      this.status.itemsWritten += result.written;
      this.status.itemsSuperseded += result.superseded;
      await this.store.writeCheckpoint(upTo);
      this.#forgetUpTo(upTo);
      this.status.flushes++;
      this.#consecutiveErrors = 0;
    } catch (error) {
      this.#failed(error);
    }
  }

  #forgetUpTo(checkpoint: number): void {
    for (const [key, seq] of this.#dirty) if (seq <= checkpoint) this.#dirty.delete(key);
    this.status.dirty = this.#dirty.size;
    if (this.status.checkpoint === undefined || checkpoint > this.status.checkpoint) this.status.checkpoint = checkpoint;
  }

  #failed(error: unknown): void {
    this.status.errors++;
    this.#consecutiveErrors++;
    this.status.lastError = (error as Error).message;
    const delay = Math.min(30_000, this.options.intervalMs * 2 ** Math.min(5, this.#consecutiveErrors));
    this.#backoffUntil = Date.now() + delay;
    this.logger.warn({ store: this.store.kind, error: this.status.lastError, retryInMs: delay }, 'snapshot write failed, will retry');
  }
}
