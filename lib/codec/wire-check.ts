/**
 * The wire forms of sessions, stamps and ownership entries, and hand-written checks of the bodies of
 * the kinds every write sends (`delta`, `copy`, `ack`, `map`, and the probes' `ping` and `pong`).
 * Each check accepts exactly what the zod schema of `envelope.ts` accepts, but reads the parsed JSON
 * in place instead of copying every object and array (half the decode time of a delta of 8 sessions).
 * `decodeEnvelope` tries these first and, when one fails, runs zod, which names the problem; a
 * property test keeps the two in agreement.
 */
import { TOKEN_PATTERN } from '../session/ids.ts';

/** A hybrid-clock stamp on the wire: [wall time in ms, counter, node]. */
export type WireStamp = [wall: number, counter: number, node: string];

/** One session state on the wire (short keys keep messages small). */
export interface WireState {
  /** The session key. */
  k: string;
  /** Created at, ms since the epoch. */
  c: number;
  /** Last accessed at, ms since the epoch. */
  a: number;
  /** The node that last accessed it. */
  ab: string;
  /** The idle timeout in seconds, with the stamp of its last change. */
  m: [seconds: number, stamp: WireStamp];
  /** Attributes: name, stamp and encoded value (no value: removed). */
  x: [name: string, stamp: WireStamp, value?: string][];
  /** Set when the session ended: the stamp and why. */
  e?: [stamp: WireStamp, reason: 'invalidated' | 'expired' | 'regenerated'];
  /** The absolute lifetime in seconds, with the stamp of its last change; older nodes ignore it. */
  l?: [seconds: number, stamp: WireStamp];
  /** A partial delta's base: the newest stamp of the state its writer changed (`SessionState.base`); older nodes ignore it. */
  b?: WireStamp;
}

/** Ownership entry (backup manager) on the wire: [key, primary, backup, stamp, ended?]. */
export type WireEntry = [key: string, primary: string, backup: string, stamp: WireStamp, ended?: 1];

/** The message kinds {@link checkHotBody} knows: what every write and every probe sends. */
export type HotKind = 'delta' | 'copy' | 'ack' | 'map' | 'ping' | 'pong';

type Json = Record<string, unknown>;

/** A JSON object (what zod's `z.object` takes): not null, not an array. */
export function isJsonObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `z.string().min(min).max(max)`. */
export const isString = (value: unknown, min: number, max: number): value is string =>
  typeof value === 'string' && value.length >= min && value.length <= max;
/** `z.number().int()`: zod 4 takes safe integers only. */
const isInt = (value: unknown): value is number => Number.isSafeInteger(value);
const isTime = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
/** A node id, cluster name or other token (`TOKEN_PATTERN`). */
export const isToken = (value: unknown): value is string => typeof value === 'string' && TOKEN_PATTERN.test(value);
const isOptionalBoolean = (value: unknown) => value === undefined || typeof value === 'boolean';

/** A zod tuple of `required` items followed by optional ones, `max` in all. */
const isTuple = (value: unknown, required: number, max: number): value is unknown[] =>
  Array.isArray(value) && value.length >= required && value.length <= max;

function isStamp(value: unknown): value is WireStamp {
  return isTuple(value, 3, 3) && isTime(value[0]) && isTime(value[1]) && isToken(value[2]);
}

/** [seconds, stamp]: the idle timeout or the lifetime. */
function isSetting(value: unknown): value is [number, WireStamp] {
  return isTuple(value, 2, 2) && isInt(value[0]) && isStamp(value[1]);
}

function isAttribute(value: unknown): boolean {
  return (
    isTuple(value, 2, 3) &&
    isString(value[0], 1, 256) &&
    isStamp(value[1]) &&
    (value[2] === undefined || typeof value[2] === 'string')
  );
}

function isEnd(value: unknown): boolean {
  if (!isTuple(value, 2, 2) || !isStamp(value[0])) return false;
  const reason = value[1];
  return reason === 'invalidated' || reason === 'expired' || reason === 'regenerated';
}

/** Whether `value` is a session state the zod schema `wireState` accepts. */
export function isWireState(value: unknown): value is WireState {
  if (!isJsonObject(value)) return false;
  const { k, c, a, ab, m, x, e, l, b } = value;
  return (
    isString(k, 1, 64) &&
    isTime(c) &&
    isTime(a) &&
    isToken(ab) &&
    isSetting(m) &&
    Array.isArray(x) &&
    x.every(isAttribute) &&
    (e === undefined || isEnd(e)) &&
    (l === undefined || isSetting(l)) &&
    (b === undefined || isStamp(b))
  );
}

/** Whether `value` is an ownership entry the zod schema `wireEntry` accepts. */
export function isWireEntry(value: unknown): value is WireEntry {
  return (
    isTuple(value, 4, 5) &&
    isString(value[0], 1, 64) &&
    (value[1] === '' || isToken(value[1])) &&
    (value[2] === '' || isToken(value[2])) &&
    isStamp(value[3]) &&
    (value[4] === undefined || value[4] === 1)
  );
}

const isStates = (value: unknown): value is WireState[] => Array.isArray(value) && value.every(isWireState);
const isEntries = (value: unknown): value is WireEntry[] => Array.isArray(value) && value.every(isWireEntry);

/**
 * The body of a hot kind as the zod schema of that kind would return it (unknown keys left out),
 * sessions and entries still in their wire form; undefined when zod would reject it.
 */
export function checkHotBody(kind: HotKind, body: unknown): Json | undefined {
  if (!isJsonObject(body)) return undefined;
  switch (kind) {
    case 'delta': {
      const { id, s, r } = body;
      if (!isString(id, 1, 64) || !isStates(s) || !(r === undefined || isString(r, 0, 256))) return undefined;
      return r === undefined ? { id, s } : { id, s, r };
    }
    case 'copy': {
      const { id, e, s, fwd, write } = body;
      if (!isString(id, 1, 64) || !isEntries(e) || !isStates(s) || !isOptionalBoolean(fwd) || !isOptionalBoolean(write))
        return undefined;
      const out: Json = { id, e, s };
      if (fwd !== undefined) out.fwd = fwd;
      if (write !== undefined) out.write = write;
      return out;
    }
    case 'ack':
      return isString(body.id, 1, 64) ? { id: body.id } : undefined;
    case 'map':
      return isEntries(body.e) ? { e: body.e } : undefined;
    case 'ping':
      return {};
    case 'pong':
      return typeof body.ready === 'boolean' ? { ready: body.ready } : undefined;
  }
}

/** Whether `kind` is one {@link checkHotBody} knows. */
export function isHotKind(kind: unknown): kind is HotKind {
  return kind === 'delta' || kind === 'copy' || kind === 'ack' || kind === 'map' || kind === 'ping' || kind === 'pong';
}
