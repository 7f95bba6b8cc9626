/**
 * `BackupManager` (Tomcat's BackupManager): every session lives on its primary and one backup chosen
 * round-robin; every other node holds only a proxy entry (key -> primary, backup) from the `.map`
 * broadcasts. A write goes point to point to the backup, so traffic per write does not grow with the
 * cluster. A request on a proxy fetches the session and takes it over; when a member dies, its
 * backups take over its primaries and its backed-up sessions get new backups.
 */
import type { ChannelSubscription } from '../channel/channel.ts';
import type { Incoming } from '../bus/cluster-bus.ts';
import type { MessageBody } from '../codec/envelope.ts';
import { ChannelRequestError } from '../errors.ts';
import type { SessionChanges } from '../session/session.ts';
import { attributeBytes, cloneState, isIdleExpired, latestStamp, mergeInto, type SessionState } from '../session/state.ts';
import { AckTracker } from './ack-tracker.ts';
import { PendingReplication, touchIntervalFor } from './pending-replication.ts';
import { recordWriteLag, type DeltaManagerOptions, type ManagerParts } from './delta-manager.ts';
import { sessionFields } from '../logger.ts';
import type { CommitOptions, SessionManager, StateTransferStatus } from './manager.ts';
import { OwnershipMap, roleOf, RoundRobin, type OwnershipEntry } from './ownership-map.ts';
import { SessionTable } from './session-table.ts';
import { DEFAULT_PAGE_LIMITS, receiveState, StateDonor, type StatePage } from './state-transfer.ts';

/** Timing and limits of the backup manager (the delta manager's, plus the fetch timeout). */
export interface BackupManagerOptions extends DeltaManagerOptions {
  /** How long a proxy waits for the primary or backup to hand over a session; default 5000 ms. */
  readonly fetchTimeoutMs: number;
}

/** Largest number of entries or sessions in one `.map` or `copy` message. */
const BATCH = 500;
/** How often a draining node looks again for sessions that still name it. */
const DRAIN_RETRY_MS = 250;
/**
 * Attribute bytes per `copy` message (a single larger session goes alone): a failover re-backs many
 * sessions to one node at once, and one message must stay under the broker's max payload (1 MB).
 */
const COPY_BYTES = 256 * 1024;

/** Primary/backup replication. */
export class BackupManager implements SessionManager {
  readonly name = 'backup';
  readonly stateTransfer: StateTransferStatus = { state: 'pending', sessionsReceived: 0, pages: 0 };
  readonly #table = new SessionTable();
  readonly #map = new OwnershipMap();
  readonly #roundRobin = new RoundRobin();
  readonly #acks = new AckTracker();
  readonly #pending: PendingReplication;
  readonly #subscriptions: ChannelSubscription[] = [];
  readonly #donor: StateDonor;
  /** Takeovers in flight, so concurrent requests for one session fetch it once. */
  readonly #resolving = new Map<string, Promise<SessionState | undefined>>();
  /** Sessions this primary handed to a fetching node, with the state it handed over (see `#handOver`). */
  readonly #handedOver = new Map<string, { node: string; state: SessionState }>();
  #buffer: Incoming[] | undefined = [];
  #sweepTimer?: ReturnType<typeof setInterval>;
  #ready = false;
  #messageCounter = 0;
  /** Set by `drain()`: no takeovers here any more, and sessions still involving this node are handed over. */
  #draining = false;
  #drainTimer?: ReturnType<typeof setInterval>;
  #handingOver?: Promise<void>;

  constructor(
    private readonly parts: ManagerParts,
    private readonly options: BackupManagerOptions,
  ) {
    this.#pending = new PendingReplication(options.touchIntervalMs);
    if (parts.observer) this.#table.observe(parts.observer);
    const source = {
      keys: () => [...this.#map.all()].map((entry) => entry.key),
      item: (key: string) => ({ entry: this.#map.raw(key) }),
    };
    this.#donor = new StateDonor(parts.bus, source, options.pageLimits ?? { ...DEFAULT_PAGE_LIMITS, maxSessions: 5000 }, parts.logger);
    parts.membership.onLeave((member) => {
      this.#acks.forget(member.node);
      if (this.#ready) this.#onMemberGone(member.node);
    });
    parts.membership.onReady(() => {
      if (this.#ready) this.#giveBackupsToUnprotected();
    });
  }

  get ready(): boolean {
    return this.#ready;
  }

  get #self(): string {
    return this.parts.clock.node;
  }

  async start(): Promise<void> {
    const { bus, membership } = this.parts;
    this.#subscriptions.push(bus.listen(bus.subjects.map, (incoming) => (this.#buffer ? this.#buffer.push(incoming) : this.#onMap(incoming))));
    membership.start();
    await receiveState(bus, this.options.stateTransferTimeoutMs, (page) => this.#applyPage(page), this.stateTransfer, this.parts.logger);
    const buffered = this.#buffer ?? [];
    this.#buffer = undefined;
    for (const incoming of buffered) this.#onMap(incoming);
    this.#subscriptions.push(bus.listen(bus.subjects.state, (incoming) => this.#donor.answer(incoming), { queue: 'donors' }));
    this.#sweepTimer = setInterval(() => this.sweep(Date.now()), this.options.sweepIntervalMs);
    this.#ready = true;
    membership.setReady(true);
  }

  async stop(): Promise<void> {
    this.#ready = false;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#drainTimer);
    this.#acks.releaseAll();
    this.parts.membership.stop();
    for (const subscription of this.#subscriptions.splice(0)) subscription.unsubscribe();
  }

  onDirect(incoming: Incoming): void {
    const { message } = incoming;
    switch (message.kind) {
      case 'ack':
        return this.#acks.acknowledge((message.body as MessageBody<'ack'>).id, message.node);
      case 'state-req':
        return this.#donor.answer(incoming);
      case 'copy':
        return this.#onCopy(incoming);
      case 'fetch':
        return this.#onFetch(incoming);
      default:
        return;
    }
  }

  find(key: string): SessionState | undefined {
    const entry = this.#map.get(key);
    if (!entry || roleOf(entry, this.#self) === 'proxy') return undefined;
    const state = this.#table.live(key);
    if (state && isIdleExpired(state, Date.now(), this.#graceFor(entry, state))) {
      this.#end(state, 'expired');
      return undefined;
    }
    return state;
  }

  resolve(key: string, routeHint?: string): Promise<SessionState | undefined> {
    const entry = this.#map.get(key);
    if (entry && roleOf(entry, this.#self) === 'primary') return Promise.resolve(this.find(key));
    // A draining node takes nothing over: the request is refused here and served by another member.
    if (this.#draining) return Promise.resolve(undefined);
    let running = this.#resolving.get(key);
    if (!running) {
      running = this.#takeOver(key, routeHint).finally(() => this.#resolving.delete(key));
      this.#resolving.set(key, running);
    }
    return running;
  }

  async commit(changes: SessionChanges, options: CommitOptions): Promise<void> {
    const { stats } = this.parts;
    const sends: Promise<void>[] = [];
    for (const delta of changes.deltas) {
      // Ended elsewhere while this request ran: the end wins, the request's changes are dropped.
      if (!delta.ended && this.#map.raw(delta.key)?.ended) continue;
      const outcome = this.#table.merge(delta);
      if (outcome.created) stats.sessionsCreated++;
      if (delta.ended) {
        if (outcome.ended) stats.sessionsInvalidated++;
        this.#pending.forget(delta.key);
        if (this.#map.raw(delta.key) || outcome.changed) sends.push(this.#broadcastEnd(delta, options.mode, options.route));
        continue;
      }
      let entry = this.#map.get(delta.key);
      if (!entry) {
        // A new session (or one whose entry we lost): this node is its primary.
        entry = this.#claim(delta.key, undefined);
      }
      if (!options.replicate) {
        this.#pending.stash(delta);
        continue;
      }
      const outgoing = this.#pending.due(delta, changes.modified, Date.now());
      if (!outgoing) continue;
      const holders = [entry.primary, entry.backup].filter((node) => node !== '' && node !== this.#self);
      if (holders.length > 0) sends.push(this.#copy(holders, [entry], [outgoing], options.mode, { write: true, route: options.route }));
      // Ownership moved away during the request: the holders have the change now, a proxy keeps no data.
      if (roleOf(entry, this.#self) === 'proxy') this.#table.remove(delta.key);
    }
    await Promise.all(sends);
  }

  activeSessions(): number {
    return this.#table.liveCount;
  }

  sessionCounts(): Record<string, number> {
    const counts = this.#map.counts(this.#self);
    return { total: counts.primary + counts.backup + counts.proxy, ...counts, tombstones: this.#table.tombstoneCount };
  }

  inspect(key: string): SessionState | undefined {
    return this.#table.get(key);
  }

  /** The ownership entry this node holds for a key (tests and diagnostics). */
  entry(key: string): OwnershipEntry | undefined {
    return this.#map.raw(key);
  }

  liveSessions(): IterableIterator<SessionState> {
    return this.#table.liveStates();
  }

  /** Live ownership entries this node knows. */
  entries(): IterableIterator<OwnershipEntry> {
    return this.#map.live();
  }

  /**
   * Hands every session this node is primary or backup of to other members: its backup (else a
   * member picked round-robin) becomes primary, a new backup is picked round-robin among the others,
   * both are sent the data and acknowledge it, then the new entries are broadcast. Resolves when no
   * session names this node any more; until `stop()` it keeps handing over sessions that still do
   * (made elsewhere before this node's `draining` heartbeat arrived).
   */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#drainTimer ??= setInterval(() => void this.#handOverAll(), DRAIN_RETRY_MS);
    while (this.#ready && this.drainRemaining() > 0) {
      await this.#handOverAll();
      if (this.drainRemaining() > 0) await new Promise((resolve) => setTimeout(resolve, DRAIN_RETRY_MS));
    }
  }

  drainRemaining(): number {
    const counts = this.#map.counts(this.#self);
    return counts.primary + counts.backup;
  }

  /** One hand-over round (one at a time). */
  #handOverAll(): Promise<void> {
    this.#handingOver ??= this.#handOverRound()
      .catch((error: unknown) => this.parts.logger.error({ error }, 'draining: hand-over round failed'))
      .finally(() => (this.#handingOver = undefined));
    return this.#handingOver;
  }

  async #handOverRound(): Promise<void> {
    const self = this.#self;
    const targets = this.#eligible();
    if (targets.length === 0) return; // Nobody to hand over to (yet): not safe to stop.
    const groups = new Map<string, { holders: string[]; entries: OwnershipEntry[]; states: SessionState[] }>();
    for (const entry of [...this.#map.live()]) {
      const role = roleOf(entry, self);
      if (role === 'proxy') continue;
      const other = role === 'primary' ? entry.backup : entry.primary;
      const primary = targets.includes(other) ? other : this.#roundRobin.pick(targets);
      const backup = this.#roundRobin.pick(targets.filter((node) => node !== primary));
      const next: OwnershipEntry = { key: entry.key, primary, backup, stamp: this.parts.clock.tick() };
      const holders = [primary, backup].filter((node) => node !== '');
      const id = holders.join(' ');
      let group = groups.get(id);
      if (!group) groups.set(id, (group = { holders, entries: [], states: [] }));
      group.entries.push(next);
      const state = this.#table.live(entry.key);
      if (state) {
        group.states.push(cloneState(state));
        // What the new primary got: `#handOver` passes the data on again only if it changed since.
        this.#handedOver.set(entry.key, { node: primary, state: cloneState(state) });
      }
    }
    if (groups.size === 0) return;
    const results = await Promise.all([...groups.values()].map(async (group) => ({ group, ok: await this.#copyAcked(group.holders, group.entries, group.states) })));
    const moved: OwnershipEntry[] = [];
    for (const { group, ok } of results) {
      if (!ok) continue; // Retried in the next round, with a newer entry.
      for (const entry of group.entries) {
        this.#mergeEntry(entry);
        moved.push(entry);
      }
    }
    this.#broadcastEntries(moved);
    this.parts.logger.info({ ...sessionFields(moved.map((e) => e.key)), moved: moved.length, remaining: this.drainRemaining() }, 'draining: sessions handed over');
  }

  /** Sends new entries with their data to the new holders; true once every holder acknowledged every batch. */
  async #copyAcked(holders: string[], entries: OwnershipEntry[], states: SessionState[]): Promise<boolean> {
    const { bus, logger } = this.parts;
    const byKey = new Map(entries.map((entry) => [entry.key, entry]));
    const batches: { e: OwnershipEntry[]; s: SessionState[] }[] = copyBatches(states).map((batch) => ({ e: batch.map((s) => byKey.get(s.key)!), s: batch }));
    const withData = new Set(states.map((state) => state.key));
    const bare = entries.filter((entry) => !withData.has(entry.key));
    for (let i = 0; i < bare.length; i += BATCH) batches.push({ e: bare.slice(i, i + BATCH), s: [] });
    const waits: Promise<string[]>[] = [];
    for (const batch of batches) {
      const id = `${bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`;
      waits.push(this.#acks.wait(id, holders, this.options.ackTimeoutMs));
      for (const holder of holders) {
        try {
          bus.send(bus.subjects.node(holder), 'copy', { id, e: batch.e, s: batch.s }, bus.subjects.node(this.#self));
        } catch (error) {
          this.#acks.cancel(id);
          logger.error({ holder, error }, 'draining: copy failed');
          return false;
        }
      }
    }
    const missing = [...new Set((await Promise.all(waits)).flat())];
    if (missing.length > 0) logger.warn({ missing, sessions: entries.length, timeoutMs: this.options.ackTimeoutMs }, 'draining: a new holder did not confirm, retrying');
    return missing.length === 0;
  }

  /** Expires idle primaries (and orphaned backups) everywhere and forgets old tombstones. */
  sweep(now: number): void {
    for (const state of this.#table.liveStates()) {
      const entry = this.#map.get(state.key);
      if (entry && roleOf(entry, this.#self) !== 'proxy' && isIdleExpired(state, now, this.#graceFor(entry, state))) this.#end(state, 'expired');
    }
    const before = now - this.options.tombstoneTtlMs;
    for (const key of this.#table.collect(before)) this.#pending.forget(key);
    for (const entry of [...this.#map.all()]) if (entry.ended && entry.stamp[0] < before) this.#map.delete(entry.key);
  }

  /** A backup copy expires only after an extra grace of two touch intervals (touches arrive at most once per interval). */
  #graceFor(entry: OwnershipEntry, state: SessionState): number {
    return roleOf(entry, this.#self) === 'primary' ? 0 : 2 * touchIntervalFor(state, this.options.touchIntervalMs);
  }

  // ---- ownership -------------------------------------------------------------------------

  /**
   * Makes this node the primary of `key`. The backup stays where the data already is when possible
   * (the old backup, else the old primary, unless it just failed to answer); otherwise a new one is
   * picked round-robin and sent a full copy. The new entry is broadcast so every proxy follows.
   */
  #claim(key: string, previous: OwnershipEntry | undefined, unreachable: string[] = []): OwnershipEntry {
    const alive = (node: string) => node !== '' && node !== this.#self && !unreachable.includes(node) && this.#eligible().includes(node);
    let backup = '';
    let needsCopy = false;
    if (previous && alive(previous.backup)) backup = previous.backup;
    else if (previous && alive(previous.primary)) backup = previous.primary;
    else {
      backup = this.#pickBackup(unreachable);
      needsCopy = backup !== '';
    }
    const entry: OwnershipEntry = { key, primary: this.#self, backup, stamp: this.parts.clock.tick() };
    this.#map.merge(entry);
    this.#broadcastEntries([entry]);
    const state = this.#table.get(key);
    if (needsCopy && state && previous) void this.#copy([backup], [entry], [state], 'async');
    return entry;
  }

  #pickBackup(exclude: string[] = []): string {
    return this.#roundRobin.pick(this.#eligible().filter((node) => !exclude.includes(node)));
  }

  /** Other members that may hold sessions: ready and not draining. */
  #eligible(): string[] {
    return this.parts.membership
      .readyMembers()
      .filter((m) => !m.draining)
      .map((m) => m.node);
  }

  /**
   * Finds a session this node is not primary of and takes it over. Asks its primary, then its backup
   * (for a key unknown here, the node the cookie's route names), following any newer entry a reply
   * brings. Even a backup asks the primary first, for writes still on their way (async mode); when the
   * primary does not answer, the backup serves its own copy. A node that did not answer is not made
   * the new backup.
   */
  async #takeOver(key: string, routeHint: string | undefined): Promise<SessionState | undefined> {
    const ended = () => !this.#map.get(key) && this.#map.raw(key) !== undefined;
    if (ended()) return undefined;
    const asked = new Set(['', this.#self]);
    const unreachable: string[] = [];
    for (;;) {
      const entry = this.#map.get(key);
      const node = (entry ? [entry.primary, entry.backup] : routeHint ? [routeHint] : []).find((n) => !asked.has(n) && this.parts.membership.has(n));
      if (node === undefined) break;
      asked.add(node);
      const found = await this.#fetch(node, key);
      if (!found) {
        unreachable.push(node);
        continue;
      }
      if (found.entry) this.#mergeEntry(found.entry);
      if (ended()) return undefined;
      if (!found.state || found.state.ended) continue;
      this.#table.merge(found.state);
      this.parts.clock.observe(latestStamp(found.state));
      const claimed = this.#claim(key, this.#map.get(key) ?? found.entry, unreachable);
      this.parts.logger.info({ session: key.slice(0, 8), route: routeHint, from: node, backup: claimed.backup }, 'took over a session');
      return this.#table.live(key);
    }
    const entry = this.#map.get(key);
    const state = entry && roleOf(entry, this.#self) === 'backup' ? this.find(key) : undefined;
    if (state) {
      this.#claim(key, entry, unreachable);
      return state;
    }
    if (entry) this.parts.logger.warn({ session: key.slice(0, 8), route: routeHint, primary: entry.primary, backup: entry.backup, unreachable }, 'session not reachable on its primary or backup');
    return undefined;
  }

  async #fetch(node: string, key: string): Promise<{ entry?: OwnershipEntry; state?: SessionState } | undefined> {
    try {
      const reply = await this.parts.bus.request(this.parts.bus.subjects.node(node), 'fetch', { k: key }, this.options.fetchTimeoutMs);
      if (reply.kind !== 'fetched') return undefined;
      const body = reply.body as MessageBody<'fetched'>;
      return { ...(body.e[0] ? { entry: body.e[0] } : {}), ...(body.s[0] ? { state: body.s[0] } : {}) };
    } catch (error) {
      if (!(error instanceof ChannelRequestError)) throw error;
      this.parts.logger.warn({ session: key.slice(0, 8), from: node, error: error.kind }, 'fetch failed');
      return undefined;
    }
  }

  #onFetch({ message, reply }: Incoming): void {
    if (!reply) return;
    const key = (message.body as MessageBody<'fetch'>).k;
    const entry = this.#map.raw(key);
    const state = this.#table.get(key);
    if (entry && roleOf(entry, this.#self) === 'primary' && state && !state.ended) this.#handedOver.set(key, { node: message.node, state: cloneState(state) });
    this.parts.bus.send(reply, 'fetched', { e: entry ? [entry] : [], s: state && !state.ended ? [state] : [] });
  }

  /** Merges an entry and adjusts local data to this node's new role. */
  #mergeEntry(entry: OwnershipEntry): void {
    this.parts.clock.observe(entry.stamp);
    if (!this.#map.merge(entry)) return;
    if (entry.ended) {
      // The ended entry is the tombstone here: it does not say why the session ended, so live data is
      // dropped rather than ended with a guessed reason (the node that ended it keeps the real one).
      if (this.#table.live(entry.key)) this.#table.remove(entry.key);
      this.#pending.forget(entry.key);
      this.#handedOver.delete(entry.key);
    } else if (roleOf(entry, this.#self) === 'proxy') {
      this.#handOver(entry);
      this.#table.remove(entry.key);
      this.#pending.forget(entry.key);
    }
  }

  /**
   * This node became a proxy of a session it holds data for. Unless the new primary fetched exactly
   * this state from here, the data goes to it: a write committed here while the ownership moved (two
   * proxies taking one session over at once, or a request still running on the old primary) would
   * otherwise be missing on the new primary.
   */
  #handOver(entry: OwnershipEntry): void {
    const state = this.#table.live(entry.key);
    const handed = this.#handedOver.get(entry.key);
    this.#handedOver.delete(entry.key);
    if (!state || !this.parts.membership.has(entry.primary)) return;
    if (handed?.node === entry.primary && !mergeInto(cloneState(handed.state), state)) return;
    this.#pass(entry.primary, entry, state);
  }

  #onMap({ message }: Incoming): void {
    if (message.kind !== 'map') return;
    for (const entry of (message.body as MessageBody<'map'>).e) this.#mergeEntry(entry);
  }

  #applyPage(page: StatePage): void {
    for (const entry of page.entries) this.#mergeEntry(entry);
    for (const state of page.sessions) this.#table.merge(state);
  }

  // ---- data ------------------------------------------------------------------------------

  /**
   * Session data for this node as primary or backup; a proxy forwards it once to the current primary,
   * and a primary passes data that did not come from its backup on to the backup, so both hold it.
   */
  #onCopy({ message, reply }: Incoming): void {
    if (message.kind !== 'copy') return;
    const body = message.body as MessageBody<'copy'>;
    for (const entry of body.e) this.#mergeEntry(entry);
    const passOn: [string, OwnershipEntry, SessionState][] = [];
    const applied: SessionState[] = [];
    for (const state of body.s) {
      this.parts.clock.observe(latestStamp(state));
      const entry = this.#map.get(state.key);
      const role = entry && roleOf(entry, this.#self);
      if (entry && role === 'proxy') {
        // The sender's view is stale (ownership moved, e.g. this node drained): both current holders need the data.
        if (!body.fwd) passOn.push([entry.primary, entry, state]);
        if (!body.fwd && entry.backup !== '' && entry.backup !== message.node) passOn.push([entry.backup, entry, state]);
      } else if (entry || state.ended) {
        const { changed } = this.#table.merge(state);
        if (body.write) applied.push(state);
        if (entry && role === 'primary' && changed && entry.backup !== '' && entry.backup !== message.node) passOn.push([entry.backup, entry, state]);
      }
    }
    recordWriteLag(this.parts.stats, applied);
    for (const [node, entry, state] of passOn) this.#pass(node, entry, state);
    if (reply) this.parts.bus.send(reply, 'ack', { id: body.id });
  }

  /** Sends one session's data to another holder, unacknowledged and marked so that it travels no further. */
  #pass(node: string, entry: OwnershipEntry, state: SessionState): void {
    const id = `${this.parts.bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`;
    try {
      this.parts.bus.send(this.parts.bus.subjects.node(node), 'copy', { id, e: [entry], s: [state], fwd: true });
    } catch (error) {
      this.parts.stats.replicationErrors++;
      this.parts.logger.error({ session: state.key.slice(0, 8), to: node, error }, 'passing session data on failed');
    }
  }

  /**
   * Sends session data (batched) to data holders; in `ack` mode waits until each applied it. `write`
   * marks a request's write, whose replication lag the holders measure.
   */
  async #copy(
    holders: string[],
    entries: OwnershipEntry[],
    states: SessionState[],
    mode: CommitOptions['mode'],
    { write = false, route }: { write?: boolean; route?: string | undefined } = {},
  ): Promise<void> {
    const { bus, stats, logger } = this.parts;
    const waits: Promise<string[]>[] = [];
    for (const batch of copyBatches(states)) {
      const id = `${bus.identity.incarnation.slice(0, 8)}-${++this.#messageCounter}`;
      const batchKeys = new Set(batch.map((s) => s.key));
      const batchEntries = entries.filter((e) => batchKeys.has(e.key));
      if (mode === 'ack') waits.push(this.#acks.wait(id, holders, this.options.ackTimeoutMs));
      for (const holder of holders) {
        try {
          bus.send(bus.subjects.node(holder), 'copy', { id, e: batchEntries, s: batch, ...(write ? { write } : {}) }, mode === 'ack' ? bus.subjects.node(this.#self) : undefined);
        } catch (error) {
          stats.replicationErrors++;
          logger.error({ ...sessionFields(batch.map((s) => s.key)), route, holder, error }, 'copy to backup failed');
        }
      }
    }
    const missing = (await Promise.all(waits)).flat();
    if (missing.length > 0) {
      stats.acksTimedOut++;
      logger.warn({ ...sessionFields(states.map((s) => s.key)), route, missing, timeoutMs: this.options.ackTimeoutMs }, 'ack timeout: the backup did not confirm the write');
    }
  }

  #broadcastEntries(entries: OwnershipEntry[]): void {
    for (let i = 0; i < entries.length; i += BATCH) {
      try {
        this.parts.bus.send(this.parts.bus.subjects.map, 'map', { e: entries.slice(i, i + BATCH) });
      } catch (error) {
        this.parts.stats.replicationErrors++;
        this.parts.logger.error({ ...sessionFields(entries.map((e) => e.key)), entries: entries.length, error }, 'map broadcast failed');
      }
    }
  }

  /** Ends a session everywhere: the ended entry goes to every node; in `ack` mode the data holders confirm. */
  async #broadcastEnd(delta: SessionState, mode: CommitOptions['mode'], route?: string): Promise<void> {
    const previous = this.#map.raw(delta.key);
    const entry: OwnershipEntry = { key: delta.key, primary: previous?.primary ?? this.#self, backup: previous?.backup ?? '', stamp: delta.ended!.stamp, ended: true };
    this.#mergeEntry(entry);
    this.#broadcastEntries([entry]);
    const holders = [entry.primary, entry.backup].filter((node) => node !== '' && node !== this.#self && this.parts.membership.has(node));
    if (mode === 'ack' && holders.length > 0) await this.#copy(holders, [entry], [delta], 'ack', { write: true, route });
  }

  #end(state: SessionState, reason: 'expired' | 'invalidated'): void {
    const end: SessionState = { ...cloneState(state), attributes: new Map(), ended: { stamp: this.parts.clock.tick(), reason } };
    if (this.#table.merge(end).ended && reason === 'expired') this.parts.stats.sessionsExpired++;
    this.parts.logger.info({ session: state.key.slice(0, 8), reason }, 'session ended');
    void this.#broadcastEnd(end, 'async');
  }

  // ---- membership ------------------------------------------------------------------------

  /**
   * A member left or died. Its primaries are taken over by their backups; sessions it backed up get
   * a new backup from their primary; sessions that lost both are forgotten.
   */
  #onMemberGone(gone: string): void {
    const self = this.#self;
    const alive = (node: string) => node === self || this.parts.membership.has(node);
    const changed: OwnershipEntry[] = [];
    const copies = new Map<string, SessionState[]>();
    for (const entry of [...this.#map.live()]) {
      if (entry.primary !== gone && entry.backup !== gone) continue;
      const survivor = entry.primary === gone ? entry.backup : entry.primary;
      if (survivor === '' || !alive(survivor)) {
        this.#map.delete(entry.key);
        this.#table.remove(entry.key);
        continue;
      }
      if (survivor !== self) continue; // The survivor repairs it and broadcasts the new entry.
      const backup = this.#pickBackup([gone]);
      const next: OwnershipEntry = { key: entry.key, primary: self, backup, stamp: this.parts.clock.tick() };
      this.#map.merge(next);
      changed.push(next);
      const state = this.#table.live(entry.key);
      if (backup !== '' && state) copies.set(backup, [...(copies.get(backup) ?? []), state]);
    }
    if (changed.length === 0) return;
    this.#broadcastEntries(changed);
    for (const [backup, states] of copies) void this.#copy([backup], changed, states, 'async');
    this.parts.logger.info({ gone, repaired: changed.length }, 'took over and re-backed sessions of a departed member');
  }

  /** A member became ready: primaries without a backup get one. */
  #giveBackupsToUnprotected(): void {
    const self = this.#self;
    const changed: OwnershipEntry[] = [];
    const copies = new Map<string, SessionState[]>();
    for (const entry of [...this.#map.live()]) {
      if (entry.primary !== self || entry.backup !== '') continue;
      const backup = this.#pickBackup();
      if (backup === '') return;
      const next: OwnershipEntry = { ...entry, backup, stamp: this.parts.clock.tick() };
      this.#map.merge(next);
      changed.push(next);
      const state = this.#table.live(entry.key);
      if (state) copies.set(backup, [...(copies.get(backup) ?? []), state]);
    }
    if (changed.length === 0) return;
    this.#broadcastEntries(changed);
    for (const [backup, states] of copies) void this.#copy([backup], changed, states, 'async');
  }
}

/** Splits session data into `copy` batches of at most `BATCH` sessions and about `COPY_BYTES` of attributes. */
function copyBatches(states: SessionState[]): SessionState[][] {
  const batches: SessionState[][] = [];
  let bytes = 0;
  for (const state of states) {
    const size = 200 + attributeBytes(state);
    const last = batches.at(-1);
    if (last && last.length < BATCH && bytes + size <= COPY_BYTES) {
      last.push(state);
      bytes += size;
    } else {
      batches.push([state]);
      bytes = size;
    }
  }
  return batches;
}
