/** `Session`: what a handler sees as `c.get('session')`; records the request's writes as a delta. */
import { InvalidatedSessionError, SessionTooLargeError, TooManySessionsError } from '../errors.ts';
import { decodeValue, encodeValue } from './values.ts';
import type { HybridClock, Stamp } from './clock.ts';
import { formatSessionId, newSessionKey } from './ids.ts';
import { checkDepth, checkName, checkRoomForAttribute, DEFAULT_SESSION_LIMITS, type SessionLimits } from './limits.ts';
import { checkAttribute, type SessionSchema } from './schema.ts';
import {
  cloneState,
  createState,
  expiresAt,
  latestStamp,
  type AttributeRegister,
  type EndReason,
  type SessionState,
} from './state.ts';

export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './limits.ts';

/** Per-session overhead counted against `maxSessionBytes` besides attribute names and values. */
const HEADER_BYTES = 128;

/** How a request's session was obtained. */
export interface SessionInit {
  /** The state held by this node, or undefined to create a new session. */
  readonly state?: SessionState;
  /** This node's id: the route written into the cookie. */
  readonly node: string;
  readonly clock: HybridClock;
  readonly maxSessionBytes: number;
  /** Max inactive interval for a new session, in seconds. */
  readonly defaultMaxInactiveSeconds: number;
  /** Absolute lifetime of a new session from its creation, in seconds; 0 or absent: none. */
  readonly defaultMaxLifetimeSeconds?: number;
  /** Standard Schemas checked at `set()`, per attribute name. */
  readonly schema?: SessionSchema;
  /** The attribute `setPrincipal()` writes and the principal index reads. @default 'principal' */
  readonly principalAttribute?: string;
  /** Limits besides the size (defaults: 1000 attributes, names of 256 characters, values 32 levels deep). */
  readonly limits?: Partial<SessionLimits>;
  /** Asked before a new session is first used; false throws `TooManySessionsError` (maxActiveSessions). */
  readonly admit?: () => number | undefined;
}

/** What a finished request changed, ready for the manager to merge and replicate. */
export interface SessionChanges {
  /** Deltas to merge and replicate: the session itself and, after `regenerateId()`, the old key's end. */
  readonly deltas: SessionState[];
  /** True when anything but the access time changed (attributes, interval, creation, end, id). */
  readonly modified: boolean;
}

/** The attribute `setPrincipal()` writes unless `principalAttribute` names another. */
export const DEFAULT_PRINCIPAL_ATTRIBUTE = 'principal';

/** Prefix of the attributes `flash()` writes (`takeFlash()` reads and removes them). */
export const FLASH_PREFIX = 'flash:';

/** The shape of a session's attributes: attribute name to value type. */
export type SessionData = Record<string, unknown>;

/** The declared type of attribute `K` in `Data`, or `unknown` for a name `Data` does not declare. */
export type ValueOf<Data extends SessionData, K extends string> = K extends keyof Data ? Data[K] : unknown;

/**
 * One request's view of a replicated session. Reads see this node's replica plus the request's own
 * writes; writes are stamped by the hybrid clock and kept as a delta until the valve commits them.
 * Values are copies: changing an object read from the session changes nothing until it is `set` again.
 *
 * Sessions are lazy: a request without a session gets one that is stored, replicated and sent as a
 * cookie only once the handler writes (`set`, `flash`, `setPrincipal`, `regenerateId`, a new
 * interval, or `touch()`). Reads (`get`, `has`, `keys`, `id`) create nothing.
 *
 * `Data` types the attributes: `get('cart')` returns `Data['cart'] | undefined`.
 */
export class Session<Data extends SessionData = SessionData> {
  #key: string;
  readonly #node: string;
  readonly #clock: HybridClock;
  readonly #maxBytes: number;
  readonly #base: SessionState;
  readonly #isNew: boolean;
  readonly #pending = new Map<string, AttributeRegister>();
  readonly #decoded = new Map<string, unknown>();
  #maxInactive?: { seconds: number; stamp: Stamp };
  #maxLifetime?: { seconds: number; stamp: Stamp };
  readonly #schema?: SessionSchema;
  readonly #principalAttribute: string;
  #endedAt?: Stamp;
  #previousKey?: string;
  #used = false;
  readonly #limits: SessionLimits;
  readonly #admit?: () => number | undefined;

  constructor(init: SessionInit) {
    this.#limits = { ...DEFAULT_SESSION_LIMITS, ...init.limits };
    if (init.admit) this.#admit = init.admit;
    this.#node = init.node;
    this.#clock = init.clock;
    this.#maxBytes = init.maxSessionBytes;
    this.#isNew = !init.state;
    if (init.schema) this.#schema = init.schema;
    this.#principalAttribute = init.principalAttribute ?? DEFAULT_PRINCIPAL_ATTRIBUTE;
    this.#base =
      init.state ??
      createState(newSessionKey(), init.clock.tick(), init.defaultMaxInactiveSeconds, init.defaultMaxLifetimeSeconds);
    this.#key = this.#base.key;
  }

  /** The cookie value: `<key>.<route>` with this node as the route (reading it creates nothing). */
  get id(): string {
    return formatSessionId(this.#key, this.#node);
  }

  /** The cluster-wide identity of the session (the id without its route). */
  get key(): string {
    return this.#key;
  }

  /** True while the request that created the session runs. */
  get isNew(): boolean {
    return this.#isNew;
  }

  /** Creation time in ms since the epoch. */
  get createdAt(): number {
    return this.#base.createdAt;
  }

  /** Last access anywhere in the cluster before this request, in ms since the epoch. */
  get lastAccessedAt(): number {
    return this.#base.lastAccessedAt;
  }

  /** False once `invalidate()` was called in this request or the session ended elsewhere. */
  get valid(): boolean {
    return !this.#endedAt && !this.#base.ended;
  }

  /** Max inactive interval in seconds; 0 or less means the session never expires. */
  get maxInactiveInterval(): number {
    return (this.#maxInactive ?? this.#base.maxInactive).seconds;
  }

  set maxInactiveInterval(seconds: number) {
    this.#write();
    if (!Number.isFinite(seconds)) throw new RangeError('maxInactiveInterval must be a finite number of seconds');
    this.#maxInactive = { seconds: Math.trunc(seconds), stamp: this.#clock.tickAfter(this.#base.maxInactive.stamp) };
  }

  /** Absolute lifetime from creation in seconds, on every node; 0 or less means none (only the idle timeout applies). */
  get maxLifetime(): number {
    return (this.#maxLifetime ?? this.#base.maxLifetime)?.seconds ?? 0;
  }

  set maxLifetime(seconds: number) {
    this.#write();
    if (!Number.isFinite(seconds)) throw new RangeError('maxLifetime must be a finite number of seconds');
    this.#maxLifetime = { seconds: Math.trunc(seconds), stamp: this.#clock.tickAfter(this.#base.maxLifetime?.stamp) };
  }

  /**
   * When the session expires if it is not used again, counted from this request (ms since epoch): the
   * earlier of the idle timeout and the absolute lifetime; undefined when it never expires.
   */
  expiresAt(now: number): number | undefined {
    const maxLifetime = this.#maxLifetime ?? this.#base.maxLifetime;
    return expiresAt({
      ...this.#base,
      lastAccessedAt: now,
      maxInactive: this.#maxInactive ?? this.#base.maxInactive,
      ...(maxLifetime ? { maxLifetime } : {}),
    });
  }

  /** The value of an attribute, or undefined. Reading creates no session. */
  get<K extends keyof Data & string>(name: K): Data[K] | undefined;
  /** The value of an attribute as `T` (an unchecked cast), or undefined. */
  get<T>(name: string): T | undefined;
  get(name: string): unknown {
    this.#live();
    if (this.#decoded.has(name)) return this.#decoded.get(name);
    const text = this.#register(name)?.value;
    if (text === undefined) return undefined;
    const value = decodeValue(text);
    this.#decoded.set(name, value);
    return value;
  }

  /**
   * Sets an attribute; `undefined` removes it. Throws `UnserializableValueError` for values that
   * cannot be replicated, `SessionTooLargeError` when the session would exceed `maxSessionBytes`, and
   * `InvalidSessionValueError` when the value does not match the attribute's schema.
   */
  set<K extends string>(name: K, value: ValueOf<Data, K> | undefined): void {
    this.#set(name, value);
  }

  #set(name: string, input: unknown): void {
    this.#live();
    checkName(name, this.#limits);
    if (input === undefined) return this.delete(name);
    const value = checkAttribute(this.#schema, name, input);
    this.#use();
    if (!this.#register(name)?.value) checkRoomForAttribute(this.keys().length, this.#limits);
    checkDepth(value, this.#limits.maxValueDepth);
    const encoded = encodeValue(name, value);
    const size = this.#sizeWith(name, name.length + encoded.bytes);
    if (size > this.#maxBytes) throw new SessionTooLargeError(size, this.#maxBytes);
    this.#pending.set(name, { stamp: this.#stampFor(name), value: encoded.text, bytes: encoded.bytes });
    this.#decoded.set(name, decodeValue(encoded.text));
  }

  /**
   * Removes an attribute (replicated as a removal even if this node never saw it). On a session that
   * is not stored yet there is nothing to remove, and nothing is created.
   */
  delete(name: string): void {
    this.#live();
    checkName(name, this.#limits);
    if (this.#isNew && !this.#used && !this.#pending.has(name)) return;
    this.#use();
    this.#pending.set(name, { stamp: this.#stampFor(name), bytes: 0 });
    this.#decoded.delete(name);
  }

  /** Keeps a message for the next request that reads it with `takeFlash(name)` (a redirect's notice). */
  flash<K extends string>(name: K, value: ValueOf<Data, K>): void {
    this.#set(FLASH_PREFIX + name, value);
  }

  /** Reads a message kept by `flash(name, value)` and removes it, or undefined when there is none. */
  takeFlash<K extends keyof Data & string>(name: K): Data[K] | undefined;
  takeFlash<T>(name: string): T | undefined;
  takeFlash(name: string): unknown {
    const value = this.get(FLASH_PREFIX + name);
    if (value !== undefined) this.delete(FLASH_PREFIX + name);
    return value;
  }

  /** The user this session belongs to, set by `setPrincipal()`; indexed cluster-wide (`findByPrincipal`). */
  get principal(): string | undefined {
    const value = this.get(this.#principalAttribute);
    return typeof value === 'string' ? value : undefined;
  }

  /**
   * Records the user this session belongs to (at login), so that `findByPrincipal(id)` lists the
   * session and `endSessionsOf(id)` ends it on every node. `undefined` clears it.
   */
  setPrincipal(id: string | undefined): void {
    if (id !== undefined && (typeof id !== 'string' || id.length === 0))
      throw new RangeError('a principal is a non-empty string');
    this.#set(this.#principalAttribute, id);
  }

  /** Creates (stores, replicates and sends the cookie of) a new session without writing an attribute. */
  touch(): void {
    this.#write();
  }

  /** Whether the attribute is set. */
  has(name: string): boolean {
    this.#live();
    return this.#register(name)?.value !== undefined;
  }

  /** Names of all attributes that are set. */
  keys(): string[] {
    this.#live();
    const names = new Set([...this.#base.attributes.keys(), ...this.#pending.keys()]);
    return [...names].filter((name) => this.#register(name)?.value !== undefined).sort();
  }

  /** All attributes as a plain object with a null prototype (safe for names like `__proto__`). */
  attributes(): Record<string, unknown> {
    const out: Record<string, unknown> = Object.create(null);
    for (const name of this.keys()) out[name] = this.get(name);
    return out;
  }

  /** Ends the session on every node. Throws `InvalidatedSessionError` if it already ended. */
  invalidate(): void {
    this.#write();
    this.#endedAt = this.#clock.tick();
  }

  /**
   * Gives the session a fresh key (call it at login against session fixation). The attributes move
   * to the new key and the old key ends everywhere.
   */
  regenerateId(): void {
    this.#write();
    if (!this.#isNew) this.#previousKey ??= this.#key;
    this.#key = newSessionKey();
  }

  /** Whether the handler wrote to the session at all (a new session nobody wrote to is never stored). */
  get used(): boolean {
    return this.#used;
  }

  /** The key the request arrived with, if `regenerateId()` replaced it. */
  get previousKey(): string | undefined {
    return this.#previousKey;
  }

  /** Collects the request's changes as deltas stamped at `now`; the session must not be used after. */
  takeChanges(now: number): SessionChanges {
    const base = this.#base;
    const deltas: SessionState[] = [];
    if (this.#previousKey !== undefined)
      deltas.push(endDelta(base, this.#previousKey, this.#clock.tick(), 'regenerated'));
    if (this.#endedAt) {
      // A key that was never stored (new, or freshly regenerated) needs no tombstone.
      if (!this.#isNew && this.#key === base.key) deltas.push(endDelta(base, this.#key, this.#endedAt, 'invalidated'));
      return { deltas, modified: true };
    }
    const rekeyed = this.#key !== base.key;
    const attributes = rekeyed ? new Map(base.attributes) : new Map<string, AttributeRegister>();
    for (const [name, register] of this.#pending) attributes.set(name, register);
    deltas.push({
      key: this.#key,
      createdAt: base.createdAt,
      lastAccessedAt: Math.max(now, base.lastAccessedAt),
      lastAccessedBy: this.#node,
      maxInactive: this.#maxInactive ?? base.maxInactive,
      ...((this.#maxLifetime ?? base.maxLifetime) ? { maxLifetime: (this.#maxLifetime ?? base.maxLifetime)! } : {}),
      attributes,
      // Only the changes of a session held before: a receiver without that state fetches the whole session.
      ...(this.#isNew || rekeyed ? {} : { base: latestStamp(base) }),
    });
    const modified =
      this.#isNew ||
      rekeyed ||
      this.#pending.size > 0 ||
      this.#maxInactive !== undefined ||
      this.#maxLifetime !== undefined;
    return { deltas, modified };
  }

  #use(): void {
    if (this.#used) return;
    if (this.#isNew && this.#admit) {
      const limit = this.#admit();
      if (limit !== undefined) throw new TooManySessionsError(limit);
    }
    this.#used = true;
  }

  /** Reads need a session that has not ended; they create nothing. */
  #live(): void {
    if (!this.valid) throw new InvalidatedSessionError();
  }

  /** Writes need a live session and store a new one. */
  #write(): void {
    this.#live();
    this.#use();
  }

  /** A write's stamp: after the register it replaces, even one stamped by a clock far ahead (a sequential write wins). */
  #stampFor(name: string): Stamp {
    return this.#clock.tickAfter(this.#base.attributes.get(name)?.stamp);
  }

  #register(name: string): AttributeRegister | undefined {
    return this.#pending.get(name) ?? this.#base.attributes.get(name);
  }

  #sizeWith(name: string, bytes: number): number {
    let total = HEADER_BYTES + this.#key.length + bytes;
    for (const other of this.keys()) {
      if (other !== name) total += other.length + (this.#register(other)?.bytes ?? 0);
    }
    return total;
  }
}

function endDelta(base: SessionState, key: string, stamp: Stamp, reason: EndReason): SessionState {
  const delta = cloneState(base);
  return { ...delta, key, attributes: new Map(), ended: { stamp, reason } };
}
