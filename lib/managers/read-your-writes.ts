/**
 * Read-your-writes on any node: a client presents the version of its session it was last told (see
 * `lib/middleware/session-version.ts`); a node whose copy is older gets the newer state before it
 * answers, from the member that wrote it (the version's stamp names it), then from the other members,
 * and (delta manager with a log) from the replication log, within a bounded wait.
 */
import { compareStamps, type Stamp } from '../session/clock.ts';
import { latestStamp, type SessionState } from '../session/state.ts';
import type { ReplicaCore } from './core.ts';

/**
 * What waiting for a version found: the copy here is `current` (at least that version), the session
 * `ended`, the copy is still `behind` (some holder did not answer in time), or the version is `lost`:
 * its writer is gone or answered without it, every other member answered without it, and the log (if
 * any) was replayed to its end (a session lost with its holders: waiting longer would not help).
 */
export type VersionWait = 'current' | 'ended' | 'behind' | 'lost';

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
  /**
   * Asks `node` for its copy of the key and merges it here: `answered`, `gone` (nobody listens on its
   * subject) or `unreachable` (no answer in time). Never rejects.
   */
  pull(node: string, key: string, timeoutMs: number): Promise<'answered' | 'gone' | 'unreachable'>;
  /** Another way to catch up (the log replayed to its end), started with the pulls; true when it got there. Never rejects. */
  catchUp?(deadline: number): Promise<boolean>;
}

/** How often a waiting request looks at its copy again. */
const POLL_MS = 5;

/** Brings one session's copy up to a presented version, or says it could not. */
export class VersionWaiter {
  /** Pulls in flight per key, so concurrent requests for one session ask once; true when nobody has a newer copy. */
  readonly #pulling = new Map<string, Promise<boolean>>();

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
    let pulling = this.#pulling.get(key);
    if (!pulling) {
      pulling = this.#pull(key, version, routeHint, deadline).finally(() => this.#pulling.delete(key));
      this.#pulling.set(key, pulling);
    }
    let lost = false;
    void pulling.then((nobody) => (lost = nobody));
    while (outcome === 'behind' && !lost && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      outcome = this.check(key, version);
    }
    return outcome === 'behind' && lost ? 'lost' : outcome;
  }

  /**
   * The writer first (it has the version unless it died), then every ready member at once; the log
   * alongside. Resolves true when nobody can have a newer copy: the writer and every ready member
   * answered without it or are gone (nobody listens on their subject), and the log got to its end.
   */
  async #pull(key: string, version: Stamp, routeHint: string | undefined, deadline: number): Promise<boolean> {
    const { membership } = this.core.parts;
    const self = this.core.self;
    const catchingUp = this.source.catchUp?.(deadline) ?? Promise.resolve(true);
    const writer = version[2];
    const remaining = () => Math.max(1, deadline - Date.now());
    // The writer is asked even when this node's view has lost it: that view may be the stale one.
    const wrote = writer === self ? 'gone' : await this.source.pull(writer, key, remaining());
    if (this.check(key, version) !== 'behind') return false;
    const others = [...new Set([routeHint ?? '', ...membership.readyMembers().map((m) => m.node)])].filter(
      (node) => node !== '' && node !== self && node !== writer,
    );
    const answers = await Promise.all(others.map((node) => this.source.pull(node, key, remaining())));
    const logged = await catchingUp;
    return wrote !== 'unreachable' && answers.every((answer) => answer !== 'unreachable') && logged;
  }
}
