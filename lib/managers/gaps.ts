/**
 * `GapWatch`: when a manager's view may lack what happened elsewhere (shared by the delta and backup managers). Core NATS drops what a
 * disconnected subscriber misses (a broker restart, a failover, a slow consumer cut off, a link
 * reset) and nats.js drops what was published while disconnected; a paused process may have been
 * cut off too. A gap opens on a disconnect or an event-loop stall and stays open until the manager
 * caught up (resync done, or log replayed to the stream's end). While it is open the node ends no
 * session. It is long, and the node not ready, when a disconnect lasted longer than `afterMs`, or a
 * stall longer than `afterMs` came with a disconnect (the server cut the node off, so what it missed
 * is gone); a stall alone loses nothing (the connection kept the messages) and only opens the gap,
 * but what the connection kept is read only after the resume: until a round trip to the broker begun
 * after it came back, the node serves nothing either. The first request after a stall may be handled
 * before the watch's own tick (both were waiting when the process ran again), so the serving gate
 * (`long`) reads the event-loop clock itself. A round trip to the broker that does not come back within `afterMs` counts as a disconnect (a
 * silent partition, which the client itself notices only minutes later).
 */
import type { ReplicaCore } from './core.ts';

/** Why a node catches up again after it joined. */
export type GapReason = 'reconnect' | 'stall';

/** What the watch reports to its manager. */
export interface GapHandlers {
  /** The channel is back, or this process ran again after a stall: catch up. */
  readonly repair: (reason: GapReason) => void;
  /** The channel went down (what was sent just before may be lost). */
  readonly disconnected: () => void;
}

/** Tracks the channel and event-loop stalls; the manager closes the gap once it caught up. */
export class GapWatch {
  #channelUp = true;
  #disconnectedAt = 0;
  /**
   * Open from a disconnect or stall until `close()`; `stall`: it began with one, `drained` once a round trip begun
   * after it came back; `long`: see the header.
   */
  #gap?: { long: boolean; stall?: boolean; drained?: boolean };
  #stallWatch?: ReturnType<typeof setInterval>;
  /** When the event loop last ran the watch's tick (or a stall was noticed). */
  #lastTick = Date.now();
  #handlers?: GapHandlers;
  /** Requests waiting until a stall's kept messages were read (see `drained`). */
  #drainWaiters: Array<() => void> = [];
  /** The round trip to the broker in flight (see `#probeLink`). */
  #probe?: { since: number };
  /** The channel counts as down because a round trip did not come back. */
  #silent = false;
  /** The ready members when the open gap began (see `membersBack`). */
  #membersBefore: readonly string[] = [];
  /** The ready members at the watch's latest tick: before a stall, the tick before it. */
  #membersAtTick: readonly string[] = [];

  constructor(
    private readonly core: ReplicaCore,
    /** How long a disconnect or stall may last before the node counts as not ready (the cluster passes `memberDropMs`). */
    readonly afterMs: number,
  ) {}

  /** False between a channel disconnect and its reconnect. */
  get channelUp(): boolean {
    return this.#channelUp;
  }

  /** True from a disconnect or stall until the manager caught up. */
  get open(): boolean {
    return this.#gap !== undefined;
  }

  /**
   * True while a gap longer than `afterMs` is open, or a stall's kept messages may not have been read yet: the table
   * may be stale, the node serves nothing. Notices a stall that the watch's tick has not seen yet.
   */
  get long(): boolean {
    const now = Date.now();
    this.#noticeStall(now);
    const gap = this.#gap;
    if (!gap) return false;
    if (!gap.long && !this.#channelUp && now - this.#disconnectedAt > this.afterMs) gap.long = true;
    return gap.long || (gap.stall === true && gap.drained !== true);
  }

  /**
   * After a stall past `afterMs` (noticed now if the watch's tick has not run yet): resolves once a round trip to the
   * broker begun after it came back (what the connection kept was read), or the gap turned long or closed; undefined
   * when nothing waits. A request awaits it before it reads the table: awaiting also lets the event loop read the
   * socket, where a caller that never yields (requests in a loop in one process) would starve it.
   */
  drained(): Promise<void> | undefined {
    this.#noticeStall(Date.now());
    const gap = this.#gap;
    if (!gap?.stall || gap.drained === true || gap.long) return undefined;
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #releaseDrainWaiters(): void {
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Starts watching the channel's status, the event loop and the link to the broker. */
  watch(handlers: GapHandlers): void {
    const { afterMs } = this;
    this.#handlers = handlers;
    this.core.parts.bus.channel.onStatus((status) => {
      if (status === 'disconnected' || status === 'reconnecting' || status === 'closed') this.#down(handlers);
      else if (status === 'connected') this.#up(handlers);
    });
    this.#lastTick = Date.now();
    this.#stallWatch = setInterval(
      () => {
        const now = Date.now();
        this.#noticeStall(now);
        this.#lastTick = now;
        this.#membersAtTick = this.#readyMembers();
        if (this.core.ready) this.#probeLink(now, handlers);
      },
      Math.max(50, Math.min(1000, Math.floor(afterMs / 4))),
    );
  }

  /** Opens a stall gap when the event loop did not run the watch's tick for longer than `afterMs`. */
  #noticeStall(now: number): void {
    const handlers = this.#handlers;
    if (!handlers || now - this.#lastTick <= this.afterMs || !this.core.ready) return;
    this.core.parts.logger.warn(
      { stalledMs: now - this.#lastTick },
      'this process stalled: deltas may have been missed',
    );
    this.#lastTick = now;
    // A disconnect noticed on resume, before this, was part of the stall.
    if (this.#gap && !this.#channelUp) this.#gap.long = true;
    else if (this.#gap) this.#gap.stall = true;
    else {
      this.#gap = { long: false, stall: true };
      // The members may have dropped each other meanwhile: who was there is what the last tick before the stall saw.
      this.#membersBefore = this.#membersAtTick;
    }
    this.#gap.drained = this.core.parts.bus.channel.ping === undefined; // No round trip to wait for.
    this.#probe = undefined; // A round trip begun before the stall says nothing about the link.
    handlers.repair('stall');
    this.#probeLink(now, handlers);
  }

  /**
   * A silent partition (packets dropped, the connection left half-open) shows no disconnect for
   * minutes: the client notices only when its own pings go unanswered. So the watch keeps one round
   * trip to the broker (`Channel.ping`, where the channel has one) in flight; one that has not come back after `afterMs` counts as a
   * disconnect (the node's view stops being fresh, as with a reported one), and its answer as the
   * reconnect.
   */
  #probeLink(now: number, handlers: GapHandlers): void {
    const { channel } = this.core.parts.bus;
    if (!channel.ping) return; // Nothing to check: the channel's own status reports are all there is.
    const probe = this.#probe;
    if (probe) {
      if (this.#channelUp && now - probe.since > this.afterMs) {
        this.#silent = true;
        this.core.parts.logger.warn(
          { silentMs: now - probe.since },
          'the broker does not answer: this node may be cut off (silent partition)',
        );
        this.#down(handlers);
      }
      return;
    }
    const started = { since: now };
    this.#probe = started;
    const settled = (answered: boolean) => {
      if (this.#probe !== started) return;
      this.#probe = undefined;
      // Everything the connection kept during a stall was read before this answer.
      if (answered && this.#gap?.stall) {
        this.#gap.drained = true;
        this.#releaseDrainWaiters();
      }
      if (answered && this.#silent) {
        this.core.parts.logger.info({ silentMs: Date.now() - started.since }, 'the broker answers again');
        this.#up(handlers);
      }
    };
    channel.ping().then(
      () => settled(true),
      () => settled(false),
    );
  }

  #down(handlers: GapHandlers): void {
    if (!this.#channelUp) return;
    this.#channelUp = false;
    this.#disconnectedAt = Date.now();
    if (!this.#gap) {
      this.#gap = { long: false };
      this.#membersBefore = this.#readyMembers();
    }
    if (this.#gap.stall) this.#gap.long = true;
    this.#releaseDrainWaiters();
    handlers.disconnected();
  }

  #up(handlers: GapHandlers): void {
    this.#silent = false;
    // A channel that reports `connected` while up (the memory channel does on registration) missed nothing.
    if (this.#channelUp && !this.#gap) return;
    if (!this.#channelUp && this.#gap && Date.now() - this.#disconnectedAt > this.afterMs) this.#gap.long = true;
    this.#channelUp = true;
    if (this.core.ready) handlers.repair('reconnect');
  }

  /** The manager caught up: the gap closes (unless the channel went down again meanwhile). */
  close(): void {
    if (!this.#channelUp) return;
    this.#gap = undefined;
    this.#releaseDrainWaiters();
  }

  /** Stops watching the event loop. */
  stop(): void {
    clearInterval(this.#stallWatch);
    this.#releaseDrainWaiters();
  }

  /**
   * A `RepairRunner` for this node's gaps: a repair runs again (after `retryMs` when it fell short) only while the
   * node is ready; one scheduled after a gap runs early once `membersBack`.
   */
  runner(repair: (reason: GapReason) => Promise<boolean>, retryMs: () => number): RepairRunner {
    return new RepairRunner(
      repair,
      retryMs,
      () => this.core.ready,
      (since) => this.membersBack(since),
    );
  }

  /**
   * Whether the channel is up and every member that was ready when the open gap began was heard from (a heartbeat
   * or a ping answer) at or after `since` and is ready: a repair that merges their state needs nobody else. A
   * member that is not back (dead, or still cut off itself) keeps this false, and the repair waits its full delay.
   */
  membersBack(since: number): boolean {
    if (!this.#channelUp) return false;
    const members = new Map(this.core.parts.membership.members().map((member) => [member.node, member]));
    return this.#membersBefore.every((node) => {
      const member = members.get(node);
      return member?.ready === true && member.state !== 'unreachable' && member.lastSeen >= since;
    });
  }

  #readyMembers(): string[] {
    return this.core.parts.membership.readyMembers().map((member) => member.node);
  }
}

/** How often a repair scheduled after a gap checks whether the members are back (see `RepairRunner.scheduleAfterGap`). */
const MEMBERS_BACK_CHECK_MS = 25;

/**
 * Runs one gap repair at a time (the delta resync, the backup gap recovery). A reason given while a
 * repair runs starts another as soon as it ends; a repair that did not reach every member (resolves
 * false) runs again after `retryMs`.
 */
export class RepairRunner {
  #timer?: ReturnType<typeof setTimeout>;
  #early?: ReturnType<typeof setInterval>;
  #running = false;
  #again?: GapReason;

  constructor(
    private readonly repair: (reason: GapReason) => Promise<boolean>,
    private readonly retryMs: () => number,
    private readonly active: () => boolean,
    /** Whether the members a repair needs were all heard from since the given time (see `GapWatch.membersBack`). */
    private readonly membersBack: (since: number) => boolean,
  ) {}

  /** True while a repair runs. */
  get running(): boolean {
    return this.#running;
  }

  /** Runs a repair `delayMs` from now, or right after the one running. */
  schedule(reason: GapReason, delayMs: number): void {
    if (this.#running) {
      this.#again = reason;
      return;
    }
    this.stop();
    this.#timer = setTimeout(() => this.#start(reason), delayMs);
  }

  /**
   * After a gap: runs a repair `delayMs` from now (members have time to be back), or right after the one running.
   * After a reconnect it runs as soon as every member that was there before the gap was heard from since now. A
   * stall alone kept the connection, and the serving gate waits for a round trip that reads what it held
   * (`drained`); closing the gap early would end that wait, so a stall's repair keeps the full delay.
   */
  scheduleAfterGap(reason: GapReason, delayMs: number): void {
    this.schedule(reason, delayMs);
    if (this.#running || reason !== 'reconnect') return;
    const since = Date.now();
    this.#early = setInterval(() => {
      if (this.membersBack(since)) this.#start(reason);
    }, MEMBERS_BACK_CHECK_MS);
  }

  /** Cancels a scheduled repair. */
  stop(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#early);
  }

  #start(reason: GapReason): void {
    this.stop();
    void this.#run(reason);
  }

  async #run(reason: GapReason): Promise<void> {
    this.#running = true;
    let complete = true;
    try {
      complete = await this.repair(reason);
    } finally {
      this.#running = false;
      const again = this.#again ?? (complete ? undefined : reason);
      this.#again = undefined;
      if (again && this.active()) this.schedule(again, complete ? 0 : this.retryMs());
    }
  }
}
