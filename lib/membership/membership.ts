/**
 * Cluster membership: heartbeats on `<prefix>.<cluster>.hb`, join and leave events, graceful leave,
 * and a direct ping before a silent member is declared dead (Tomcat's TcpFailureDetector idea). A
 * member that missed one heartbeat, or was pointed at by a late ack or a failed fetch, is pinged at
 * once: "no responders" from the broker means its process is gone.
 */
import type { ChannelSubscription } from '../channel/channel.ts';
import type { ClusterBus, Incoming } from '../bus/cluster-bus.ts';
import { ChannelRequestError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** What this node knows about another member. */
export interface MemberInfo {
  readonly node: string;
  readonly incarnation: string;
  /** When the member's process started (ms since epoch); the oldest member is first in lists. */
  readonly startedAt: number;
  /** Whether it finished state transfer and serves traffic. */
  ready: boolean;
  /** Last heartbeat or ping answer, by this node's clock. */
  lastSeen: number;
  /** `suspected` once it fell silent but still answered a ping. */
  state: 'alive' | 'suspected';
  /** The member announced it is draining (finishing its sessions before leaving). */
  draining: boolean;
  /** Its HTTP base URL, when it advertises one (for dashboards). */
  url?: string;
}

/** Why a member left the list. */
export type LeaveReason = 'left' | 'dead' | 'restarted';

/** Membership timing (Tomcat's McastService `frequency` and `dropTime`). */
export interface MembershipOptions {
  /** Heartbeat period. */
  readonly heartbeatIntervalMs: number;
  /**
   * Silence after which a member is checked by ping and dropped if it does not answer. A member whose
   * subject finds no responder (its connection is gone) is dropped at once instead, see `suspect`.
   */
  readonly memberDropMs: number;
  /** How long the verifying ping waits. */
  readonly pingTimeoutMs: number;
  /** This node's HTTP base URL, carried in heartbeats so dashboards can reach every member. */
  readonly advertiseUrl?: string;
}

type Listener<T extends unknown[]> = (...args: T) => void;

/** Tracks the other live members of the cluster. */
export class Membership {
  readonly #members = new Map<string, MemberInfo>();
  readonly #verifying = new Set<string>();
  /** Incarnations that left gracefully (the most recent 256): their late heartbeats are ignored. */
  readonly #departed = new Set<string>();
  readonly #joinListeners: Listener<[MemberInfo]>[] = [];
  readonly #leaveListeners: Listener<[MemberInfo, LeaveReason]>[] = [];
  readonly #readyListeners: Listener<[MemberInfo]>[] = [];
  #subscription?: ChannelSubscription;
  #timer?: ReturnType<typeof setInterval>;
  #ready = false;
  #draining = false;
  #running = false;

  constructor(
    private readonly bus: ClusterBus,
    private readonly options: MembershipOptions,
    private readonly logger: Logger,
    /** This process's start time. */
    readonly startedAt: number = Date.now(),
  ) {}

  /** The heartbeat period: a member answers a hello at once and beats at least this often. */
  get heartbeatIntervalMs(): number {
    return this.options.heartbeatIntervalMs;
  }

  /** Starts listening and heartbeating; the first heartbeat asks every member to answer at once. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#subscription = this.bus.listen(this.bus.subjects.heartbeat, (incoming) => this.#onHeartbeat(incoming));
    this.#beat(true);
    this.#timer = setInterval(() => this.#tick(), this.options.heartbeatIntervalMs);
  }

  /** Marks this node ready (or not) in its heartbeats, and announces the change at once. */
  setReady(ready: boolean): void {
    this.#ready = ready;
    if (this.#running) this.#beat(false);
  }

  /** Marks this node draining (or not) in its heartbeats, and announces the change at once. */
  setDraining(draining: boolean): void {
    if (this.#draining === draining) return;
    this.#draining = draining;
    this.logger.info({ draining }, draining ? 'draining: announced to the cluster' : 'draining: cancelled');
    if (this.#running) this.#beat(false);
  }

  /** Whether this node announces itself as draining. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Other live members, oldest first. */
  members(): MemberInfo[] {
    return [...this.#members.values()].sort((a, b) => a.startedAt - b.startedAt || (a.node < b.node ? -1 : 1));
  }

  /** Other members that are ready, oldest first. */
  readyMembers(): MemberInfo[] {
    return this.members().filter((member) => member.ready);
  }

  /** Whether `node` is currently a member. */
  has(node: string): boolean {
    return this.#members.has(node);
  }

  /** Calls `listener` when a member joins. */
  onJoin(listener: Listener<[MemberInfo]>): void {
    this.#joinListeners.push(listener);
  }

  /** Calls `listener` when a member becomes ready (finished its state transfer). */
  onReady(listener: Listener<[MemberInfo]>): void {
    this.#readyListeners.push(listener);
  }

  /** Calls `listener` when a member leaves, is declared dead, or restarts under a new incarnation. */
  onLeave(listener: Listener<[MemberInfo, LeaveReason]>): void {
    this.#leaveListeners.push(listener);
  }

  /**
   * Checks `node` at once after a point-to-point message to it went unanswered or found nobody (the
   * broker answers `no-responders` once a dead process's connection is gone): pings its subject and
   * declares it dead only when that ping finds nobody either. A member that answers, or whose ping
   * times out (paused, slow), stays: only `memberDropMs` of silence drops it then.
   */
  suspect(node: string): void {
    const member = this.#members.get(node);
    if (!member || this.#verifying.has(node) || !this.#running) return;
    this.#verifying.add(node);
    this.bus
      .request(this.bus.subjects.node(node), 'ping', {}, this.options.pingTimeoutMs)
      .then(
        () => undefined, // Alive; whether it is merely silent stays for the memberDropMs check to judge.
        (error: unknown) => {
          if (!(error instanceof ChannelRequestError) || error.kind !== 'no-responders') return;
          if (this.#members.get(node) === member) this.#remove(member, 'dead');
        },
      )
      .finally(() => this.#verifying.delete(node));
  }

  /** Answers a ping sent to this node's subject. */
  answerPing(incoming: Incoming): void {
    if (incoming.reply) this.bus.send(incoming.reply, 'pong', { ready: this.#ready });
  }

  /** Leaves gracefully: one last heartbeat marked leaving, so others drop this node at once. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#timer);
    try {
      this.bus.send(this.bus.subjects.heartbeat, 'hb', { started: this.startedAt, ready: false, leaving: true });
    } catch {
      // The channel may already be closed; others will drop us after memberDropMs.
    }
    this.#subscription?.unsubscribe();
    this.#members.clear();
  }

  #beat(hello: boolean): void {
    try {
      this.bus.send(this.bus.subjects.heartbeat, 'hb', {
        started: this.startedAt,
        ready: this.#ready,
        ...(hello ? { hello } : {}),
        ...(this.#draining ? { draining: true } : {}),
        ...(this.options.advertiseUrl !== undefined ? { url: this.options.advertiseUrl } : {}),
      });
    } catch (error) {
      this.logger.warn({ error }, 'heartbeat not sent');
    }
  }

  #onHeartbeat({ message }: Incoming): void {
    if (message.kind !== 'hb') return;
    const { body } = message;
    const known = this.#members.get(message.node);
    if (body.leaving) {
      this.#departed.add(message.incarnation);
      if (this.#departed.size > 256) this.#departed.delete(this.#departed.values().next().value!);
      if (known && known.incarnation === message.incarnation) this.#remove(known, 'left');
      return;
    }
    // A heartbeat that overtook the leave (unordered channels such as SNS/SQS) must not bring it back.
    if (this.#departed.has(message.incarnation)) return;
    if (known && known.incarnation !== message.incarnation) {
      if (body.started < known.startedAt) return; // A stale heartbeat of an older run.
      this.#remove(known, 'restarted');
    }
    const current = this.#members.get(message.node);
    if (current) {
      const becameReady = body.ready && !current.ready;
      current.lastSeen = Date.now();
      current.ready = body.ready;
      current.state = 'alive';
      if (Boolean(body.draining) !== current.draining) {
        current.draining = Boolean(body.draining);
        this.logger.info(
          { member: current.node, draining: current.draining },
          current.draining ? 'member draining' : 'member no longer draining',
        );
      }
      if (body.url !== undefined) current.url = body.url;
      else delete current.url;
      if (becameReady) for (const listener of this.#readyListeners) listener(current);
    } else {
      const member: MemberInfo = {
        node: message.node,
        incarnation: message.incarnation,
        startedAt: body.started,
        ready: body.ready,
        lastSeen: Date.now(),
        state: 'alive',
        draining: Boolean(body.draining),
        ...(body.url !== undefined ? { url: body.url } : {}),
      };
      this.#members.set(member.node, member);
      this.logger.info({ member: member.node, ready: member.ready }, 'member joined');
      for (const listener of this.#joinListeners) listener(member);
      if (member.ready) for (const listener of this.#readyListeners) listener(member);
    }
    if (body.hello) this.#beat(false);
  }

  #tick(): void {
    this.#beat(false);
    const now = Date.now();
    for (const member of this.#members.values()) {
      const silentMs = now - member.lastSeen;
      if (silentMs >= this.options.memberDropMs) {
        if (!this.#verifying.has(member.node)) void this.#verify(member);
      } else if (silentMs > this.options.heartbeatIntervalMs * 1.5) this.suspect(member.node); // One heartbeat missed.
    }
  }

  /** Pings a silent member directly; it stays (suspected) if it answers, and is dropped if not. */
  async #verify(member: MemberInfo): Promise<void> {
    this.#verifying.add(member.node);
    try {
      await this.bus.request(this.bus.subjects.node(member.node), 'ping', {}, this.options.pingTimeoutMs);
      if (this.#members.get(member.node) === member) {
        member.state = 'suspected';
        member.lastSeen = Date.now();
        this.logger.warn({ member: member.node }, 'member missed heartbeats but answered a ping: suspected');
      }
    } catch (error) {
      if (!(error instanceof ChannelRequestError) || error.kind === 'closed') {
        if (this.#running) this.logger.warn({ member: member.node, error }, 'ping failed');
      }
      if (this.#members.get(member.node) === member) this.#remove(member, 'dead');
    } finally {
      this.#verifying.delete(member.node);
    }
  }

  #remove(member: MemberInfo, reason: LeaveReason): void {
    this.#members.delete(member.node);
    if (reason === 'dead') this.logger.warn({ member: member.node, reason }, 'member declared dead');
    else this.logger.info({ member: member.node, reason }, 'member left');
    for (const listener of this.#leaveListeners) listener(member, reason);
  }
}
