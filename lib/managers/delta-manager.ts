/**
 * `DeltaManager` (Tomcat's DeltaManager, all-to-all): every node holds every session. A request's
 * changes go to every member as one message on `<prefix>.<cluster>.delta`; receivers merge them by
 * the CRDT rule, so order and duplicates do not matter. Expiry runs on every node's sweep.
 */
import type { ChannelSubscription } from '../channel/channel.ts';
import type { ClusterBus, Decoded, Incoming } from '../bus/cluster-bus.ts';
import type { MessageBody } from '../codec/envelope.ts';
import { sessionFields, type Logger } from '../logger.ts';
import type { Membership } from '../membership/membership.ts';
import type { HybridClock } from '../session/clock.ts';
import type { SessionObserver } from '../session/events.ts';
import type { SessionChanges } from '../session/session.ts';
import { attributeBytes, cloneState, isIdleExpired, latestStamp, type SessionState } from '../session/state.ts';
import type { ReplicationStats } from '../stats.ts';
import { AckTracker } from './ack-tracker.ts';
import { PendingReplication, touchIntervalFor } from './pending-replication.ts';
import type { CommitOptions, SessionManager, StateTransferStatus } from './manager.ts';
import { SessionTable } from './session-table.ts';
import { DEFAULT_PAGE_LIMITS, fitPayload, receiveState, StateDonor, type PageLimits, type StatePage } from './state-transfer.ts';
import type { LogFollower, LogMessage, ReplicationLog } from '../log/replication-log.ts';
import type { SnapshotStore } from '../store/snapshot-store.ts';
import { SnapshotWriter, type SnapshotWriterOptions } from '../store/snapshot-writer.ts';

/** Timing and limits of the delta manager. */
export interface DeltaManagerOptions {
  /** How long an `ack` commit waits for every member; default 5000 ms. */
  readonly ackTimeoutMs: number;
  /** A joiner's budget for fetching all sessions from a peer; default 60000 ms. */
  readonly stateTransferTimeoutMs: number;
  /** Expiry sweep period; default 10000 ms. */
  readonly sweepIntervalMs: number;
  /** Minimum time between two replicated touches of an unchanged session. */
  readonly touchIntervalMs: number;
  /** How long ended sessions stay as tombstones, absorbing late messages; default 10 min. */
  readonly tombstoneTtlMs: number;
  readonly pageLimits?: PageLimits;
  /** The replication log (JetStream): replayed by joining, restarted and thawed nodes; needed for `persist`. */
  readonly log?: ReplicationLog;
  /** The snapshot store (DynamoDB): where a joining node loads sessions instead of asking a peer. */
  readonly store?: SnapshotStore;
  /** Write-behind timing of the snapshot store. */
  readonly snapshot?: SnapshotWriterOptions;
  /**
   * Without a log: after the channel reconnects, or after this process stalled (paused, frozen,
   * blocked event loop) for longer than this, the node may have missed deltas (core NATS does not
   * keep them), so it waits this long for members to be back and merges every ready member's state
   * (a resync). The cluster passes `memberDropMs`. Unset: no resync.
   */
  readonly resyncAfterMs?: number;
}

/** Why a node merges its peers' state again after it joined. */
export type ResyncReason = 'reconnect' | 'stall';

/** The parts a manager works with, wired by `createCluster`. */
export interface ManagerParts {
  readonly bus: ClusterBus;
  readonly membership: Membership;
  readonly clock: HybridClock;
  readonly stats: ReplicationStats;
  readonly logger: Logger;
  /** Hears every change the session table merges (events, the principal index, schema drift). */
  readonly observer?: SessionObserver;
}

/** Most sessions one async message carries (small deltas: well under the broker's payload limit). */
const BATCH_SESSIONS = 64;
/** Bytes of attribute data above which a batch is split (a single larger delta still goes alone). */
const BATCH_BYTES = 256 * 1024;
/** Id prefix of the delta messages a resync sends (a node's whole state after it reconnected). */
const RESYNC_ID = 'resync-';

/**
 * Runs `task` once the current event-loop turn's I/O callbacks are done: `setImmediate` where the
 * runtime has it (Node, Bun, Deno), a zero timeout elsewhere.
 */
const nextTurn: (task: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (task) => (globalThis as unknown as { setImmediate: (task: () => void) => void }).setImmediate(task)
    : (task) => setTimeout(task, 0);

/** All-to-all replication. */
export class DeltaManager implements SessionManager {
  readonly name = 'delta';
  readonly stateTransfer: StateTransferStatus = { state: 'pending', sessionsReceived: 0, pages: 0 };
  readonly #table = new SessionTable();
  readonly #acks = new AckTracker();
  readonly #pending: PendingReplication;
  readonly #subscriptions: ChannelSubscription[] = [];
  readonly #donor: StateDonor;
  #buffer: Incoming[] | undefined = [];
  #sweepTimer?: ReturnType<typeof setInterval>;
  #ready = false;
  #messageCounter = 0;
  #follower?: LogFollower;
  /** Highest log sequence applied (log mode); the log delivers in order, so everything below it is applied too. */
  #appliedSeq = 0;
  #caughtUp?: { target: number; done: () => void };
  /** Async deltas waiting for the end of the current event-loop turn. */
  readonly #batch: SessionState[] = [];
  #batchScheduled = false;
  /** Resync: the pending timer, whether one runs, and whether another was asked for meanwhile. */
  #resyncTimer?: ReturnType<typeof setTimeout>;
  #resyncing = false;
  /** Expiry pauses after a stall until this time (see `#sweepTick`). */
  #expiryPausedUntil = 0;
  #lastSweepAt = 0;
  #resyncAgain?: ResyncReason;
  #stallWatch?: ReturnType<typeof setInterval>;
  /** False between a channel disconnect and its reconnect (which schedules a resync itself). */
  #channelUp = true;
  /** Keeps log messages in sequence order while protected messages are verified asynchronously. */
  #logChain: Promise<void> = Promise.resolve();
  readonly #writer?: SnapshotWriter;

  constructor(
    private readonly parts: ManagerParts,
    private readonly options: DeltaManagerOptions,
  ) {
    this.#pending = new PendingReplication(options.touchIntervalMs);
    if (parts.observer) this.#table.observe(parts.observer);
    const source = { keys: () => this.#table.keys(), item: (key: string) => ({ state: this.#table.get(key) }) };
    this.#donor = new StateDonor(parts.bus, source, options.pageLimits ?? DEFAULT_PAGE_LIMITS, parts.logger);
    parts.membership.onLeave((member) => this.#acks.forget(member.node));
    if (options.store) {
      this.#writer = new SnapshotWriter(
        options.store,
        (key) => this.#table.get(key),
        () => this.#isSnapshotLeader(),
        options.snapshot ?? { intervalMs: 1000, checkpointPollMs: 5000 },
        parts.logger,
      );
    }
  }

  /** Snapshot and log progress for `/cluster`. */
  get persistence(): Record<string, unknown> | undefined {
    if (!this.options.log) return undefined;
    return { log: this.options.log.name, appliedSeq: this.#appliedSeq, store: this.options.store?.kind, snapshot: this.#writer?.status };
  }

  get ready(): boolean {
    return this.#ready;
  }

  async start(): Promise<void> {
    const { bus, membership } = this.parts;
    if (this.options.log) {
      membership.start();
      await this.#startFromLog(this.options.log);
    } else {
      // Subscribe first and buffer, so nothing published during the transfer is missed.
      this.#subscriptions.push(bus.listen(bus.subjects.delta, (incoming) => this.#onDelta(incoming)));
      membership.start();
      await receiveState(bus, this.options.stateTransferTimeoutMs, (page) => this.#applyStates(page.sessions), this.stateTransfer, this.parts.logger);
      const buffered = this.#buffer ?? [];
      this.#buffer = undefined;
      for (const incoming of buffered) this.#applyDelta(incoming);
    }
    this.#writer?.start();
    this.#subscriptions.push(bus.listen(bus.subjects.state, (incoming) => void this.#answerFirstPage(incoming), { queue: 'donors' }));
    this.#lastSweepAt = Date.now();
    this.#sweepTimer = setInterval(() => this.#sweepTick(), this.options.sweepIntervalMs);
    this.#ready = true;
    membership.setReady(true);
    if (!this.options.log && this.options.resyncAfterMs !== undefined) this.#watchForGaps(this.options.resyncAfterMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweepTimer);
    clearInterval(this.#stallWatch);
    clearTimeout(this.#resyncTimer);
    if (this.#batchScheduled) this.#flushBatch();
    this.#acks.releaseAll();
    await this.#writer?.stop().catch(() => undefined);
    this.#ready = false;
    this.#follower?.stop();
    this.parts.membership.stop();
    for (const subscription of this.#subscriptions.splice(0)) subscription.unsubscribe();
  }

  /** Handles a message on this node's own subject that belongs to the manager (acks, state pages). */
  onDirect(incoming: Incoming): void {
    const { message } = incoming;
    if (message.kind === 'ack') this.#acks.acknowledge((message.body as MessageBody<'ack'>).id, message.node);
    else if (message.kind === 'state-req') this.#donor.answer(incoming);
  }

  find(key: string): SessionState | undefined {
    const state = this.#table.live(key);
    if (state && this.#mayExpire(Date.now()) && this.#isExpired(state, Date.now())) {
      this.#expire(state);
      return undefined;
    }
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
    while (this.#acks.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    await this.parts.bus.flush();
  }

  drainRemaining(): number {
    return this.#acks.size;
  }

  async commit(changes: SessionChanges, options: CommitOptions): Promise<boolean | void> {
    const { stats } = this.parts;
    const now = Date.now();
    for (const delta of changes.deltas) {
      const outcome = this.#table.merge(delta);
      if (outcome.created) stats.sessionsCreated++;
      if (outcome.ended) stats.sessionsInvalidated++;
    }
    if (!options.replicate) {
      for (const delta of changes.deltas) this.#pending.stash(delta);
      return;
    }
    // An unchanged session is sent only as a rate-limited touch that keeps it alive elsewhere.
    const outgoing = changes.deltas.flatMap((delta) => this.#pending.due(delta, changes.modified, now) ?? []);
    if (outgoing.length === 0) return;
    return this.#publish(outgoing, options.mode, options.route);
  }

  activeSessions(): number {
    return this.#table.liveCount;
  }

  sessionCounts(): Record<string, number> {
    return { total: this.#table.liveCount, tombstones: this.#table.tombstoneCount };
  }

  /** The state this node holds for a key, tombstones included (for tests and diagnostics). */
  inspect(key: string): SessionState | undefined {
    return this.#table.get(key);
  }

  /** Live sessions this node holds. */
  liveSessions(): IterableIterator<SessionState> {
    return this.#table.liveStates();
  }

  /**
   * The sweep timer. A tick that comes much later than scheduled means this process was paused
   * (SIGSTOP, a frozen Lambda, a long GC): its access times are stale, and expiring now could end
   * sessions that were used elsewhere meanwhile, for good. So expiry waits until the node caught up
   * (the log replay or resync has had time to run); tombstones are still collected.
   */
  #sweepTick(): void {
    const now = Date.now();
    if (now - this.#lastSweepAt > this.options.sweepIntervalMs + (this.options.resyncAfterMs ?? 3000)) {
      this.#expiryPausedUntil = now + this.options.sweepIntervalMs + (this.options.resyncAfterMs ?? 0) + 2000;
      this.parts.logger.warn({ lateMs: now - this.#lastSweepAt - this.options.sweepIntervalMs }, 'expiry paused: this process was stalled and may have missed accesses');
    }
    this.#lastSweepAt = now;
    if (this.#mayExpire(now)) this.sweep(now);
    else for (const key of this.#table.collect(now - this.options.tombstoneTtlMs)) this.#pending.forget(key);
  }

  /** Whether this node's view of access times is fresh enough to expire sessions. */
  #mayExpire(now: number): boolean {
    return now >= this.#expiryPausedUntil && !this.#resyncing;
  }

  /** Expires idle sessions everywhere and forgets old tombstones (the timer calls it through `#sweepTick`). */
  sweep(now: number): void {
    for (const state of this.#table.expired(now, (s) => this.#graceFor(s))) this.#expire(state);
    for (const key of this.#table.collect(now - this.options.tombstoneTtlMs)) this.#pending.forget(key);
  }

  /**
   * A session last used on another node expires here only after an extra grace of two touch
   * intervals, because touches reach us at most once per interval (Tomcat waits 2x on replicas).
   */
  #graceFor(state: SessionState): number {
    return state.lastAccessedBy === this.parts.clock.node ? 0 : 2 * touchIntervalFor(state, this.options.touchIntervalMs);
  }

  #isExpired(state: SessionState, now: number): boolean {
    return isIdleExpired(state, now, this.#graceFor(state));
  }

  #expire(state: SessionState): void {
    const end: SessionState = { ...cloneState(state), attributes: new Map(), ended: { stamp: this.parts.clock.tick(), reason: 'expired' } };
    if (this.#table.merge(end).ended) this.parts.stats.sessionsExpired++;
    this.parts.logger.info({ session: state.key.slice(0, 8) }, 'session expired');
    void this.#publish([end], 'async');
  }

  async #publish(deltas: SessionState[], mode: CommitOptions['mode'], route?: string): Promise<boolean | void> {
    if (mode === 'async') {
      // Requests handled in one event-loop turn share one message: one broker round, one decode per peer.
      this.#batch.push(...deltas);
      if (!this.#batchScheduled) {
        this.#batchScheduled = true;
        nextTurn(() => this.#flushBatch());
      }
      return;
    }
    return this.#send(deltas, mode, route);
  }

  /** Sends the async deltas of the current turn, in messages of at most `BATCH_SESSIONS` sessions and `BATCH_BYTES`. */
  #flushBatch(): void {
    this.#batchScheduled = false;
    let message: SessionState[] = [];
    let bytes = 0;
    const maxBytes = fitPayload(BATCH_BYTES, this.parts.bus.channel.maxPayload);
    for (const delta of this.#batch.splice(0)) {
      const size = 200 + attributeBytes(delta);
      if (message.length > 0 && (message.length >= BATCH_SESSIONS || bytes + size > maxBytes)) {
        void this.#send(message, 'async');
        message = [];
        bytes = 0;
      }
      message.push(delta);
      bytes += size;
    }
    if (message.length > 0) void this.#send(message, 'async');
  }

  /** Sends one message; resolves to false when it could not be sent (or stored, in `persist` mode). */
  async #send(deltas: SessionState[], mode: CommitOptions['mode'], route?: string): Promise<boolean> {
    const { bus, membership, stats, logger } = this.parts;
    const id = `${bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`;
    const expected = mode === 'ack' ? membership.readyMembers().map((m) => m.node) : [];
    const acked = mode === 'ack' ? this.#acks.wait(id, expected, this.options.ackTimeoutMs) : undefined;
    const body = { id, s: deltas, ...(mode === 'ack' ? { r: bus.subjects.node(bus.identity.node) } : {}) };
    try {
      if (mode === 'persist' && this.options.log) await this.options.log.append(await bus.encode('delta', body), id);
      else bus.send(bus.subjects.delta, 'delta', body);
    } catch (error) {
      stats.replicationErrors++;
      logger.error({ ...sessionFields(deltas.map((d) => d.key)), route, mode, error: (error as Error).message }, 'replication failed: changes kept locally only');
      this.#acks.cancel(id);
      return false;
    }
    if (!acked) return true;
    const missing = await acked;
    if (missing.length > 0) {
      stats.acksTimedOut++;
      logger.warn({ ...sessionFields(deltas.map((d) => d.key)), route, missing, timeoutMs: this.options.ackTimeoutMs }, 'ack timeout: not every member confirmed the write');
    }
    return true;
  }

  /**
   * Join, restart or thaw through the log: load the snapshot (when a store is configured and
   * reachable), then replay the log from the snapshot's checkpoint and keep following it. Without a
   * usable snapshot, a peer transfer covers what the log does not.
   */
  async #startFromLog(log: ReplicationLog): Promise<void> {
    const { logger } = this.parts;
    const status = this.stateTransfer;
    const started = Date.now();
    status.state = 'running';
    await log.ensure();
    const { first, last } = await log.bounds();
    let from = last + 1;
    let needPeer = true;
    if (this.options.store) {
      status.source = 'snapshot';
      try {
        const checkpoint = await this.options.store.load(
          (states) => this.#applyStates(states),
          (progress) => {
            status.sessionsReceived = progress.sessions;
            status.pages = progress.pages;
            if (progress.pages % 50 === 0) logger.info({ ...progress }, 'snapshot load: progress');
          },
        );
        this.#writer?.startAt(checkpoint);
        const start = (checkpoint ?? 0) + 1;
        if (first === 0 || start >= first) {
          from = start;
          needPeer = false;
        } else {
          logger.warn({ checkpoint, firstRetained: first }, 'snapshot is older than the log retention: asking a peer too');
        }
        logger.info({ store: this.options.store.kind, sessions: status.sessionsReceived, checkpoint, replayFrom: from, replayTo: last }, 'snapshot loaded');
      } catch (error) {
        status.source = 'peer';
        status.detail = `snapshot store unreachable (${(error as Error).message}): peer state transfer instead`;
        logger.warn({ store: this.options.store.kind, error: (error as Error).message }, 'snapshot store unreachable: falling back to peer state transfer');
      }
    }
    this.#appliedSeq = from - 1;
    this.#follower = await log.follow(from, (message) => this.#onLogMessage(message));
    if (needPeer) {
      const detail = status.detail;
      status.source ??= 'peer';
      await receiveState(this.parts.bus, this.options.stateTransferTimeoutMs, (page) => this.#applyStates(page.sessions), status, logger);
      // receiveState leaves `detail` alone on success and replaces it on failure: say the store problem once.
      if (detail !== undefined && status.detail !== detail) status.detail = status.detail ? `${detail}; ${status.detail}` : detail;
    }
    await this.#replayUntil(last, started + this.options.stateTransferTimeoutMs);
    if (!needPeer) status.state = 'done';
    status.durationMs = Date.now() - started;
  }

  /**
   * Core NATS drops what a disconnected subscriber misses (a broker restart, a failover to another
   * server, a slow consumer cut off by the server) and a paused process may have been cut off too.
   * Channel reconnects and event-loop stalls longer than `afterMs` schedule a resync.
   */
  #watchForGaps(afterMs: number): void {
    this.parts.bus.channel.onStatus((status) => {
      if (status === 'disconnected' || status === 'reconnecting' || status === 'closed') this.#channelUp = false;
      if (status !== 'connected') return;
      this.#channelUp = true;
      if (this.#ready) this.#scheduleResync('reconnect', afterMs);
    });
    let last = Date.now();
    this.#stallWatch = setInterval(
      () => {
        const now = Date.now();
        if (now - last > afterMs && this.#ready) {
          this.parts.logger.warn({ stalledMs: now - last }, 'this process stalled: deltas may have been missed');
          this.#scheduleResync('stall', afterMs);
        }
        last = now;
      },
      Math.max(50, Math.min(1000, Math.floor(afterMs / 4))),
    );
  }

  #scheduleResync(reason: ResyncReason, delayMs: number): void {
    if (this.#resyncing) {
      this.#resyncAgain = reason;
      return;
    }
    clearTimeout(this.#resyncTimer);
    this.#resyncTimer = setTimeout(() => void this.#resync(reason), delayMs);
  }

  /**
   * Merges the full state of every ready member (idempotent: the CRDT merge keeps what is newer).
   * Every member, not one: a delta lost with a broker may be held by its writer only.
   */
  async #resync(reason: ResyncReason): Promise<void> {
    const { bus, membership, stats, logger } = this.parts;
    if (!this.#ready || !this.#channelUp) return;
    this.#resyncing = true;
    const started = Date.now();
    const donors = membership.readyMembers().map((m) => m.node);
    let repaired = 0;
    let received = 0;
    const failed: string[] = [];
    try {
      for (const donor of donors) {
        const status: StateTransferStatus = { state: 'pending', sessionsReceived: 0, pages: 0 };
        // A page gets ackTimeoutMs (a live member answers at once): a request sent just before the
        // connection dropped must not hold the resync that the reconnect asks for.
        const apply = (page: StatePage) => (repaired += this.#repair(page.sessions));
        await receiveState(bus, this.options.stateTransferTimeoutMs, apply, status, logger.child({ resync: reason }), donor, this.options.ackTimeoutMs);
        received += status.sessionsReceived;
        if (status.state === 'failed') failed.push(donor);
      }
      // After a reconnect the gap goes both ways: what this node sent just before the connection
      // dropped may have been lost with it, and members that stayed connected never resync.
      const pushed = reason === 'reconnect' ? this.#pushAll() : 0;
      stats.resyncs++;
      stats.resyncRepairs += repaired;
      logger.info({ reason, donors, sessionsReceived: received, repaired, pushed, ms: Date.now() - started }, 'resync: merged the state of every ready member');
    } finally {
      this.#resyncing = false;
      const again = this.#resyncAgain ?? (failed.length > 0 ? reason : undefined);
      this.#resyncAgain = undefined;
      if (failed.length > 0) logger.warn({ reason, failed }, 'resync: some members did not answer in full, trying again');
      // A reconnect during the resync asks again at once; a member that did not answer, after the usual wait.
      if (again && this.#ready) this.#scheduleResync(again, failed.length > 0 ? (this.options.resyncAfterMs ?? 0) : 0);
    }
  }

  /** Resolves once the log replay reached `target`, or at the deadline (with a warning). */
  #replayUntil(target: number, deadline: number): Promise<void> {
    if (this.#appliedSeq >= target) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#caughtUp = undefined;
        this.parts.logger.warn({ appliedSeq: this.#appliedSeq, target }, 'log replay did not finish in stateTransferTimeoutMs: serving anyway');
        resolve();
      }, Math.max(0, deadline - Date.now()));
      this.#caughtUp = {
        target,
        done: () => {
          clearTimeout(timer);
          this.#caughtUp = undefined;
          resolve();
        },
      };
    });
  }

  #onLogMessage({ seq, data }: LogMessage): void {
    const decoded = this.parts.bus.decode(data, this.parts.bus.subjects.delta);
    if (decoded instanceof Promise) this.#logChain = this.#logChain.then(async () => this.#applyLogMessage(seq, await decoded));
    else this.#applyLogMessage(seq, decoded);
  }

  #applyLogMessage(seq: number, decoded: Decoded | undefined): void {
    this.#appliedSeq = seq;
    if (decoded && decoded.message.kind === 'delta') {
      const body = decoded.message.body as MessageBody<'delta'>;
      // Our own messages were applied when committed; the log only tells us their sequence.
      if (!decoded.own) this.#applyStates(body.s);
      // Lag only once caught up: a replayed backlog is old by design, not slow replication.
      if (!decoded.own && this.#ready) recordWriteLag(this.parts.stats, body.s);
      if (!decoded.own && body.r && this.#ready) this.parts.bus.send(body.r, 'ack', { id: body.id });
      this.#writer?.noteApplied(seq, body.s.map((state) => state.key));
    }
    if (this.#caughtUp && seq >= this.#caughtUp.target) this.#caughtUp.done();
  }

  /**
   * A joiner with a log follows it from the stream's end as it saw it before asking for state; this
   * node's consumer may not have applied that far yet. So in log mode the first page waits (briefly)
   * until this node applied the log up to the stream's current end: no message falls in between.
   */
  async #answerFirstPage(incoming: Incoming): Promise<void> {
    const log = this.options.log;
    if (log) {
      try {
        const { last } = await log.bounds();
        const deadline = Date.now() + Math.min(5000, this.options.stateTransferTimeoutMs / 2);
        while (this.#appliedSeq < last && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      } catch {
        // Answer with what this node holds; the joiner still follows the log.
      }
    }
    try {
      this.#donor.answer(incoming);
    } catch (error) {
      this.parts.logger.error({ joiner: incoming.message.node, error: (error as Error).message }, 'state transfer: could not answer');
    }
  }

  /** The snapshot leader is the oldest ready member: only it writes to the store. */
  #isSnapshotLeader(): boolean {
    if (!this.#ready) return false;
    const self = { startedAt: this.parts.membership.startedAt, node: this.parts.clock.node };
    return this.parts.membership
      .readyMembers()
      .every((m) => m.startedAt > self.startedAt || (m.startedAt === self.startedAt && m.node > self.node));
  }

  #onDelta(incoming: Incoming): void {
    if (this.#buffer) this.#buffer.push(incoming);
    else this.#applyDelta(incoming);
  }

  #applyDelta(incoming: Incoming): void {
    const { message, reply } = incoming;
    if (message.kind !== 'delta') return;
    const body = message.body as MessageBody<'delta'>;
    this.#applyStates(body.s);
    // A resync resends old writes on purpose: they are no sample of replication lag.
    if (!body.id.startsWith(RESYNC_ID)) recordWriteLag(this.parts.stats, body.s);
    const ackTo = body.r ?? reply;
    if (ackTo) this.parts.bus.send(ackTo, 'ack', { id: body.id });
  }

  #applyStates(states: SessionState[]): void {
    for (const state of states) {
      this.parts.clock.observe(latestStamp(state));
      this.#table.merge(state);
    }
  }

  /**
   * Sends every session this node holds (tombstones too) as async deltas, in messages that fit the
   * broker; their ids start with `resync-` so receivers do not count them as replication lag.
   * Returns how many sessions were sent.
   */
  #pushAll(): number {
    const { bus, logger } = this.parts;
    const maxBytes = fitPayload(BATCH_BYTES, bus.channel.maxPayload);
    let message: SessionState[] = [];
    let bytes = 0;
    let sent = 0;
    const flush = () => {
      if (message.length === 0) return;
      bus.send(bus.subjects.delta, 'delta', { id: `${RESYNC_ID}${bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`, s: message });
      sent += message.length;
      message = [];
      bytes = 0;
    };
    try {
      for (const key of this.#table.keys()) {
        const state = this.#table.get(key);
        if (!state) continue;
        const size = 200 + attributeBytes(state);
        if (message.length >= BATCH_SESSIONS || (message.length > 0 && bytes + size > maxBytes)) flush();
        message.push(state);
        bytes += size;
      }
      flush();
    } catch (error) {
      logger.warn({ sent, error: (error as Error).message }, 'resync: sending this node\'s sessions failed');
    }
    return sent;
  }

  /** Merges states of a resync; returns how many sessions' data it changed (access times aside: those replicate lazily). */
  #repair(states: SessionState[]): number {
    let repaired = 0;
    for (const state of states) {
      const held = this.#table.get(state.key);
      const before = held && { registers: new Map(held.attributes), ended: held.ended, maxInactive: held.maxInactive };
      this.#applyStates([state]);
      const after = this.#table.get(state.key);
      if (!after) continue;
      if (!before || after.ended !== before.ended || after.maxInactive !== before.maxInactive || [...after.attributes].some(([name, r]) => before.registers.get(name) !== r)) repaired++;
    }
    return repaired;
  }
}

/**
 * Records the replication lag of applied deltas, one sample per session delta (a message may batch
 * several requests): now minus the wall time of the delta's newest stamp, the moment of its write.
 */
export function recordWriteLag(stats: ReplicationStats, states: readonly SessionState[]): void {
  if (states.length === 0) return;
  const now = Date.now();
  for (const state of states) stats.recordLag(now - latestStamp(state)[0], now);
}
