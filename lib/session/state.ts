/**
 * Replicated session state as a state-based CRDT. A delta is a partial state, and `mergeInto` folds
 * states together: commutative, associative and idempotent, so every node that has seen the same
 * messages, in any order and any number of times, holds the same state.
 */
import { compareStamps, newerStamp, type Stamp } from './clock.ts';

/** One attribute register: the encoded value (devalue text) or a removal, stamped by its writer. */
export interface AttributeRegister {
  readonly stamp: Stamp;
  /** Encoded value; undefined marks a removal (a tombstone that beats older sets). */
  readonly value?: string;
  /** Size of `value` in bytes (0 for a removal). */
  readonly bytes: number;
}

/** Why a session ended: `invalidate()`, idle or lifetime expiry, or the old key of `regenerateId()`. */
export type EndReason = 'invalidated' | 'expired' | 'regenerated';

/** The replicated state of one session, or a delta of it. */
export interface SessionState {
  readonly key: string;
  /** Creation time, ms since epoch; merged by minimum. */
  createdAt: number;
  /** Last access anywhere in the cluster, ms since epoch; merged by maximum. */
  lastAccessedAt: number;
  /** The node that made the latest access (ties broken by node id). */
  lastAccessedBy: string;
  /** Max inactive interval in seconds (<= 0: never expires), last writer wins. */
  maxInactive: { seconds: number; stamp: Stamp };
  /** Absolute lifetime from `createdAt` in seconds (absent or <= 0: none), last writer wins. */
  maxLifetime?: { seconds: number; stamp: Stamp };
  /** Attribute registers by name, last writer wins per attribute. */
  attributes: Map<string, AttributeRegister>;
  /** Set once the session is invalidated or expired anywhere: terminal, beats every write. */
  ended?: { stamp: Stamp; reason: EndReason };
  /**
   * On a partial delta only (a request's changes to a session it did not create): the newest stamp of
   * the state the writer changed. A receiver that holds no copy, or an older one, lacks part of the
   * session and fetches the whole of it instead of keeping the delta alone. Full states (a creation,
   * a state transfer, a resync, a snapshot) have none, and a table never keeps one.
   */
  base?: Stamp;
}

/** A fresh state for a session created by `node` at `stamp`. */
export function createState(
  key: string,
  stamp: Stamp,
  maxInactiveSeconds: number,
  maxLifetimeSeconds = 0,
): SessionState {
  return {
    key,
    createdAt: stamp[0],
    lastAccessedAt: stamp[0],
    lastAccessedBy: stamp[2],
    maxInactive: { seconds: maxInactiveSeconds, stamp },
    ...(maxLifetimeSeconds > 0 ? { maxLifetime: { seconds: maxLifetimeSeconds, stamp } } : {}),
    attributes: new Map(),
  };
}

/** A deep-enough copy: registers are immutable, so copying the map suffices. */
export function cloneState(state: SessionState): SessionState {
  return {
    ...state,
    maxInactive: { ...state.maxInactive },
    ...(state.maxLifetime ? { maxLifetime: { ...state.maxLifetime } } : {}),
    attributes: new Map(state.attributes),
    ...(state.ended ? { ended: { ...state.ended } } : {}),
  };
}

/**
 * Merges `incoming` into `target` in place and reports whether `target` changed. Both must have the
 * same key.
 */
export function mergeInto(target: SessionState, incoming: SessionState): boolean {
  let changed = false;
  if (incoming.createdAt < target.createdAt) {
    target.createdAt = incoming.createdAt;
    changed = true;
  }
  if (
    incoming.lastAccessedAt > target.lastAccessedAt ||
    (incoming.lastAccessedAt === target.lastAccessedAt && incoming.lastAccessedBy > target.lastAccessedBy)
  ) {
    target.lastAccessedAt = incoming.lastAccessedAt;
    target.lastAccessedBy = incoming.lastAccessedBy;
    changed = true;
  }
  if (compareStamps(incoming.maxInactive.stamp, target.maxInactive.stamp) > 0) {
    target.maxInactive = { ...incoming.maxInactive };
    changed = true;
  }
  if (
    incoming.maxLifetime &&
    (!target.maxLifetime || compareStamps(incoming.maxLifetime.stamp, target.maxLifetime.stamp) > 0)
  ) {
    target.maxLifetime = { ...incoming.maxLifetime };
    changed = true;
  }
  if (incoming.ended && (!target.ended || compareStamps(incoming.ended.stamp, target.ended.stamp) < 0)) {
    // The earliest end wins so that every node records the same reason and stamp.
    target.ended = { ...incoming.ended };
    changed = true;
  }
  if (target.ended) {
    if (target.attributes.size > 0) {
      target.attributes.clear();
      changed = true;
    }
    return changed;
  }
  for (const [name, register] of incoming.attributes) {
    const current = target.attributes.get(name);
    if (!current || compareStamps(register.stamp, current.stamp) > 0) {
      target.attributes.set(name, register);
      changed = true;
    }
  }
  return changed;
}

/** A copy of a state as a table keeps it: without a partial delta's `base`. */
export function wholeState(state: SessionState): SessionState {
  const { base: _, ...whole } = cloneState(state);
  return whole;
}

/** The newest stamp anywhere in a state: what a receiving clock must move past. */
export function latestStamp(state: SessionState): Stamp {
  let latest = state.maxInactive.stamp;
  if (state.maxLifetime) latest = newerStamp(latest, state.maxLifetime.stamp);
  for (const register of state.attributes.values()) latest = newerStamp(latest, register.stamp);
  if (state.ended) latest = newerStamp(latest, state.ended.stamp);
  return latest;
}

/** Bytes of attribute data a state holds (names plus encoded values, removals excluded). */
export function attributeBytes(state: SessionState): number {
  let total = 0;
  for (const [name, register] of state.attributes)
    if (register.value !== undefined) total += name.length + register.bytes;
  return total;
}

/**
 * Whether a live (not ended) session is due to expire: idle at least its max inactive interval plus
 * `graceMs`, or older than its absolute lifetime (no grace: `createdAt` is the same on every node).
 */
export function isIdleExpired(state: SessionState, now: number, graceMs = 0): boolean {
  const seconds = state.maxInactive.seconds;
  if (seconds > 0 && now - state.lastAccessedAt >= seconds * 1000 + graceMs) return true;
  const lifetime = lifetimeEnd(state);
  return lifetime !== undefined && now >= lifetime;
}

/** When the session's absolute lifetime ends (ms since epoch), or undefined without one. */
export function lifetimeEnd(state: SessionState): number | undefined {
  const seconds = state.maxLifetime?.seconds ?? 0;
  return seconds > 0 ? state.createdAt + seconds * 1000 : undefined;
}

/**
 * Until when a copy of this session could still be live somewhere (ms since epoch), if nobody used it
 * since `lastAccessedAt`: a node that did not serve it last drops it at twice its timeout plus
 * `graceMs`, and no copy outlives the absolute lifetime. Undefined when the session never expires.
 */
export function liveUntil(state: SessionState, graceMs: number): number | undefined {
  const seconds = state.maxInactive.seconds;
  const idle = seconds > 0 ? state.lastAccessedAt + 2 * seconds * 1000 + graceMs : undefined;
  const lifetime = lifetimeEnd(state);
  if (idle === undefined) return lifetime;
  return lifetime === undefined ? idle : Math.min(idle, lifetime);
}

/** When the session expires unless it is used again (ms since epoch): the earlier of idle and lifetime end; undefined: never. */
export function expiresAt(state: SessionState): number | undefined {
  const seconds = state.maxInactive.seconds;
  const idle = seconds > 0 ? state.lastAccessedAt + seconds * 1000 : undefined;
  const lifetime = lifetimeEnd(state);
  if (idle === undefined) return lifetime;
  return lifetime === undefined ? idle : Math.min(idle, lifetime);
}
