/**
 * `LogReplica`: the delta manager with a replication log (JetStream) and optionally a snapshot store
 * (DynamoDB). A joining, restarted or thawed node loads the snapshot, replays the log from the
 * snapshot's checkpoint and keeps following it; the oldest ready member writes snapshots behind.
 */
import type { Decoded } from '../../bus/cluster-bus.ts';
import type { LogFollower, LogMessage, ReplicationLog } from '../../log/replication-log.ts';
import type { SnapshotStore } from '../../store/snapshot-store.ts';
import { SnapshotWriter, type SnapshotWriterOptions } from '../../store/snapshot-writer.ts';
import type { SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';

/** The log, the store and their timing. */
export interface LogReplicaOptions {
  readonly log: ReplicationLog;
  readonly store?: SnapshotStore | undefined;
  readonly snapshot: SnapshotWriterOptions;
  readonly stateTransferTimeoutMs: number;
  /** Merges a peer's logged delta (`WholeSessions.apply`: a partial one is completed from a member). */
  readonly apply: (states: SessionState[], from: string) => void;
}

/** Follows the log into the core's table and writes snapshots behind it. */
export class LogReplica {
  #follower?: LogFollower;
  /** Highest log sequence applied; the log delivers in order, so everything below it is applied too. */
  #appliedSeq = 0;
  #caughtUp?: { target: number; done: () => void };
  /** Keeps log messages in sequence order while protected messages are verified asynchronously. */
  #logChain: Promise<void> = Promise.resolve();
  readonly #writer?: SnapshotWriter;

  constructor(
    private readonly core: ReplicaCore,
    private readonly options: LogReplicaOptions,
  ) {
    if (options.store) {
      this.#writer = new SnapshotWriter(
        options.store,
        (key) => core.table.get(key),
        () => this.#isSnapshotLeader(),
        options.snapshot,
        core.parts.logger,
      );
    }
  }

  /** Snapshot and log progress for `/cluster`. */
  get persistence(): Record<string, unknown> {
    return {
      log: this.options.log.name,
      appliedSeq: this.#appliedSeq,
      store: this.options.store?.kind,
      snapshot: this.#writer?.status,
    };
  }

  /**
   * Join, restart or thaw through the log: load the snapshot (when a store is configured and
   * reachable), then replay the log from the snapshot's checkpoint and keep following it. Without a
   * usable snapshot, a peer transfer covers what the log does not.
   */
  async start(): Promise<void> {
    const { log, store } = this.options;
    const { logger } = this.core.parts;
    const status = this.core.stateTransfer;
    const started = Date.now();
    this.core.parts.membership.start();
    status.state = 'running';
    await log.ensure();
    const { first, last } = await log.bounds();
    let from = last + 1;
    let needPeer = true;
    if (store) {
      status.source = 'snapshot';
      try {
        const checkpoint = await store.load(
          (states) => this.core.applyStates(states),
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
          logger.warn(
            { checkpoint, firstRetained: first },
            'snapshot is older than the log retention: asking a peer too',
          );
        }
        logger.info(
          { store: store.kind, sessions: status.sessionsReceived, checkpoint, replayFrom: from, replayTo: last },
          'snapshot loaded',
        );
      } catch (error) {
        status.source = 'peer';
        status.detail = `snapshot store unreachable (${(error as Error).message}): peer state transfer instead`;
        logger.warn(
          { store: store.kind, error: (error as Error).message },
          'snapshot store unreachable: falling back to peer state transfer',
        );
      }
    }
    this.#appliedSeq = from - 1;
    this.#follower = await log.follow(from, (message) => this.#onLogMessage(message));
    if (needPeer) {
      const detail = status.detail;
      status.source ??= 'peer';
      await this.core.receiveState((page) => this.core.applyStates(page.sessions));
      // receiveState leaves `detail` alone on success and replaces it on failure: say the store problem once.
      if (detail !== undefined && status.detail !== detail)
        status.detail = status.detail ? `${detail}; ${status.detail}` : detail;
    }
    await this.#replayUntil(last, started + this.options.stateTransferTimeoutMs);
    if (!needPeer) status.state = 'done';
    status.durationMs = Date.now() - started;
    this.#writer?.start();
  }

  /** Writes a last snapshot (when leader) and stops following the log. */
  async stop(): Promise<void> {
    await this.#writer?.stop().catch(() => undefined);
    this.#follower?.stop();
  }

  /**
   * Waits (briefly) until this node applied the log up to the stream's current end. A joiner with a
   * log follows it from the stream's end as it saw it before asking for state, and this node's
   * consumer may not have applied that far yet: the first page waits for this, so no message falls
   * in between.
   */
  async catchUp(): Promise<void> {
    try {
      const { last } = await this.options.log.bounds();
      const deadline = Date.now() + Math.min(5000, this.options.stateTransferTimeoutMs / 2);
      while (this.#appliedSeq < last && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    } catch {
      // Answer with what this node holds; the joiner still follows the log.
    }
  }

  /**
   * After a gap: waits until this node applied the log up to the stream's end as it is now (throws
   * when the log is unreachable); true when it did while `connected` held throughout.
   */
  async replayToEnd(connected: () => boolean): Promise<boolean> {
    const { last } = await this.options.log.bounds();
    const deadline = Date.now() + this.options.stateTransferTimeoutMs;
    while (this.#appliedSeq < last && Date.now() < deadline && connected())
      await new Promise((resolve) => setTimeout(resolve, 20));
    return this.#appliedSeq >= last && connected();
  }

  /**
   * Read-your-writes: replays the log up to its end as it is now, by `deadline` (epoch ms). A log that
   * can catch up by itself (`CatchUpLog`: a frozen Lambda environment restarts its stalled follower)
   * does; otherwise this waits for the follower. Resolves true when it got there, false when the log
   * was unreachable or slow (never rejects: the members may still have the newer state).
   */
  async catchUpBy(deadline: number): Promise<boolean> {
    const { log } = this.options;
    try {
      if (log.catchUp) return (await log.catchUp(Math.max(1, deadline - Date.now()))).ok;
      const { last } = await log.bounds();
      while (this.#appliedSeq < last && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      return this.#appliedSeq >= last;
    } catch {
      return false;
    }
  }

  /** Resolves once the log replay reached `target`, or at the deadline (with a warning). */
  #replayUntil(target: number, deadline: number): Promise<void> {
    if (this.#appliedSeq >= target) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.#caughtUp = undefined;
          this.core.parts.logger.warn(
            { appliedSeq: this.#appliedSeq, target },
            'log replay did not finish in stateTransferTimeoutMs: serving anyway',
          );
          resolve();
        },
        Math.max(0, deadline - Date.now()),
      );
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

  /** Applies a log message; a protected one is decoded asynchronously, and the promise settles once it is applied. */
  #onLogMessage({ seq, data }: LogMessage): Promise<void> | void {
    const { bus } = this.core.parts;
    const decoded = bus.decode(data, bus.subjects.delta);
    if (decoded instanceof Promise) {
      this.#logChain = this.#logChain.then(async () => this.#applyLogMessage(seq, await decoded));
      return this.#logChain;
    }
    this.#applyLogMessage(seq, decoded);
  }

  #applyLogMessage(seq: number, decoded: Decoded | undefined): void {
    this.#appliedSeq = seq;
    if (decoded && decoded.message.kind === 'delta') {
      const { id, s: states, r: ackTo } = decoded.message.body;
      const fromPeer = !decoded.own;
      // Our own messages were applied when committed; the log only tells us their sequence.
      if (fromPeer) this.options.apply(states, decoded.message.node);
      // Lag only once caught up: a replayed backlog is old by design, not slow replication.
      if (fromPeer && this.core.ready) this.core.recordLag(states);
      if (fromPeer && ackTo && this.core.ready) this.core.parts.bus.send(ackTo, 'ack', { id });
      this.#writer?.noteApplied(
        seq,
        states.map((state) => state.key),
      );
    }
    if (this.#caughtUp && seq >= this.#caughtUp.target) this.#caughtUp.done();
  }

  /** The snapshot leader is the oldest ready member: only it writes to the store. */
  #isSnapshotLeader(): boolean {
    if (!this.core.ready) return false;
    const { membership } = this.core.parts;
    const self = { startedAt: membership.startedAt, node: this.core.self };
    return membership
      .readyMembers()
      .every((m) => m.startedAt > self.startedAt || (m.startedAt === self.startedAt && m.node > self.node));
  }
}
