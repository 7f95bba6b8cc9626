/**
 * Cluster membership: heartbeats on `<prefix>.<cluster>.hb`, join and leave events, graceful leave,
 * and a direct ping before a silent member is declared dead (Tomcat's TcpFailureDetector idea).
 *
 * Fast detection without traffic: each node pings its successor in the ring of members (by node id)
 * every `probeIntervalMs`. A broker drops a closed connection's subscriptions at once, so "no
 * responders" on a member's own subject means its connection is gone. A member that missed one
 * heartbeat, or was pointed at by a late ack or a failed fetch, is pinged the same way. The broker sees
 * a killed process's connection close only tens of ms after the kill (the kernel tears the process down
 * before it closes its sockets), so a ping sent meanwhile reaches its subscriptions and is never
 * answered: one unanswered after `PING_RETRY_MS` is followed by another, for up to
 * `PING_RETRY_WINDOW_MS`, instead of waiting for the next probe. Such a member
 * is `unreachable`: nobody waits for its acks and it is announced in heartbeats so every node checks it
 * itself. It is declared dead only when its subject stayed without responder for `reconnectGraceMs`
 * (a process killed), not when its client came back meanwhile (a reconnect: a link reset, a server of a
 * NATS cluster lost). A paused process keeps its subscriptions, so its pings time out instead: it stays
 * until `memberDropMs` of silence.
 *
 * Over 400 lines: heartbeats, probes and both verifications read and change one member table with its
 * timers; split apart they would share all of it.
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
  /**
   * `suspected` once it fell silent but still answered a ping; `unreachable` while its subject finds no
   * responder (its connection is gone), until it is back or declared dead.
   */
  state: 'alive' | 'suspected' | 'unreachable';
  /** When its subject first found no responder, while `unreachable`. */
  unreachableSince?: number;
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
   * subject finds no responder (its connection is gone) is dropped after `reconnectGraceMs` instead.
   */
  readonly memberDropMs: number;
  /** How long the verifying ping waits. */
  readonly pingTimeoutMs: number;
  /** How often this node pings its successor in the ring (0: never; detection then waits for a missed heartbeat). */
  readonly probeIntervalMs: number;
  /** How long a member's subject must stay without responder before it is declared dead (its client may be reconnecting). */
  readonly reconnectGraceMs: number;
  /** This node's HTTP base URL, carried in heartbeats so dashboards can reach every member. */
  readonly advertiseUrl?: string;
}

type Listener<T extends unknown[]> = (...args: T) => void;

/**
 * How long a ping may go unanswered before another follows it: a live member answers in about a
 * millisecond, while a ping that reached a killed member's subscriptions before the broker saw its
 * connection close is never answered (the next one finds its subject gone).
 */
export const PING_RETRY_MS = 10;

/**
 * How long after the first unanswered ping such retries go on: long enough for the broker to see a
 * killed process's connection close (measured 20-100 ms after SIGKILL on this repo's 2-core test
 * machine, the longer under load), short enough that a paused member gets at most ten pings in a row;
 * after it, probes and hints ping it at most once a probe interval, as before.
 */
export const PING_RETRY_WINDOW_MS = 100;

/** Tracks the other live members of the cluster. */
export class Membership {
  readonly #members = new Map<string, MemberInfo>();
  readonly #verifying = new Set<string>();
  /** Incarnations that left gracefully (the most recent 256): their late heartbeats are ignored. */
  readonly #departed = new Set<string>();
  readonly #joinListeners: Listener<[MemberInfo]>[] = [];
  readonly #leaveListeners: Listener<[MemberInfo, LeaveReason]>[] = [];
  readonly #readyListeners: Listener<[MemberInfo]>[] = [];
  readonly #unreachableListeners: Listener<[MemberInfo]>[] = [];
  /** When the latest probe or verification ping in flight to each member was sent. */
  readonly #probing = new Map<string, number>();
  /** Unreachable members' checks at the end of their reconnect grace. */
  readonly #confirming = new Map<string, ReturnType<typeof setTimeout>>();
  /** Pings asked for while one was in flight, sent once the probe interval allows. */
  readonly #followUps = new Map<string, ReturnType<typeof setTimeout>>();
  /** When the first of the pings to each member that are all still unanswered was sent. */
  readonly #unanswered = new Map<string, number>();
  /** The retry of each member's unanswered ping, due `PING_RETRY_MS` after it (see `PING_RETRY_WINDOW_MS`). */
  readonly #retries = new Map<string, ReturnType<typeof setTimeout>>();
  #subscription?: ChannelSubscription;
  #timer?: ReturnType<typeof setInterval>;
  #probeTimer?: ReturnType<typeof setInterval>;
  /** False while this node's own channel is down: its pings prove nothing then. */
  #channelUp = true;
  /** When this node's channel last came back: members get `reconnectGraceMs` from then to come back too. */
  #reconnectedAt = 0;
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
    this.bus.channel.onStatus((status) => {
      if (status === 'connected') {
        this.#channelUp = true;
        this.#reconnectedAt = Date.now();
      } else if (status !== 'error') this.#channelUp = false;
    });
    this.#beat(true);
    this.#timer = setInterval(() => this.#tick(), this.options.heartbeatIntervalMs);
    if (this.options.probeIntervalMs > 0)
      this.#probeTimer = setInterval(() => this.#probe(), this.options.probeIntervalMs);
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

  /** Other members that are ready and reachable, oldest first. */
  readyMembers(): MemberInfo[] {
    return this.members().filter((member) => member.ready && member.state !== 'unreachable');
  }

  /** False while `node` is a member whose subject finds no responder (see `MemberInfo.state`). */
  reachable(node: string): boolean {
    return this.#members.get(node)?.state !== 'unreachable';
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

  /** Calls `listener` when a member's subject finds no responder (it may be dead or reconnecting). */
  onUnreachable(listener: Listener<[MemberInfo]>): void {
    this.#unreachableListeners.push(listener);
  }

  /** Calls `listener` when a member leaves, is declared dead, or restarts under a new incarnation. */
  onLeave(listener: Listener<[MemberInfo, LeaveReason]>): void {
    this.#leaveListeners.push(listener);
  }

  /**
   * Checks `node` at once after a point-to-point message to it went unanswered or found nobody, or
   * another member announced it unreachable: pings its subject, and marks it `unreachable` when that
   * finds nobody (see the header). A member that answers, or whose ping times out (paused, slow), stays:
   * only `memberDropMs` of silence drops it then.
   */
  suspect(node: string): void {
    const member = this.#members.get(node);
    if (member && this.#running && member.state !== 'unreachable') this.#ping(member);
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
    clearInterval(this.#probeTimer);
    for (const timers of [this.#confirming, this.#followUps, this.#retries]) {
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
    }
    this.#unanswered.clear();
    try {
      this.bus.send(this.bus.subjects.heartbeat, 'hb', { started: this.startedAt, ready: false, leaving: true });
    } catch {
      // The channel may already be closed; others will drop us after memberDropMs.
    }
    this.#subscription?.unsubscribe();
    this.#members.clear();
  }

  #beat(hello: boolean): void {
    const unreachable = [...this.#members.values()].filter((m) => m.state === 'unreachable').map((m) => m.node);
    try {
      this.bus.send(this.bus.subjects.heartbeat, 'hb', {
        started: this.startedAt,
        ready: this.#ready,
        ...(hello ? { hello } : {}),
        ...(this.#draining ? { draining: true } : {}),
        ...(this.options.advertiseUrl !== undefined ? { url: this.options.advertiseUrl } : {}),
        ...(unreachable.length > 0 ? { unreachable } : {}),
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
      if (current.state === 'unreachable') this.#reachableAgain(current);
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
    // Another member found these subjects without responder: check them from here (never on its word alone).
    for (const node of body.unreachable ?? []) if (node !== this.bus.identity.node) this.suspect(node);
  }

  /** Pings this node's successor in the ring of reachable members (by node id), and every unreachable member. */
  #probe(): void {
    if (!this.#channelUp) return;
    const self = this.bus.identity.node;
    const ring = [...this.#members.values()]
      .filter((m) => m.state !== 'unreachable')
      .sort((a, b) => (a.node < b.node ? -1 : 1));
    const successor = ring.find((m) => m.node > self) ?? ring[0];
    if (successor) this.#ping(successor);
    for (const member of this.#members.values()) if (member.state === 'unreachable') this.#ping(member);
  }

  /**
   * Pings `member` unless a ping to it is in flight; then, unless it is unreachable already, once the
   * in-flight one went unanswered for `PING_RETRY_MS` (within `PING_RETRY_WINDOW_MS` of the first
   * unanswered ping; after it, for a probe interval), so a suspicion is never dropped. An unanswered
   * ping is followed by another `PING_RETRY_MS` later within that window, without a further hint.
   * "No responders" marks it unreachable, and dead once that lasted `reconnectGraceMs` (counted from
   * this node's own reconnect, if later); an answer or a timeout (it is subscribed, so connected) to a
   * ping sent since makes an unreachable member reachable again.
   */
  #ping(member: MemberInfo): void {
    if (!this.#running || this.#members.get(member.node) !== member || !this.#channelUp) return;
    const now = Date.now();
    const inFlight = this.#probing.get(member.node);
    const unansweredSince = this.#unanswered.get(member.node);
    const quick = unansweredSince !== undefined && now - unansweredSince < PING_RETRY_WINDOW_MS;
    const spacing = quick ? PING_RETRY_MS : Math.max(this.options.probeIntervalMs, 20);
    const waitMs = inFlight === undefined ? 0 : inFlight + spacing - now;
    if (waitMs > 0) {
      // A retry already due covers this hint.
      if (!this.#followUps.has(member.node) && !this.#retries.has(member.node) && member.state !== 'unreachable')
        this.#followUps.set(
          member.node,
          setTimeout(() => {
            this.#followUps.delete(member.node);
            if (member.state !== 'unreachable') this.#ping(member);
          }, waitMs),
        );
      return;
    }
    this.#probing.set(member.node, now);
    if (member.state !== 'unreachable') {
      const since = unansweredSince ?? now;
      this.#unanswered.set(member.node, since);
      if (now + PING_RETRY_MS - since < PING_RETRY_WINDOW_MS && !this.#retries.has(member.node))
        this.#retries.set(
          member.node,
          setTimeout(() => {
            this.#retries.delete(member.node);
            if (this.#unanswered.has(member.node) && member.state !== 'unreachable') this.#ping(member);
          }, PING_RETRY_MS),
        );
    }
    this.bus
      .request(this.bus.subjects.node(member.node), 'ping', {}, this.options.pingTimeoutMs)
      .then(
        () => {
          if (this.#members.get(member.node) !== member) return;
          this.#answered(member);
          if (this.#sentSinceUnreachable(member, now)) this.#reachableAgain(member);
        },
        (error: unknown) => {
          if (this.#members.get(member.node) !== member || !this.#running || !(error instanceof ChannelRequestError))
            return;
          if (error.kind === 'timeout' && this.#sentSinceUnreachable(member, now) && this.#channelUp)
            this.#reachableAgain(member);
          if (error.kind !== 'no-responders' || !this.#channelUp) return;
          this.#answered(member); // Its subject is gone: no retry can bring an answer.
          const at = Date.now();
          if (member.state !== 'unreachable') {
            member.state = 'unreachable';
            member.unreachableSince = at;
            this.logger.warn({ member: member.node }, 'member unreachable: its subject has no responder');
            for (const listener of this.#unreachableListeners) listener(member);
            this.#beat(false); // Tell the others, who check it themselves.
          }
          const waitMs = this.#graceLeft(member, at);
          if (waitMs <= 0) this.#remove(member, 'dead');
          // Checked again once the grace ran out (probes may find it back earlier).
          else if (!this.#confirming.has(member.node))
            this.#confirming.set(
              member.node,
              setTimeout(() => this.#confirm(member), waitMs),
            );
        },
      )
      .finally(() => {
        if (this.#probing.get(member.node) === now) this.#probing.delete(member.node);
      });
  }

  /** Ends the run of unanswered pings to `member` (an answer came, or "no responders"): no retry is due. */
  #answered(member: MemberInfo): void {
    this.#unanswered.delete(member.node);
    clearTimeout(this.#retries.get(member.node));
    this.#retries.delete(member.node);
  }

  #confirm(member: MemberInfo): void {
    this.#confirming.delete(member.node);
    this.#ping(member);
  }

  /** Whether `member` is unreachable and a ping sent at `sentAt` went after it was found so (an answer to it proves it back). */
  #sentSinceUnreachable(member: MemberInfo, sentAt: number): boolean {
    return member.state === 'unreachable' && sentAt >= (member.unreachableSince ?? Infinity);
  }

  /** How much of the reconnect grace an unreachable member has left (from the later of its silence and this node's reconnect). */
  #graceLeft(member: MemberInfo, now: number): number {
    return Math.max(member.unreachableSince ?? now, this.#reconnectedAt) + this.options.reconnectGraceMs - now;
  }

  #reachableAgain(member: MemberInfo): void {
    member.state = 'alive';
    this.logger.info(
      { member: member.node, unreachableMs: Date.now() - (member.unreachableSince ?? Date.now()) },
      'member reachable again',
    );
    delete member.unreachableSince;
  }

  #tick(): void {
    this.#beat(false);
    const now = Date.now();
    for (const member of this.#members.values()) {
      const silentMs = now - member.lastSeen;
      if (silentMs >= this.options.memberDropMs) {
        if (!this.#verifying.has(member.node)) void this.#verify(member);
      } else if (silentMs > this.options.heartbeatIntervalMs * 1.5) this.#ping(member); // One heartbeat missed.
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
    for (const timers of [this.#confirming, this.#followUps, this.#retries]) {
      clearTimeout(timers.get(member.node));
      timers.delete(member.node);
    }
    this.#unanswered.delete(member.node);
    if (reason === 'dead') this.logger.warn({ member: member.node, reason }, 'member declared dead');
    else this.logger.info({ member: member.node, reason }, 'member left');
    for (const listener of this.#leaveListeners) listener(member, reason);
  }
}
