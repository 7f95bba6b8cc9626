/**
 * Read-your-writes on any node: a client presents the version of its session it was last told (see
 * `lib/middleware/session-version.ts`); a node whose copy is older gets the newer state before it
 * answers, from the member that wrote it (the version's stamp names it), then from the other members,
 * and (delta manager with a log) from the replication log, within a bounded wait.
 */
import { compareStamps, type Stamp } from '../session/clock.ts';
import { latestStamp, type SessionState } from '../session/state.ts';
import type { ReplicaCore } from './core.ts';

/** What waiting for a version found: the copy here is `current` (at least that version), the session `ended`, or the copy is still `behind`. */
export type VersionWait = 'current' | 'ended' | 'behind';

/** How long to wait, and which node the cookie's route names (asked early). */
export interface VersionWaitOptions {
  readonly waitMs: number;
  readonly routeHint?: string;
}

/** How one strategy reads its copy and gets a newer one. */
export interface VersionSource {
  /** This node's state of the key, tombstones included. */
  state(key: string): SessionState | undefined;
  /** Whether this node knows that the session ended. */
  ended(key: string): boolean;
  /** Asks `node` for its copy of the key and merges it here; resolves when done (never rejects). */
  pull(node: string, key: string, timeoutMs: number): Promise<void>;
  /** Another way to catch up (the log replayed to its end), started with the pulls; never rejects. */
  catchUp?(deadline: number): Promise<void>;
}

/** How often a waiting request looks at its copy again. */
const POLL_MS = 5;

/** Brings one session's copy up to a presented version, or says it could not. */
export class VersionWaiter {
  /** Pulls in flight per key, so concurrent requests for one session ask once. */
  readonly #pulling = new Map<string, Promise<void>>();

  constructor(
    private readonly core: ReplicaCore,
    private readonly source: VersionSource,
  ) {}

  /** Whether this node's copy of `key` already holds `version` (or the session ended). */
  check(key: string, version: Stamp): VersionWait {
    if (this.source.ended(key)) return 'ended';
    const state = this.source.state(key);
    return state && compareStamps(latestStamp(state), version) >= 0 ? 'current' : 'behind';
  }

  /**
   * Waits until this node's copy of `key` holds `version`, at most `waitMs`, pulling the session from
   * its writer and the members meanwhile. Live replication that arrives while waiting counts too.
   */
  async wait(key: string, version: Stamp, { waitMs, routeHint }: VersionWaitOptions): Promise<VersionWait> {
    let outcome = this.check(key, version);
    if (outcome !== 'behind' || waitMs <= 0) return outcome;
    const deadline = Date.now() + waitMs;
    if (!this.#pulling.has(key)) {
      const pulling = this.#pull(key, version, routeHint, deadline).finally(() => this.#pulling.delete(key));
      this.#pulling.set(key, pulling);
    }
    while (outcome === 'behind' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      outcome = this.check(key, version);
    }
    return outcome;
  }

  /** The writer first (it has the version unless it died), then every other member at once; the log alongside. */
  async #pull(key: string, version: Stamp, routeHint: string | undefined, deadline: number): Promise<void> {
    const { membership } = this.core.parts;
    const self = this.core.self;
    const catchingUp = this.source.catchUp?.(deadline);
    const candidates = [version[2], routeHint ?? '', ...membership.readyMembers().map((m) => m.node)];
    const order = [...new Set(candidates)].filter((node) => node !== '' && node !== self && membership.has(node));
    const [writer, ...rest] = order;
    const remaining = () => Math.max(1, deadline - Date.now());
    if (writer !== undefined) await this.source.pull(writer, key, remaining());
    if (this.check(key, version) === 'behind' && Date.now() < deadline)
      await Promise.all(rest.map((node) => this.source.pull(node, key, remaining())));
    await catchingUp;
  }
}
