/**
 * `DeltaManager` (Tomcat's DeltaManager, all-to-all): every node holds every session. A request's
 * changes go to every member as one message on `<prefix>.<cluster>.delta`; receivers merge them by
 * the CRDT rule, so order and duplicates do not matter. Expiry runs on every node's sweep.
 *
 * This file holds commit and apply; `publisher.ts` sends, `expiry.ts` expires, `gaps.ts` notices
 * disconnects and stalls, `resync.ts` repairs gaps without a log, and `log-replica.ts` joins, follows
 * and catches up through the replication log.
 */
import type { Incoming } from '../../bus/cluster-bus.ts';
import { SESSION_PREFIX_LENGTH } from '../../logger.ts';
import type { ReplicationLog } from '../../log/replication-log.ts';
import type { Stamp } from '../../session/clock.ts';
import type { SessionChanges } from '../../session/session.ts';
import { cloneState, type SessionState } from '../../session/state.ts';
import type { SnapshotStore } from '../../store/snapshot-store.ts';
import type { SnapshotWriterOptions } from '../../store/snapshot-writer.ts';
import { ReplicaCore } from '../core.ts';
import type {
  CommitOptions,
  CommonManagerOptions,
  ManagerParts,
  SessionManager,
  SessionSummary,
  StateTransferStatus,
} from '../manager.ts';
import { StallAwareExpiry } from './expiry.ts';
import { GapWatch, type GapReason } from '../gaps.ts';
import { type VersionWait, VersionWaiter, type VersionWaitOptions } from '../read-your-writes.ts';
import { LogReplica } from './log-replica.ts';
import { DeltaPublisher } from './publisher.ts';
import { Resync, RESYNC_ID } from './resync.ts';
import { WholeSessions } from './whole-sessions.ts';

/** Timing, limits and persistence of the delta manager. */
export interface DeltaManagerOptions extends CommonManagerOptions {
  /** The replication log (JetStream): replayed by joining, restarted and thawed nodes; needed for `persist`. */
  readonly log?: ReplicationLog;
  /** The snapshot store (DynamoDB): where a joining node loads sessions instead of asking a peer (needs `log`). */
  readonly store?: SnapshotStore;
  /** Write-behind timing of the snapshot store (used with `store`). */
  readonly snapshot: SnapshotWriterOptions;
  /**
   * After the channel reconnects, or after this process stalled (paused, frozen, blocked event loop)
   * for longer than this, the node may have missed deltas (core NATS does not keep them). Without a
   * log it waits this long for members to be back and merges every ready member's state (a resync);
   * with a log it replays the log to the stream's end. Until then it ends no session, and after a
   * gap longer than this it is not ready (`catchingUp`). The cluster passes `memberDropMs`.
   * @default unset: no gap handling
   */
  readonly resyncAfterMs?: number;
  /** How long a member may take to give a session whole to a node that lacks part of it (see `WholeSessions`). */
  readonly fetchTimeoutMs: number;
}

const copyOf = (state: SessionState | undefined) => state && cloneState(state);

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
  readonly #gaps?: GapWatch;
  readonly #whole: WholeSessions;
  /** Log mode: the pending or running catch-up after a gap. */
  #catchUpTimer?: ReturnType<typeof setTimeout>;
  #catchingUpLog = false;
  readonly #versions: VersionWaiter;

  constructor(parts: ManagerParts, options: DeltaManagerOptions) {
    const source = {
      keys: () => this.#core.table.keys(),
      item: (key: string) => ({ state: this.#core.table.get(key) }),
    };
    const core = new ReplicaCore(parts, { ...options, source });
    this.#core = core;
    this.#whole = new WholeSessions(core, options.fetchTimeoutMs);
    this.stateTransfer = core.stateTransfer;
    const { log, resyncAfterMs } = options;
    const gaps = resyncAfterMs !== undefined ? new GapWatch(core, resyncAfterMs) : undefined;
    this.#gaps = gaps;
    this.#publisher = new DeltaPublisher(core, { ...options, connected: () => gaps?.channelUp ?? true });
    if (log)
      this.#log = new LogReplica(core, { ...options, log, apply: (states, from) => this.#whole.apply(states, from) });
    else if (gaps)
      this.#resync = new Resync(
        core,
        { ...options, resyncAfterMs: gaps.afterMs, maxBytes: () => this.#publisher.maxBytes },
        gaps,
      );
    const caughtUp = () =>
      !(gaps?.open ?? false) && (gaps?.channelUp ?? true) && !(this.#resync?.running ?? false) && !this.#catchingUpLog;
    this.#expiry = new StallAwareExpiry(core, options, caughtUp, (state) => this.#expire(state));
    this.#versions = new VersionWaiter(core, {
      state: (key) => core.table.get(key),
      ended: (key) => core.table.get(key)?.ended !== undefined,
      pull: async (node, key, timeoutMs) => {
        const found = await core.fetch(node, key, timeoutMs);
        if (found.kind === 'answered' && found.state) core.applyStates([found.state]);
        return found.kind;
      },
      ...(this.#log ? { catchUp: (deadline: number) => this.#log!.catchUpBy(deadline) } : {}),
    });
  }

  /** Snapshot and log progress for `/cluster`, when a log is configured. */
  get persistence(): Record<string, unknown> | undefined {
    return this.#log?.persistence;
  }

  get ready(): boolean {
    return this.#core.ready && !this.catchingUp;
  }

  /** See `SessionManager.drained` (`GapWatch.drained`). */
  drained(): Promise<void> | undefined {
    return this.#core.ready ? this.#gaps?.drained() : undefined;
  }

  /**
   * True while this node, after a long gap (see `GapWatch.long`), has not caught up:
   * its table may be stale, so it serves no session (the middleware answers 503).
   */
  get catchingUp(): boolean {
    return this.#core.ready && (this.#gaps?.long ?? false);
  }

  async start(): Promise<void> {
    const core = this.#core;
    const { bus } = core.parts;
    if (this.#log) await this.#log.start();
    else
      await core.joinFromPeer(
        bus.subjects.delta,
        (incoming) => this.#applyDelta(incoming),
        (page) => core.applyStates(page.sessions),
      );
    this.#expiry.start();
    core.serve(
      (incoming) => this.#answerFirstPage(incoming),
      () => this.#expiry.tick(),
    );
    this.#gaps?.watch({
      repair: (reason) => this.#repairGap(reason),
      disconnected: () => this.#publisher.disconnected(),
    });
  }

  async stop(): Promise<void> {
    this.#gaps?.stop();
    this.#resync?.stop();
    clearTimeout(this.#catchUpTimer);
    this.#publisher.flush();
    await this.#core.stop(async () => this.#log?.stop());
  }

  /** Handles a message on this node's own subject that belongs to the manager (acks, state pages, deltas sent again). */
  onDirect(incoming: Incoming): void {
    // A transfer's first page asked of this node directly (a join) waits for the log like one asked on the state subject.
    const { message } = incoming;
    if (message.kind === 'state-req' && message.body.transfer === undefined) this.#answerFirstPage(incoming);
    else if (message.kind === 'delta')
      this.#applyDelta(incoming); // An ack-mode delta sent again to this node alone.
    else if (message.kind === 'fetch') this.#answerFetch(incoming);
    else this.#core.onDirect(incoming);
  }

  /** The live session, unless it is idle past its interval in this node's view (see `StallAwareExpiry.admit`). */
  find(key: string): SessionState | undefined {
    const state = this.#core.table.live(key);
    return state && this.#expiry.admit(state, Date.now()) ? state : undefined;
  }

  /**
   * The live session; when this node lacks part of it, once a member gave it whole (see
   * `WholeSessions.settle`). After a state transfer that failed, a key unknown here is asked of the
   * members (the route's node first): the transfer may have missed it.
   */
  async resolve(key: string, route?: string): Promise<SessionState | undefined> {
    await this.#whole.settle(key, route, this.stateTransfer.state === 'failed');
    return this.find(key);
  }

  /** See `SessionManager.awaitVersion`: the writer and the members are asked for the session, the log is replayed to its end. */
  awaitVersion(key: string, version: Stamp, options: VersionWaitOptions): Promise<VersionWait> {
    return this.#versions.wait(key, version, options);
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
    // What the table held before, to undo a change the cluster refused (the request answers 503).
    const before =
      options.replicate && options.mode !== 'async'
        ? changes.deltas.map((delta) => ({ key: delta.key, state: copyOf(table.get(delta.key)) }))
        : [];
    for (const delta of changes.deltas) {
      const outcome = table.merge(delta);
      if (outcome.created) parts.stats.sessionsCreated++;
      if (outcome.ended) parts.stats.sessionsInvalidated++;
    }
    // A filtered request's changes wait for the session's next replicated commit, except an end (a
    // logout, the old key of a regenerated id): no later commit comes for it, so it leaves at once.
    const deltas = options.replicate ? changes.deltas : changes.deltas.filter((delta) => delta.ended);
    if (!options.replicate) for (const delta of changes.deltas) if (!delta.ended) pending.stash(delta);
    if (deltas.length === 0) return;
    // An unchanged session is sent only as a rate-limited touch that keeps it alive elsewhere. A touch
    // (nothing stashed goes with it) is no write to acknowledge: the request is answered at once, it leaves with the turn's batch.
    const touch = !changes.modified && deltas.every((delta) => !pending.stashed(delta.key));
    const outgoing = deltas.flatMap((delta) => pending.due(delta, changes.modified, now) ?? []);
    if (outgoing.length === 0) return;
    const outcome = await this.#publisher.publish(outgoing, options.mode, options.route, touch);
    if (options.mode === 'async') return;
    if (outcome === 'refused') {
      for (const { key, state } of before) {
        table.remove(key);
        if (state) table.merge(state);
        pending.forget(key);
      }
    }
    return outcome === 'sent';
  }

  /** Expires idle sessions everywhere and forgets old tombstones (the timer calls it unless this process stalled). */
  sweep(now: number): void {
    this.#expiry.sweep(now);
    this.#whole.sweep();
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

  /** After a gap: a resync (no log), or (log) the outbox sent again at once and the log replayed to its end. */
  #repairGap(reason: GapReason): void {
    if (this.#resync) this.#resync.schedule(reason);
    else if (this.#log && !this.#catchingUpLog) {
      // The outbox holds whole states (merging them again is harmless): it need not wait for the replay.
      if (reason === 'reconnect') this.#publisher.flushOutbox();
      clearTimeout(this.#catchUpTimer);
      this.#catchUpTimer = setTimeout(() => void this.#catchUpLog(reason), 0);
    }
  }

  /** Log mode: replays to the stream's end, sends the outbox again, closes the gap; tries again while the log is unreachable. */
  async #catchUpLog(reason: GapReason): Promise<void> {
    const log = this.#log;
    const gaps = this.#gaps;
    const { logger, stats } = this.#core.parts;
    if (!log || !gaps || !this.#core.ready || !gaps.channelUp) return;
    this.#catchingUpLog = true;
    const started = Date.now();
    let caughtUp = false;
    try {
      caughtUp = await log.replayToEnd(() => gaps.channelUp);
      if (caughtUp) {
        this.#publisher.flushOutbox();
        gaps.close();
        stats.resyncs++;
        logger.info({ reason, ms: Date.now() - started }, "caught up: log replayed to the stream's end");
      }
    } catch (error) {
      logger.warn({ reason, error: (error as Error).message }, 'catch-up: the log is unreachable');
    } finally {
      this.#catchingUpLog = false;
      if (!caughtUp && this.#core.ready && gaps.channelUp)
        this.#catchUpTimer = setTimeout(() => void this.#catchUpLog(reason), gaps.afterMs);
    }
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
      this.#core.parts.logger.error(
        { joiner: incoming.message.node, error: (error as Error).message },
        'state transfer: could not answer',
      );
    }
  }

  /** A member asks for one session (read-your-writes): the state held here, an ended one included, so the end travels too. */
  #answerFetch({ message, reply }: Incoming): void {
    if (message.kind !== 'fetch' || !reply) return;
    const state = this.#core.table.get(message.body.k);
    this.#core.parts.bus.send(reply, 'fetched', { e: [], s: state ? [state] : [] });
  }

  #applyDelta({ message, reply }: Incoming): void {
    if (message.kind !== 'delta') return;
    const { id, s: states, r } = message.body;
    this.#whole.apply(states, message.node);
    // A resync resends old writes on purpose: they are no sample of replication lag.
    if (!id.startsWith(RESYNC_ID)) this.#core.recordLag(states);
    const ackTo = r ?? reply;
    if (ackTo) this.#core.parts.bus.send(ackTo, 'ack', { id });
  }
}
