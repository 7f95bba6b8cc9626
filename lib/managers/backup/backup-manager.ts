/**
 * `BackupManager` (Tomcat's BackupManager): every session lives on its primary and one backup chosen
 * round-robin; every other node holds only a proxy entry (key -> primary, backup) from the `.map`
 * broadcasts. A write goes point to point to the backup, so traffic per write does not grow with the
 * cluster. A request on a proxy fetches the session and takes it over; when a member dies, its
 * backups take over its primaries and its backed-up sessions get new backups.
 *
 * This file holds commit, apply and expiry; `ownership.ts` decides who holds what, `takeover.ts`
 * fetches sessions, `hand-over.ts` drains, and `copies.ts` sends data and entries.
 */
import type { Incoming } from '../../bus/cluster-bus.ts';
import { SESSION_PREFIX_LENGTH, sessionFields } from '../../logger.ts';
import type { Stamp } from '../../session/clock.ts';
import type { SessionChanges } from '../../session/session.ts';
import { isIdleExpired, latestStamp, type SessionState } from '../../session/state.ts';
import { ReplicaCore } from '../core.ts';
import { GapWatch } from '../gaps.ts';
import type {
  CommitOptions,
  CommonManagerOptions,
  ManagerParts,
  SendMode,
  SessionManager,
  SessionSummary,
  StateTransferStatus,
} from '../manager.ts';
import { type VersionWait, VersionWaiter, type VersionWaitOptions } from '../read-your-writes.ts';
import { roleOf, type OwnershipEntry } from './ownership-map.ts';
import { CopySender } from './copies.ts';
import { GapRecovery } from './gap-recovery.ts';
import { HandOver } from './hand-over.ts';
import { Ownership } from './ownership.ts';
import { Takeover } from './takeover.ts';

/** Timing and limits of the backup manager. */
export interface BackupManagerOptions extends CommonManagerOptions {
  /** How long a proxy waits for the primary or backup to hand over a session. */
  readonly fetchTimeoutMs: number;
  /**
   * After the channel reconnects, or after this process stalled for longer than this, the node may
   * have missed ownership broadcasts and copies: it waits this long for members to be back, then
   * reconciles its ownership map with every ready member (`GapRecovery`); it ends no session until
   * then, and after a gap longer than this it serves none either (`catchingUp`). The cluster passes
   * `memberDropMs`. @default 3000
   */
  readonly resyncAfterMs?: number;
}

/** Primary/backup replication. */
export class BackupManager implements SessionManager {
  readonly name = 'backup';
  /** The core's status object, updated in place as the join goes. */
  readonly stateTransfer: StateTransferStatus;
  readonly #core: ReplicaCore;
  readonly #copies: CopySender;
  readonly #ownership: Ownership;
  readonly #takeover: Takeover;
  readonly #handOver: HandOver;
  readonly #watch: GapWatch;
  readonly #gaps: GapRecovery;
  #lastSweepAt = Date.now();
  readonly #tombstoneTtlMs: number;
  readonly #sweepIntervalMs: number;
  /** Entries naming this node primary without data here, seen by the last sweep (see `#sweepHeldWithoutData`). */
  #withoutData = new Set<string>();
  readonly #versions: VersionWaiter;

  constructor(parts: ManagerParts, options: BackupManagerOptions) {
    this.#tombstoneTtlMs = options.tombstoneTtlMs;
    this.#sweepIntervalMs = options.sweepIntervalMs;
    const source = {
      keys: () => [...this.#ownership.map.all()].map((entry) => entry.key),
      item: (key: string) => ({ entry: this.#ownership.map.raw(key) }),
    };
    const core = new ReplicaCore(parts, { ...options, source });
    this.#core = core;
    this.stateTransfer = core.stateTransfer;
    this.#copies = new CopySender(core, options.ackTimeoutMs, () => this.#watch.channelUp);
    this.#ownership = new Ownership(core, this.#copies);
    this.#takeover = new Takeover(core, this.#ownership, options.fetchTimeoutMs, (key) => this.find(key));
    this.#handOver = new HandOver(core, this.#ownership, this.#copies, options.ackTimeoutMs);
    this.#watch = new GapWatch(core, options.resyncAfterMs ?? 3000);
    this.#gaps = new GapRecovery(core, this.#watch, this.#ownership, this.#copies, this.#takeover, options);
    this.#versions = new VersionWaiter(core, {
      state: (key) => core.table.get(key),
      ended: (key) => this.#ownership.map.raw(key)?.ended === true || core.table.get(key)?.ended !== undefined,
      // A proxy keeps what it pulled even when it then answers 503, on purpose: the merge only makes its copy newer, a
      // proxy serves none without a takeover fetch first (`find`), an end or a newer entry naming it proxy removes it,
      // and the next wait or takeover starts from it (it also counts in `activeSessions` here until then).
      pull: async (node, key, timeoutMs) => {
        const found = await core.fetch(node, key, timeoutMs);
        if (found.kind !== 'answered') return found.kind;
        if (found.entry) this.#ownership.merge(found.entry);
        if (found.state && !found.state.ended && !this.#ownership.map.raw(key)?.ended) {
          parts.clock.observe(latestStamp(found.state));
          core.table.merge(found.state);
        }
        return found.kind;
      },
    });
    parts.membership.onLeave((member) => {
      if (core.ready) this.#ownership.memberGone(member.node);
    });
    parts.membership.onReady(() => {
      if (core.ready) this.#ownership.protectUnprotected();
    });
  }

  get ready(): boolean {
    return this.#core.ready && !this.catchingUp;
  }

  /** See `SessionManager.drained` (`GapWatch.drained`). */
  drained(): Promise<void> | undefined {
    return this.#core.ready ? this.#watch.drained() : undefined;
  }

  /** True while this node, after a long gap (see `GapWatch.long`), has not reconciled: it serves no session until then. */
  get catchingUp(): boolean {
    return this.#core.ready && this.#watch.long;
  }

  async start(): Promise<void> {
    const core = this.#core;
    await core.joinFromPeer(
      core.parts.bus.subjects.map,
      (incoming) => this.#onMap(incoming),
      (page) => {
        for (const entry of page.entries) this.#ownership.merge(entry);
        for (const state of page.sessions) core.table.merge(state);
      },
    );
    this.#lastSweepAt = Date.now();
    core.serve(
      (incoming) => core.donor.answer(incoming),
      () => this.#sweepTick(Date.now()),
    );
    this.#gaps.watch();
  }

  async stop(): Promise<void> {
    this.#gaps.stop();
    this.#handOver.stop();
    this.#copies.flush();
    await this.#core.stop();
  }

  onDirect(incoming: Incoming): void {
    if (this.#core.onDirect(incoming)) return;
    if (incoming.message.kind === 'copy') this.#onCopy(incoming);
    else if (incoming.message.kind === 'fetch') this.#takeover.onFetch(incoming);
  }

  find(key: string): SessionState | undefined {
    const entry = this.#ownership.map.get(key);
    if (!entry || roleOf(entry, this.#core.self) === 'proxy') return undefined;
    const state = this.#core.table.live(key);
    if (state && isIdleExpired(state, Date.now(), this.#graceFor(entry, state)) && this.#gaps.mayExpire()) {
      this.#end(state);
      return undefined;
    }
    return state;
  }

  resolve(key: string, routeHint?: string): Promise<SessionState | undefined> {
    const entry = this.#ownership.map.get(key);
    // A primary without data (its backup copy was lost before it was promoted) asks the members instead.
    if (entry && roleOf(entry, this.#core.self) === 'primary' && this.#core.table.get(key))
      return Promise.resolve(this.find(key));
    // A draining node takes nothing over: the request is refused here and served by another member.
    if (this.#handOver.draining) return Promise.resolve(undefined);
    return this.#takeover.resolve(key, routeHint);
  }

  /**
   * See `SessionManager.awaitVersion`: the writer (the primary it made itself) and the members are asked
   * for the session. Call `resolve` again after `current`: the data may have arrived on a proxy.
   */
  awaitVersion(key: string, version: Stamp, options: VersionWaitOptions): Promise<VersionWait> {
    return this.#versions.wait(key, version, options);
  }

  async commit(changes: SessionChanges, options: CommitOptions): Promise<void> {
    const { table, pending, parts, self } = this.#core;
    const { map } = this.#ownership;
    const sends: Promise<void>[] = [];
    for (const delta of changes.deltas) {
      // Ended elsewhere while this request ran: the end wins, the request's changes are dropped.
      if (!delta.ended && map.raw(delta.key)?.ended) continue;
      const outcome = table.merge(delta);
      if (outcome.created) parts.stats.sessionsCreated++;
      if (delta.ended) {
        if (outcome.ended) parts.stats.sessionsInvalidated++;
        pending.forget(delta.key);
        if (map.raw(delta.key) || outcome.changed) sends.push(this.#broadcastEnd(delta, options.mode, options.route));
        continue;
      }
      // A new session (or one whose entry we lost): this node is its primary.
      const entry = map.get(delta.key) ?? this.#ownership.claim(delta.key, undefined);
      if (!options.replicate) {
        pending.stash(delta);
        continue;
      }
      const outgoing = pending.due(delta, changes.modified, Date.now());
      if (!outgoing) continue;
      const holders = [entry.primary, entry.backup].filter((node) => node !== '' && node !== self);
      if (holders.length > 0)
        sends.push(
          this.#copies.copy(holders, [entry], [outgoing], options.mode, { write: true, route: options.route }),
        );
      // Ownership moved away during the request: the holders have the change now, a proxy keeps no data.
      if (roleOf(entry, self) === 'proxy') table.remove(delta.key);
    }
    await Promise.all(sends);
  }

  /**
   * The sweep timer: expires only while this node's view is fresh (connected, not stalled, reconciled
   * since its last gap; see `GapRecovery.mayExpire`); tombstones are collected either way.
   */
  #sweepTick(now: number): void {
    // A tick this late means this process stalled: the gap watch notices on its next tick.
    const late = now - this.#lastSweepAt > this.#sweepIntervalMs + this.#watch.afterMs;
    this.#lastSweepAt = now;
    if (!late && this.#gaps.mayExpire()) {
      this.sweep(now);
      this.#sweepHeldWithoutData();
    } else {
      this.#core.collectTombstones(now);
    }
  }

  /**
   * Entries naming this node primary while it holds no data: seen on two sweeps in a row (a copy in
   * flight has arrived by then), the node asks every member for the session, and ends the entry
   * everywhere when nobody has it, so it does not stay for good.
   */
  #sweepHeldWithoutData(): void {
    const { self, table, parts } = this.#core;
    const seen = this.#withoutData;
    this.#withoutData = new Set();
    for (const entry of this.#ownership.map.live()) {
      if (roleOf(entry, self) !== 'primary' || table.get(entry.key)) continue;
      this.#withoutData.add(entry.key);
      if (!seen.has(entry.key)) continue;
      void this.#takeover.resolve(entry.key, undefined).then((state) => {
        const current = this.#ownership.map.get(entry.key);
        if (state || !current || roleOf(current, self) !== 'primary' || table.get(entry.key) || !this.#gaps.mayExpire())
          return;
        const ended: OwnershipEntry = { ...current, stamp: parts.clock.tick(), ended: true };
        this.#ownership.merge(ended);
        this.#copies.broadcast([ended]);
        this.#withoutData.delete(entry.key);
        parts.logger.warn({ ...sessionFields([entry.key]) }, 'ended an ownership entry no member holds data for');
      });
    }
  }

  /** Expires idle primaries (and orphaned backups) everywhere and forgets old tombstones. */
  sweep(now: number): void {
    const { map } = this.#ownership;
    for (const state of this.#core.table.liveStates()) {
      const entry = map.get(state.key);
      if (
        entry &&
        roleOf(entry, this.#core.self) !== 'proxy' &&
        isIdleExpired(state, now, this.#graceFor(entry, state))
      )
        this.#end(state);
    }
    this.#core.collectTombstones(now);
    const before = now - this.#tombstoneTtlMs;
    // An ended entry stays while this node keeps the session's tombstone (as long as a copy could come back).
    for (const entry of [...map.all()])
      if (entry.ended && entry.stamp[0] < before && !this.#core.table.get(entry.key)) map.delete(entry.key);
  }

  activeSessions(): number {
    return this.#core.table.liveCount;
  }

  sessionCounts(): Record<string, number> {
    const counts = this.#ownership.map.counts(this.#core.self);
    return {
      total: counts.primary + counts.backup + counts.proxy,
      ...counts,
      tombstones: this.#core.table.tombstoneCount,
    };
  }

  inspect(key: string): SessionState | undefined {
    return this.#core.table.get(key);
  }

  /** The ownership entry this node holds for a key (tests and diagnostics). */
  entry(key: string): OwnershipEntry | undefined {
    return this.#ownership.map.raw(key);
  }

  liveSessions(): IterableIterator<SessionState> {
    return this.#core.table.liveStates();
  }

  /** Live ownership entries this node knows. */
  entries(): IterableIterator<OwnershipEntry> {
    return this.#ownership.map.live();
  }

  /** Every live ownership entry with this node's role, data fields where the data is held here, at most `limit` rows (`SessionManager.summaries`). */
  summaries(limit: number): { total: number; sessions: SessionSummary[] } {
    const sessions: SessionSummary[] = [];
    let total = 0;
    for (const entry of this.entries()) {
      total++;
      if (sessions.length >= limit) continue;
      const state = this.#core.table.live(entry.key);
      const held = state
        ? { createdAt: state.createdAt, lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy }
        : {};
      sessions.push({
        key: entry.key.slice(0, SESSION_PREFIX_LENGTH),
        role: roleOf(entry, this.#core.self),
        primary: entry.primary,
        backup: entry.backup,
        ...held,
      });
    }
    return { total, sessions };
  }

  /** See `HandOver.drain`: every session this node is primary or backup of goes to other members. */
  drain(): Promise<void> {
    return this.#handOver.drain();
  }

  drainRemaining(): number {
    return this.#handOver.remaining();
  }

  #onMap({ message }: Incoming): void {
    if (message.kind !== 'map') return;
    for (const entry of message.body.e) this.#ownership.merge(entry);
  }

  /**
   * Session data for this node as primary or backup; a proxy forwards it once to the current primary,
   * and a primary passes data that did not come from its backup on to the backup, so both hold it.
   */
  #onCopy({ message, reply }: Incoming): void {
    if (message.kind !== 'copy') return;
    const { id, e: entries, s: states, fwd, write } = message.body;
    const { table, parts, self } = this.#core;
    for (const entry of entries) this.#ownership.merge(entry);
    const passOn: [string, OwnershipEntry, SessionState][] = [];
    const applied: SessionState[] = [];
    for (const state of states) {
      parts.clock.observe(latestStamp(state));
      const entry = this.#ownership.map.get(state.key);
      const role = entry && roleOf(entry, self);
      if (entry && role === 'proxy') {
        // The sender's view is stale (ownership moved, e.g. this node drained): both current holders need the data.
        if (!fwd) passOn.push([entry.primary, entry, state]);
        if (!fwd && entry.backup !== '' && entry.backup !== message.node) passOn.push([entry.backup, entry, state]);
      } else if (entry || state.ended) {
        const { changed } = table.merge(state);
        if (write) applied.push(state);
        if (entry && role === 'primary' && changed && entry.backup !== '' && entry.backup !== message.node)
          passOn.push([entry.backup, entry, state]);
      }
    }
    this.#core.recordLag(applied);
    for (const [node, entry, state] of passOn) this.#copies.pass(node, entry, state);
    if (reply) parts.bus.send(reply, 'ack', { id });
  }

  /** Ends a session everywhere: the ended entry goes to every node; in `ack` mode the data holders confirm. */
  async #broadcastEnd(delta: SessionState, mode: SendMode, route?: string): Promise<void> {
    const { self, parts } = this.#core;
    const previous = this.#ownership.map.raw(delta.key);
    const entry: OwnershipEntry = {
      key: delta.key,
      primary: previous?.primary ?? self,
      backup: previous?.backup ?? '',
      stamp: delta.ended!.stamp,
      ended: true,
    };
    this.#ownership.merge(entry);
    this.#copies.broadcast([entry]);
    const holders = [entry.primary, entry.backup].filter(
      (node) => node !== '' && node !== self && parts.membership.has(node),
    );
    if (mode === 'ack' && holders.length > 0)
      await this.#copies.copy(holders, [entry], [delta], 'ack', { write: true, route });
  }

  /** Expires an idle session here and everywhere. */
  #end(state: SessionState): void {
    void this.#broadcastEnd(this.#core.endSession(state, 'expired'), 'async');
  }

  /** A backup copy expires only after a replica's grace: touches arrive at most once per interval. */
  #graceFor(entry: OwnershipEntry, state: SessionState): number {
    return roleOf(entry, this.#core.self) === 'primary' ? 0 : this.#core.replicaGrace(state);
  }
}
