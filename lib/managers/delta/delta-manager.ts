/**
 * `DeltaManager` (Tomcat's DeltaManager, all-to-all): every node holds every session. A request's
 * changes go to every member as one message on `<prefix>.<cluster>.delta`; receivers merge them by
 * the CRDT rule, so order and duplicates do not matter. Expiry runs on every node's sweep.
 *
 * This file holds commit and apply; `publisher.ts` sends, `expiry.ts` expires, `resync.ts` repairs
 * gaps without a log, and `log-replica.ts` joins and follows through the replication log.
 */
import type { Incoming } from '../../bus/cluster-bus.ts';
import { SESSION_PREFIX_LENGTH } from '../../logger.ts';
import type { ReplicationLog } from '../../log/replication-log.ts';
import type { SessionChanges } from '../../session/session.ts';
import type { SessionState } from '../../session/state.ts';
import type { SnapshotStore } from '../../store/snapshot-store.ts';
import type { SnapshotWriterOptions } from '../../store/snapshot-writer.ts';
import { ReplicaCore } from '../core.ts';
import type { CommitOptions, CommonManagerOptions, ManagerParts, SessionManager, SessionSummary, StateTransferStatus } from '../manager.ts';
import { StallAwareExpiry } from './expiry.ts';
import { LogReplica } from './log-replica.ts';
import { DeltaPublisher } from './publisher.ts';
import { Resync, RESYNC_ID } from './resync.ts';

/** Timing, limits and persistence of the delta manager. */
export interface DeltaManagerOptions extends CommonManagerOptions {
  /** The replication log (JetStream): replayed by joining, restarted and thawed nodes; needed for `persist`. */
  readonly log?: ReplicationLog;
  /** The snapshot store (DynamoDB): where a joining node loads sessions instead of asking a peer (needs `log`). */
  readonly store?: SnapshotStore;
  /** Write-behind timing of the snapshot store (used with `store`). */
  readonly snapshot: SnapshotWriterOptions;
  /**
   * Without a log: after the channel reconnects, or after this process stalled (paused, frozen,
   * blocked event loop) for longer than this, the node may have missed deltas (core NATS does not
   * keep them), so it waits this long for members to be back and merges every ready member's state
   * (a resync). The cluster passes `memberDropMs`. @default unset: no resync
   */
  readonly resyncAfterMs?: number;
}

/** All-to-all replication. */
export class DeltaManager implements SessionManager {
  readonly name = 'delta';
  /** The core's status object, updated in place as the join goes. */
  readonly stateTransfer: StateTransferStatus;
  readonly #core: ReplicaCore;
  readonly #publisher: DeltaPublisher;
  readonly #expiry: StallAwareExpiry;
  readonly #resync?: Resync;
  readonly #log?: LogReplica;

  constructor(parts: ManagerParts, options: DeltaManagerOptions) {
    const source = { keys: () => this.#core.table.keys(), item: (key: string) => ({ state: this.#core.table.get(key) }) };
    const core = new ReplicaCore(parts, { ...options, source });
    this.#core = core;
    this.stateTransfer = core.stateTransfer;
    this.#publisher = new DeltaPublisher(core, options);
    const { log, resyncAfterMs } = options;
    if (log) this.#log = new LogReplica(core, { ...options, log });
    else if (resyncAfterMs !== undefined) this.#resync = new Resync(core, { ...options, resyncAfterMs, maxBytes: () => this.#publisher.maxBytes });
    this.#expiry = new StallAwareExpiry(core, options, () => this.#resync?.running ?? false, (state) => this.#expire(state));
  }

  /** Snapshot and log progress for `/cluster`, when a log is configured. */
  get persistence(): Record<string, unknown> | undefined {
    return this.#log?.persistence;
  }

  get ready(): boolean {
    return this.#core.ready;
  }

  async start(): Promise<void> {
    const core = this.#core;
    const { bus } = core.parts;
    if (this.#log) await this.#log.start();
    else await core.joinFromPeer(bus.subjects.delta, (incoming) => this.#applyDelta(incoming), (page) => core.applyStates(page.sessions));
    this.#expiry.start();
    core.serve((incoming) => this.#answerFirstPage(incoming), () => this.#expiry.tick());
    this.#resync?.watch();
  }

  async stop(): Promise<void> {
    this.#resync?.stop();
    this.#publisher.flush();
    await this.#core.stop(async () => this.#log?.stop());
  }

  /** Handles a message on this node's own subject that belongs to the manager (acks, state pages). */
  onDirect(incoming: Incoming): void {
    this.#core.onDirect(incoming);
  }

  find(key: string): SessionState | undefined {
    const state = this.#core.table.live(key);
    if (state && this.#expiry.expireIfIdle(state, Date.now())) return undefined;
    return state;
  }

  async resolve(key: string): Promise<SessionState | undefined> {
    return this.find(key);
  }

  /**
   * Every session is on every member already, so draining only waits until the writes sent so far
   * are acknowledged (ack mode) and the channel has flushed what is queued.
   */
  async drain(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 0)); // Writes batched for this event-loop turn leave first.
    while (this.#core.acks.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    await this.#core.parts.bus.flush();
  }

  drainRemaining(): number {
    return this.#core.acks.size;
  }

  async commit(changes: SessionChanges, options: CommitOptions): Promise<boolean | void> {
    const { table, pending, parts } = this.#core;
    const now = Date.now();
    for (const delta of changes.deltas) {
      const outcome = table.merge(delta);
      if (outcome.created) parts.stats.sessionsCreated++;
      if (outcome.ended) parts.stats.sessionsInvalidated++;
    }
    if (!options.replicate) {
      for (const delta of changes.deltas) pending.stash(delta);
      return;
    }
    // An unchanged session is sent only as a rate-limited touch that keeps it alive elsewhere.
    const outgoing = changes.deltas.flatMap((delta) => pending.due(delta, changes.modified, now) ?? []);
    if (outgoing.length === 0) return;
    return this.#publisher.publish(outgoing, options.mode, options.route);
  }

  /** Expires idle sessions everywhere and forgets old tombstones (the timer calls it unless this process stalled). */
  sweep(now: number): void {
    this.#expiry.sweep(now);
  }

  activeSessions(): number {
    return this.#core.table.liveCount;
  }

  sessionCounts(): Record<string, number> {
    return { total: this.#core.table.liveCount, tombstones: this.#core.table.tombstoneCount };
  }

  /** The state this node holds for a key, tombstones included (for tests and diagnostics). */
  inspect(key: string): SessionState | undefined {
    return this.#core.table.get(key);
  }

  /** Live sessions this node holds. */
  liveSessions(): IterableIterator<SessionState> {
    return this.#core.table.liveStates();
  }

  /** Summaries of the live sessions held here, at most `limit` (`SessionManager.summaries`). */
  summaries(limit: number): { total: number; sessions: SessionSummary[] } {
    const sessions: SessionSummary[] = [];
    for (const state of this.liveSessions()) {
      if (sessions.length >= limit) break;
      const { key, createdAt, lastAccessedAt, lastAccessedBy } = state;
      sessions.push({ key: key.slice(0, SESSION_PREFIX_LENGTH), createdAt, lastAccessedAt, lastAccessedBy });
    }
    return { total: this.#core.table.liveCount, sessions };
  }

  /** Ends an idle session here and everywhere. */
  #expire(state: SessionState): void {
    void this.#publisher.publish([this.#core.endSession(state, 'expired')], 'async');
  }

  /** With a log, the first page of a state transfer waits until this node caught up with it (see `LogReplica.catchUp`). */
  #answerFirstPage(incoming: Incoming): void {
    if (this.#log) void this.#log.catchUp().then(() => this.#answer(incoming));
    else this.#answer(incoming);
  }

  #answer(incoming: Incoming): void {
    try {
      this.#core.donor.answer(incoming);
    } catch (error) {
      this.#core.parts.logger.error({ joiner: incoming.message.node, error: (error as Error).message }, 'state transfer: could not answer');
    }
  }

  #applyDelta({ message, reply }: Incoming): void {
    if (message.kind !== 'delta') return;
    const { id, s: states, r } = message.body;
    this.#core.applyStates(states);
    // A resync resends old writes on purpose: they are no sample of replication lag.
    if (!id.startsWith(RESYNC_ID)) this.#core.recordLag(states);
    const ackTo = r ?? reply;
    if (ackTo) this.#core.parts.bus.send(ackTo, 'ack', { id });
  }
}
