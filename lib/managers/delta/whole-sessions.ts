/**
 * `WholeSessions`: the delta manager never keeps a partial delta as if it were the whole session. A
 * request's delta carries only its changes and the newest stamp of the state it changed
 * (`SessionState.base`). A receiver that holds no copy of that session (its state transfer failed, the
 * creation was lost with a connection), or an older copy than the writer had, lacks part of it. It
 * then fetches the whole session from the writer, else from any ready member, and merges it with what
 * arrived meanwhile. Until then it does not serve that session: `resolve` waits for the fetch, and
 * answers 503 (`SessionIncompleteError`) when no member could give it.
 */
import { SessionIncompleteError } from '../../errors.ts';
import { sessionFields } from '../../logger.ts';
import { compareStamps } from '../../session/clock.ts';
import { latestStamp, type SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';

/** Partial deltas held back at most per key while its whole session is fetched. */
const MAX_WAITING_PER_KEY = 64;

/** Detects partial sessions and fetches them whole. */
export class WholeSessions {
  /** Fetches in flight, by key: one per key however many deltas or requests ask. */
  readonly #fetching = new Map<string, Promise<void>>();
  /** Partial deltas of keys this node holds no copy of, kept until the whole session is here. */
  readonly #waiting = new Map<string, SessionState[]>();

  constructor(
    private readonly core: ReplicaCore,
    /** How long one member may take to answer a fetch. */
    private readonly fetchTimeoutMs: number,
  ) {}

  /** Keys whose whole session this node is still missing (for `/cluster` and tests). */
  get missing(): number {
    return this.#waiting.size;
  }

  /**
   * Merges states that arrived from `from` (a delta or a log message). A partial delta for a key held
   * nowhere here waits for the whole session; one on top of an older copy is merged and the whole
   * session fetched too. A full state (or an end) completes a waiting key at once.
   */
  apply(states: readonly SessionState[], from: string): void {
    const { table } = this.core;
    for (const state of states) {
      const held = table.get(state.key);
      const waiting = this.#waiting.get(state.key);
      if (state.base && !state.ended && !held) {
        if (waiting) {
          if (waiting.length < MAX_WAITING_PER_KEY) waiting.push(state);
        } else this.#waiting.set(state.key, [state]);
        this.#fetch(state.key, from);
        continue;
      }
      // Checked before the merge: the held copy is older than the state the writer changed.
      const behind = state.base && held && !held.ended && compareStamps(latestStamp(held), state.base) < 0;
      this.core.applyStates([state, ...(waiting ?? [])]);
      this.#waiting.delete(state.key);
      if (behind) this.#fetch(state.key, from);
    }
  }

  /**
   * Waits until this node holds the whole of `key` when a fetch for it runs or is due; throws
   * `SessionIncompleteError` when it still lacks it (no member answered). With `unknownMayExist`
   * (this node's state transfer did not finish), a key it holds nothing of is asked for too, first
   * of `route` (the node that served it last).
   */
  async settle(key: string, route?: string, unknownMayExist = false): Promise<void> {
    const running = this.#fetching.get(key);
    if (running) await running;
    this.#complete(key);
    if (unknownMayExist && !this.core.table.get(key)) await this.#fetch(key, route);
    if (!this.#waiting.has(key)) return;
    await this.#fetch(key, undefined); // Asked again now: a member may be back.
    if (this.#waiting.has(key)) throw new SessionIncompleteError();
  }

  /** Forgets what waits for keys that no member is left to give (a cluster of one). */
  sweep(): void {
    if (this.#waiting.size === 0 || this.core.parts.membership.readyMembers().length > 0) return;
    this.core.parts.logger.warn(
      { ...sessionFields([...this.#waiting.keys()]) },
      'partial sessions forgotten: no member is left to ask for them',
    );
    this.#waiting.clear();
  }

  /** Merges what waits for `key` once the table holds it whole (fetched by read-your-writes, say). */
  #complete(key: string): void {
    const waiting = this.#waiting.get(key);
    if (!waiting || !this.core.table.get(key)) return;
    this.core.applyStates(waiting);
    this.#waiting.delete(key);
  }

  #fetch(key: string, from: string | undefined): Promise<void> {
    let running = this.#fetching.get(key);
    if (!running) {
      running = this.#fetchFromMembers(key, from).finally(() => this.#fetching.delete(key));
      this.#fetching.set(key, running);
    }
    return running;
  }

  /** Asks the writer first (it holds the state it changed), then every other ready member. */
  async #fetchFromMembers(key: string, from: string | undefined): Promise<void> {
    const { membership, logger, stats } = this.core.parts;
    const ready = membership.readyMembers().map((member) => member.node);
    const donors = [...new Set([...(from !== undefined && ready.includes(from) ? [from] : []), ...ready])];
    let unreachable = 0;
    for (const donor of donors) {
      const outcome = await this.core.fetch(donor, key, this.fetchTimeoutMs);
      if (outcome.kind === 'unreachable') unreachable++; // A member gone holds nothing to ask for.
      const found = outcome.kind === 'answered' ? outcome.state : undefined;
      if (!found) continue;
      this.core.applyStates([found, ...(this.#waiting.get(key) ?? [])]);
      this.#waiting.delete(key);
      stats.wholeSessionFetches++;
      logger.info({ ...sessionFields([key]), from: donor }, 'partial session: fetched the whole session');
      return;
    }
    if (unreachable > 0 || !this.#waiting.has(key)) return;
    // Every member answered and none holds it: an end collected long ago, or a replayed message. Nothing to create.
    this.#waiting.delete(key);
    logger.warn({ ...sessionFields([key]), from }, 'partial delta of a session no member holds: dropped');
  }
}
