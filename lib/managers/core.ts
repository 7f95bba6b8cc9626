/**
 * `ReplicaCore`: what both replication strategies hold and do the same way. It owns the session
 * table, the acks, pending replication, the state donor and the subscriptions; it runs the join
 * lifecycle (subscribe and buffer, join, state transfer, drain the buffer, serve donors, sweep,
 * ready), makes message ids and ends sessions. Each manager composes one; it is not a base class.
 */
import type { ChannelSubscription } from '../channel/channel.ts';
import type { Incoming } from '../bus/cluster-bus.ts';
import type { OwnershipEntry } from '../codec/envelope.ts';
import { ChannelRequestError, MalformedMessageError } from '../errors.ts';
import { sessionFields } from '../logger.ts';
import { cloneState, latestStamp, liveUntil, type EndReason, type SessionState } from '../session/state.ts';
import { AckTracker } from './ack-tracker.ts';
import type { ManagerParts, StateTransferStatus } from './manager.ts';
import { PendingReplication, touchIntervalFor } from './pending-replication.ts';
import { SessionTable } from './session-table.ts';
import { receiveState, StateDonor, type PageLimits, type StatePage, type StateSource } from './state-transfer.ts';

/** What a `fetch` of one session from a member got. */
export type FetchOutcome =
  | { readonly kind: 'answered'; readonly entry?: OwnershipEntry; readonly state?: SessionState }
  | { readonly kind: 'gone' | 'unreachable' };

/** What the core needs to know from its manager. */
export interface ReplicaCoreOptions {
  readonly touchIntervalMs: number;
  readonly sweepIntervalMs: number;
  readonly tombstoneTtlMs: number;
  readonly stateTransferTimeoutMs: number;
  /** How long a joiner waits for one page from a donor before it asks the next ready member. */
  readonly ackTimeoutMs: number;
  /** Page limits of the state this node donates. */
  readonly pageLimits: PageLimits;
  /** What this node donates to joiners. */
  readonly source: StateSource;
}

/** The state, timers and lifecycle both managers share. */
export class ReplicaCore {
  readonly table = new SessionTable();
  readonly acks: AckTracker;
  readonly pending: PendingReplication;
  readonly donor: StateDonor;
  readonly stateTransfer: StateTransferStatus = { state: 'pending', sessionsReceived: 0, pages: 0 };
  readonly #subscriptions: ChannelSubscription[] = [];
  #sweepTimer?: ReturnType<typeof setInterval>;
  #ready = false;
  #messageCounter = 0;

  constructor(
    readonly parts: ManagerParts,
    private readonly options: ReplicaCoreOptions,
  ) {
    this.acks = new AckTracker(
      (members) => {
        for (const node of members) parts.membership.suspect(node);
      },
      (node) => parts.membership.reachable(node),
      (count) => (parts.stats.messagesResent += count),
    );
    this.pending = new PendingReplication(options.touchIntervalMs);
    if (parts.observer) this.table.observe(parts.observer);
    this.donor = new StateDonor(parts.bus, options.source, options.pageLimits, parts.logger);
    parts.membership.onLeave((member) => this.acks.forget(member.node));
    parts.membership.onUnreachable((member) => this.acks.forget(member.node));
    // Back after a disconnect: what was sent just before it, or the acks to it, may be lost with the connection.
    parts.bus.channel.onStatus((status) => {
      if (status === 'connected') this.acks.resendAll();
    });
  }

  /** True once the join finished: the node may serve traffic. */
  get ready(): boolean {
    return this.#ready;
  }

  /** This node's id. */
  get self(): string {
    return this.parts.clock.node;
  }

  /** A message id unique in the cluster: the process run's incarnation prefix and a counter. */
  nextMessageId(prefix = ''): string {
    return `${prefix}${this.parts.bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`;
  }

  /** Subscribes for as long as the manager runs. */
  listen(subject: string, handler: (incoming: Incoming) => void, options?: { queue?: string }): void {
    this.#subscriptions.push(this.parts.bus.listen(subject, handler, options));
  }

  /**
   * Joins through a peer: subscribes to `subject` first and buffers what arrives, so nothing
   * published during the transfer is missed; starts membership; fetches the state of a ready member
   * into `applyPage`; then hands the buffered messages to `handle`, and every later one as it comes.
   */
  async joinFromPeer(
    subject: string,
    handle: (incoming: Incoming) => void,
    applyPage: (page: StatePage) => void,
  ): Promise<void> {
    let buffer: Incoming[] | undefined = [];
    this.listen(subject, (incoming) => (buffer ? buffer.push(incoming) : handle(incoming)));
    this.parts.membership.start();
    await this.receiveState(applyPage);
    const buffered = buffer;
    buffer = undefined;
    for (const incoming of buffered) handle(incoming);
  }

  /**
   * The join's state transfer into `apply`, reported on `stateTransfer`. Members answer a joiner's
   * hello heartbeat at once, so after two heartbeat intervals this node knows who can donate. Nobody:
   * it starts empty at once (a passive subscriber on the cluster's subjects, such as an operator's
   * `nats sub 'sessrep.>'`, swallows the request without answering, so "no responders" alone is no
   * proof). Otherwise it asks the ready members directly, one after another, until one sends every
   * page: a donor that fails or stops answering mid-transfer is replaced by the next (pages already
   * merged stay: merging again is harmless).
   */
  async receiveState(apply: (page: StatePage) => void): Promise<void> {
    const { bus, logger, membership } = this.parts;
    const status = this.stateTransfer;
    const started = Date.now();
    const deadline = started + this.options.stateTransferTimeoutMs;
    const window = Math.min(2 * membership.heartbeatIntervalMs, this.options.stateTransferTimeoutMs);
    while (membership.readyMembers().length === 0 && Date.now() - started < window)
      await new Promise((resolve) => setTimeout(resolve, 10));
    const donors = membership.readyMembers().map((member) => member.node);
    if (donors.length === 0) {
      status.state = 'skipped';
      status.detail = 'no ready member answered the hello heartbeat: started empty';
      status.durationMs = Date.now() - started;
      logger.info({}, 'state transfer: no ready member, starting empty');
      return;
    }
    // A log-mode donor answers its first page once it applied the log (up to 5 s).
    const pageTimeoutMs = Math.max(10_000, 2 * this.options.ackTimeoutMs);
    for (const [i, donor] of donors.entries()) {
      const timeoutMs = deadline - Date.now();
      if (timeoutMs <= 0) break;
      await receiveState(bus, { timeoutMs, apply, status, logger, donor, pageTimeoutMs });
      if (status.state === 'done') break;
      if (i < donors.length - 1)
        logger.warn({ donor, next: donors[i + 1] }, 'state transfer: asking the next ready member');
    }
    status.durationMs = Date.now() - started;
  }

  /**
   * Ends the join: serves state transfers to joiners (one ready member per request, through the
   * queue group `donors`), starts the sweep timer and announces this node ready.
   */
  serve(answer: (incoming: Incoming) => void, sweepTick: () => void): void {
    this.listen(this.parts.bus.subjects.state, answer, { queue: 'donors' });
    this.#sweepTimer = setInterval(sweepTick, this.options.sweepIntervalMs);
    this.#ready = true;
    this.parts.membership.setReady(true);
  }

  /**
   * Stops the sweep, releases every ack waiter, runs `beforeLeaving` (a last flush) while still
   * ready, then leaves the cluster and unsubscribes.
   */
  async stop(beforeLeaving?: () => Promise<void>): Promise<void> {
    clearInterval(this.#sweepTimer);
    this.acks.releaseAll();
    if (beforeLeaving) await beforeLeaving();
    this.#ready = false;
    this.parts.membership.stop();
    for (const subscription of this.#subscriptions.splice(0)) subscription.unsubscribe();
  }

  /** Handles the direct messages both strategies share (acks, state-transfer pages); false for any other kind. */
  onDirect(incoming: Incoming): boolean {
    const { message } = incoming;
    if (message.kind === 'ack') this.acks.acknowledge(message.body.id, message.node);
    else if (message.kind === 'state-req') this.donor.answer(incoming);
    else return false;
    return true;
  }

  /**
   * Asks `node` for its ownership entry and live state of `key` (a `fetch`): `answered` with what it
   * holds, `gone` when nobody listens on its subject (its process is likely gone: it is suspected at
   * once), or `unreachable` when it did not answer within `timeoutMs` or its answer was of no use (of
   * another kind, or not decodable). Rejects only on an error that is none of these.
   */
  async fetch(node: string, key: string, timeoutMs: number): Promise<FetchOutcome> {
    const { bus, logger } = this.parts;
    try {
      const reply = await bus.request(bus.subjects.node(node), 'fetch', { k: key }, timeoutMs);
      if (reply.kind !== 'fetched') return { kind: 'unreachable' };
      const [entry] = reply.body.e;
      const [state] = reply.body.s;
      return { kind: 'answered', ...(entry ? { entry } : {}), ...(state ? { state } : {}) };
    } catch (error) {
      // An answer that does not decode (another cluster's keys, a foreign responder) is no answer, like one of another kind.
      if (error instanceof MalformedMessageError) {
        logger.warn({ ...sessionFields([key]), from: node, error: error.message }, 'fetch failed');
        return { kind: 'unreachable' };
      }
      if (!(error instanceof ChannelRequestError)) throw error;
      logger.warn({ ...sessionFields([key]), from: node, error: error.kind }, 'fetch failed');
      if (error.kind !== 'no-responders') return { kind: 'unreachable' };
      // Verify and drop it now, not after memberDropMs.
      this.parts.membership.suspect(node);
      return { kind: 'gone' };
    }
  }

  /**
   * Merges states received from peers, moving this node's clock past them. A live copy of a key this
   * node does not know that no node could still hold live (idle past `liveUntil`: a replayed message,
   * a node back after the end was forgotten) creates nothing.
   */
  applyStates(states: readonly SessionState[]): void {
    const now = Date.now();
    for (const state of states) {
      this.parts.clock.observe(latestStamp(state));
      if (!state.ended && !this.table.get(state.key) && this.#liveUntil(state) <= now) continue;
      this.table.merge(state);
    }
  }

  /**
   * Ends a live session here and returns its tombstone, for the strategy to replicate. Counts the
   * expiry when this merge ended it.
   */
  endSession(state: SessionState, reason: EndReason): SessionState {
    const end: SessionState = {
      ...cloneState(state),
      attributes: new Map(),
      ended: { stamp: this.parts.clock.tick(), reason },
    };
    if (this.table.merge(end).ended && reason === 'expired') this.parts.stats.sessionsExpired++;
    this.parts.logger.info({ ...sessionFields([state.key]), reason }, 'session ended');
    return end;
  }

  /**
   * The extra grace a node that is not the session's authority (delta: not its last accessor;
   * backup: not its primary) waits before expiring it: two touch intervals, because touches reach
   * it at most once per interval (Tomcat waits 2x on replicas).
   */
  replicaGrace(state: SessionState): number {
    return 2 * touchIntervalFor(state, this.options.touchIntervalMs);
  }

  /**
   * Forgets tombstones, with their pending replication, once no copy of the session could come back:
   * `tombstoneTtlMs` after the end, and not before any copy left on a node that was away (paused,
   * partitioned) would have been dropped as idle (`liveUntil`). Ended stays ended: a node back from a
   * partition longer than the TTL finds the end still there. The tombstone of a session that never
   * expires is kept.
   */
  collectTombstones(now: number): void {
    const ttl = this.options.tombstoneTtlMs;
    const due = (tombstone: SessionState) =>
      tombstone.ended!.stamp[0] + ttl <= now && this.#liveUntil(tombstone) <= now;
    for (const key of this.table.collect(due)) this.pending.forget(key);
  }

  /** `liveUntil` with a replica's grace; infinite for a session that never expires. */
  #liveUntil(state: SessionState): number {
    return liveUntil(state, this.replicaGrace(state)) ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Records the replication lag of applied deltas, one sample per session delta (a message may batch
   * several requests): now minus the wall time of the delta's newest stamp, the moment of its write.
   */
  recordLag(states: readonly SessionState[]): void {
    if (states.length === 0) return;
    const now = Date.now();
    for (const state of states) this.parts.stats.recordLag(now - latestStamp(state)[0], now);
  }
}
