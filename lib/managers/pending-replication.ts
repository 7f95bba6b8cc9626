/**
 * `PendingReplication`: decides what of a commit goes on the wire. Changes of filtered requests wait
 * here and leave with the session's next replicated commit (Tomcat's valve `filter`); an unchanged
 * session is sent only as a touch, at most once per touch interval.
 */
import { cloneState, mergeInto, type SessionState } from '../session/state.ts';

/**
 * The touch interval of one session: the configured one, shortened to a tenth of the session's own
 * timeout (at least 1 s) when that is shorter than the cluster default the interval was derived from.
 */
export function touchIntervalFor(state: SessionState, configuredMs: number): number {
  const seconds = state.maxInactive.seconds;
  return seconds > 0 ? Math.min(configuredMs, Math.max(1000, seconds * 100)) : configuredMs;
}

/** Per-session bookkeeping of what was sent and what still waits. */
export class PendingReplication {
  readonly #lastSent = new Map<string, number>();
  readonly #unsent = new Map<string, SessionState>();

  constructor(private readonly touchIntervalMs: number) {}

  /** Keeps a filtered request's delta until the session's next replicated commit. */
  stash(delta: SessionState): void {
    const unsent = this.#unsent.get(delta.key);
    if (unsent) mergeInto(unsent, delta);
    else this.#unsent.set(delta.key, cloneState(delta));
  }

  /** Whether a filtered request's change of `key` waits to leave with the next replicated commit. */
  stashed(key: string): boolean {
    return this.#unsent.has(key);
  }

  /**
   * The delta to send now (merged with anything stashed), or undefined when it is only a touch and
   * the last send of this session is more recent than the touch interval.
   */
  due(delta: SessionState, modified: boolean, now: number): SessionState | undefined {
    const unsent = this.#unsent.get(delta.key);
    if (
      !modified &&
      !unsent &&
      now - (this.#lastSent.get(delta.key) ?? 0) < touchIntervalFor(delta, this.touchIntervalMs)
    )
      return undefined;
    if (delta.ended) this.#lastSent.delete(delta.key);
    else this.#lastSent.set(delta.key, now);
    if (!unsent) return delta;
    this.#unsent.delete(delta.key);
    const merged = cloneState(unsent);
    mergeInto(merged, delta);
    return merged;
  }

  /** Forgets a session (ended, collected, or no longer held here). */
  forget(key: string): void {
    this.#lastSent.delete(key);
    this.#unsent.delete(key);
  }
}
