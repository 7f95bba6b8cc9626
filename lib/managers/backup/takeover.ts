/**
 * `Takeover`: a request for a session this node is not primary of. The node fetches the session from
 * its primary or backup and becomes its primary; on the other side, a holder answers such fetches.
 */
import type { Incoming } from '../../bus/cluster-bus.ts';
import { sessionFields } from '../../logger.ts';
import { latestStamp, type SessionState } from '../../session/state.ts';
import type { ReplicaCore } from '../core.ts';
import { roleOf, type OwnershipEntry } from './ownership-map.ts';
import type { Ownership } from './ownership.ts';

/**
 * How long a fetch may go unanswered before the next holder is asked as well (hedged request): the
 * broker may still route a request to a dead process's connection it has not seen close, and that
 * request would wait `fetchTimeoutMs`. The next holder's answer is only held, though: its copy may be
 * older than the silent holder's (ownership broadcasts lag, or an async copy was lost), so it wins only
 * once the silent holder is verified gone (its subject finds no responder, or it left the membership)
 * or its fetch failed; a holder that answers late, however late, still wins with its own data. A
 * holder whose connection closed answers at once ("no responders") and is skipped without waiting.
 */
export const FETCH_HEDGE_MS = 20;

/** How often a silent holder is checked while the next holder's answer waits on its verdict. */
const VERIFY_INTERVAL_MS = 10;

type Fetched = { entry?: OwnershipEntry; state?: SessionState } | undefined;

/** Fetches sessions from their holders and takes them over; answers other nodes' fetches. */
export class Takeover {
  /** Takeovers in flight, so concurrent requests for one session fetch it once. */
  readonly #resolving = new Map<string, Promise<SessionState | undefined>>();

  constructor(
    private readonly core: ReplicaCore,
    private readonly ownership: Ownership,
    /** How long a proxy waits for the primary or backup to hand over a session. */
    private readonly fetchTimeoutMs: number,
    /** The live session this node holds for a key (expiring it when idle). */
    private readonly find: (key: string) => SessionState | undefined,
  ) {}

  /** Takes `key` over, once however many requests ask for it at the same time. */
  resolve(key: string, routeHint: string | undefined): Promise<SessionState | undefined> {
    let running = this.#resolving.get(key);
    if (!running) {
      running = this.#takeOver(key, routeHint).finally(() => this.#resolving.delete(key));
      this.#resolving.set(key, running);
    }
    return running;
  }

  /** Answers a `fetch`: this node's entry and live state of the key. A primary remembers whom it handed the session to. */
  onFetch({ message, reply }: Incoming): void {
    if (message.kind !== 'fetch' || !reply) return;
    const key = message.body.k;
    const entry = this.ownership.map.raw(key);
    const state = this.core.table.get(key);
    const live = state && !state.ended ? state : undefined;
    if (entry && roleOf(entry, this.core.self) === 'primary' && live)
      this.ownership.recordHandOver(key, message.node, live);
    this.core.parts.bus.send(reply, 'fetched', { e: entry ? [entry] : [], s: live ? [live] : [] });
  }

  /**
   * Finds a session this node is not primary of and takes it over. Asks its primary, then its backup
   * (for a key unknown here, the node the cookie's route names), following any newer entry a reply
   * brings. Even a backup asks the primary first, for writes still on their way (async mode); when the
   * primary does not answer, the backup serves its own copy. A holder that has not answered within
   * `FETCH_HEDGE_MS` is not waited for alone: the next one is asked too, but its data wins only once the
   * silent one failed or is verified gone (see `#hedgedFetch`); a member known unreachable is not asked at all. A node that did not answer, or answered
   * without the data, is not made the new backup. A node named primary or backup that holds no data
   * (its copy was lost before it was promoted) asks every ready member before it gives up.
   */
  async #takeOver(key: string, routeHint: string | undefined): Promise<SessionState | undefined> {
    const { map } = this.ownership;
    const { table, parts, self } = this.core;
    const ended = () => !map.get(key) && map.raw(key) !== undefined;
    if (ended()) return undefined;
    const asked = new Set(['']);
    let ownOffered = false;
    const unreachable: string[] = [];
    const empty: string[] = [];
    for (;;) {
      const entry = map.get(key);
      const holdsNoData = entry !== undefined && roleOf(entry, self) !== 'proxy' && table.get(key) === undefined;
      const others = holdsNoData ? [routeHint ?? '', ...parts.membership.readyMembers().map((m) => m.node)] : [];
      // A backup's own copy is a candidate after the primary: it serves it when the primary keeps silent.
      const own = !ownOffered && entry && roleOf(entry, self) === 'backup' ? this.find(key) : undefined;
      const [node, next] = (entry ? [entry.primary, entry.backup, ...others] : routeHint ? [routeHint] : []).filter(
        (n, i, all) =>
          all.indexOf(n) === i &&
          (n === self ? own !== undefined : !asked.has(n) && parts.membership.has(n) && parts.membership.reachable(n)),
      );
      if (node === undefined) break;
      for (const n of [node, next]) if (n !== undefined) n === self ? (ownOffered = true) : asked.add(n);
      const fetch = (n: string): Promise<Fetched> =>
        n === self ? Promise.resolve({ state: own! }) : this.#fetch(n, key);
      // The first holder asked, still silent when another's answer won (past the hedge): not made the new backup.
      const silent = new Set(node === self ? [] : [node]);
      for await (const [from, found] of this.#hedgedFetch(fetch, node, next)) {
        silent.delete(from);
        if (!found) {
          unreachable.push(from);
          continue;
        }
        if (found.entry) this.ownership.merge(found.entry);
        if (ended()) return undefined;
        if (!found.state || found.state.ended) {
          empty.push(from);
          continue;
        }
        table.merge(found.state);
        parts.clock.observe(latestStamp(found.state));
        const claimed = this.ownership.claim(key, map.get(key) ?? found.entry, [...unreachable, ...empty, ...silent]);
        parts.logger.info(
          { ...sessionFields([key]), route: routeHint, from, backup: claimed.backup },
          'took over a session',
        );
        return table.live(key);
      }
    }
    const entry = map.get(key);
    const state = entry && roleOf(entry, self) === 'backup' ? this.find(key) : undefined;
    if (state) {
      this.ownership.claim(key, entry, unreachable);
      return state;
    }
    if (entry) {
      const { primary, backup } = entry;
      parts.logger.warn(
        { ...sessionFields([key]), route: routeHint, primary, backup, unreachable },
        'session not reachable on its primary or backup',
      );
    }
    return undefined;
  }

  /**
   * Merges the live data `node` holds for `key` into this node's copy (a newer write made there while
   * both believed they were primary); true when it had some. The ownership is left as it is.
   */
  async pull(node: string, key: string): Promise<boolean> {
    const found = await this.#fetch(node, key);
    if (!found?.state || found.state.ended) return false;
    this.core.parts.clock.observe(latestStamp(found.state));
    this.core.table.merge(found.state);
    return true;
  }

  /**
   * Fetches from `first`, and from `second` as well once `first` has not answered within
   * `FETCH_HEDGE_MS`; yields each answer as it comes, until one brings live data. While `first` is
   * silent, live data from `second` is held back, not yielded: it is yielded once `first` answered
   * without data, failed, or is verified gone (see `FETCH_HEDGE_MS`); if `first` answers with data, that wins.
   */
  async *#hedgedFetch(
    fetch: (node: string) => Promise<Fetched>,
    first: string,
    second?: string,
  ): AsyncGenerator<[string, Fetched]> {
    const waiting = new Map<string, Promise<[string, Fetched]>>();
    const ask = (node: string) =>
      waiting.set(
        node,
        fetch(node).then((found): [string, Fetched] => [node, found]),
      );
    const live = ([, found]: [string, Fetched]) => found?.state !== undefined && !found.state.ended;
    ask(first);
    if (second !== undefined) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hedge = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), FETCH_HEDGE_MS);
      });
      const early = await Promise.race([waiting.get(first)!, hedge]);
      clearTimeout(timer);
      if (early) {
        waiting.delete(first);
        yield early;
        if (live(early)) return;
      }
      ask(second);
    }
    const verdict = new AbortController();
    try {
      let held: [string, Fetched] | undefined;
      let firstGone: Promise<[string, Fetched]> | undefined;
      while (waiting.size > 0) {
        const pending = [...waiting.values()];
        const firstSilent = waiting.has(first);
        if (held && firstSilent) pending.push((firstGone ??= this.#gone(first, verdict.signal).then(() => held!)));
        const answer = await Promise.race(pending);
        if (answer === held) {
          yield held;
          return;
        }
        waiting.delete(answer[0]);
        if (firstSilent && answer[0] !== first && live(answer)) {
          held = answer;
          continue;
        }
        yield answer;
        if (live(answer)) return;
        if (answer[0] === first && held) {
          yield held;
          return;
        }
      }
    } finally {
      verdict.abort();
    }
  }

  /**
   * Resolves once `node` is verified gone: no longer a member, or its subject found no responder. It is
   * checked at once and then every `VERIFY_INTERVAL_MS` (the membership sends at most one ping per probe
   * interval); never resolves once `signal` aborts. A paused or slow node keeps its subscription, so it
   * stays until `memberDropMs` of silence removes it.
   */
  async #gone(node: string, signal: AbortSignal): Promise<void> {
    const { membership } = this.core.parts;
    while (!signal.aborted) {
      if (!membership.has(node) || !membership.reachable(node)) return;
      membership.suspect(node);
      await new Promise((resolve) => setTimeout(resolve, VERIFY_INTERVAL_MS));
    }
    await new Promise<never>(() => undefined);
  }

  async #fetch(node: string, key: string): Promise<Fetched> {
    const found = await this.core.fetch(node, key, this.fetchTimeoutMs);
    return found.kind === 'answered' ? found : undefined;
  }
}
