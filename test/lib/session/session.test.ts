// Owns: unit tests of lib/session/session.ts (the handler's view of a session and the delta it records).
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../../../lib/session/values.ts';
import {
  InvalidOptionsError,
  InvalidSessionValueError,
  InvalidatedSessionError,
  SessionLimitError,
  SessionTooLargeError,
  TooManySessionsError,
  UnserializableValueError,
} from '../../../lib/errors.ts';
import { HybridClock, compareStamps } from '../../../lib/session/clock.ts';
import { parseSessionId } from '../../../lib/session/ids.ts';
import { Session } from '../../../lib/session/session.ts';
import { cloneState, createState, isIdleExpired, mergeInto, type SessionState } from '../../../lib/session/state.ts';
import { z } from 'zod';

const NODE = 'n1';
const clock = () => new HybridClock(NODE);
/** The node's clock: stored states and later requests on this node share it, as they do in a manager. */
const nodeClock = clock();

function newSession(maxSessionBytes = 1024 * 1024, c = nodeClock): Session {
  return new Session({ node: NODE, clock: c, maxSessionBytes, defaultMaxInactiveSeconds: 1800 });
}

/** A stored state with attributes, as a node's table would hold it after a first request. */
function stored(attributes: Record<string, unknown>, c = nodeClock): SessionState {
  const first = newSession(1024 * 1024, c);
  for (const [name, value] of Object.entries(attributes)) first.set(name, value);
  const [delta] = first.takeChanges(Date.now()).deltas;
  const state = createState(delta!.key, c.tick(), 1800);
  mergeInto(state, delta!);
  return state;
}

function existing(state: SessionState, c = nodeClock, maxSessionBytes = 1024 * 1024): Session {
  return new Session({ state, node: NODE, clock: c, maxSessionBytes, defaultMaxInactiveSeconds: 1800 });
}

/** Decoded attribute values of a delta (removals as undefined). */
function valuesOf(delta: SessionState): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, register] of delta.attributes)
    out[name] = register.value === undefined ? undefined : decodeValue(register.value);
  return out;
}

describe('attributes', () => {
  it('get/set/has/delete/keys/attributes read back what was written', () => {
    const session = newSession();
    expect(session.get('a')).toBeUndefined();
    expect(session.has('a')).toBe(false);
    session.set('b', { n: 1 });
    session.set('a', [1, 2]);
    session.set('c', 'x');
    expect(session.get('b')).toEqual({ n: 1 });
    expect(session.has('a')).toBe(true);
    expect(session.keys()).toEqual(['a', 'b', 'c']);
    session.delete('c');
    expect(session.has('c')).toBe(false);
    expect(session.get('c')).toBeUndefined();
    expect(session.keys()).toEqual(['a', 'b']);
    expect({ ...session.attributes() }).toEqual({ a: [1, 2], b: { n: 1 } });
  });

  it('set(name, undefined) removes the attribute and records a removal', () => {
    const state = stored({ cart: [1] });
    const session = existing(state);
    expect(session.get('cart')).toEqual([1]);
    session.set('cart', undefined);
    expect(session.has('cart')).toBe(false);
    expect(session.keys()).toEqual([]);
    const [delta] = session.takeChanges(Date.now()).deltas;
    const register = delta!.attributes.get('cart');
    expect(register).toBeDefined();
    expect(register!.value).toBeUndefined();
    expect(compareStamps(register!.stamp, state.attributes.get('cart')!.stamp)).toBeGreaterThan(0);
  });

  it("reads a stored session's attributes and sees its own writes over them", () => {
    const session = existing(stored({ a: 1, b: 2 }));
    session.set('b', 20);
    session.set('c', 30);
    expect({ ...session.attributes() }).toEqual({ a: 1, b: 20, c: 30 });
  });

  it('attributes() has a null prototype, so names like __proto__ and constructor are plain keys', () => {
    const session = newSession();
    session.set('__proto__', { polluted: true });
    session.set('constructor', 'c');
    const all = session.attributes();
    expect(Object.getPrototypeOf(all)).toBeNull();
    expect(Object.keys(all).sort()).toEqual(['__proto__', 'constructor']);
    // biome-ignore lint/suspicious/noProto: the test reads back an attribute named __proto__ on a null-prototype object
    expect(all.__proto__).toEqual({ polluted: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('rejects empty and over-long names', () => {
    const session = newSession();
    expect(() => session.set('', 1)).toThrow(RangeError);
    expect(() => session.set('x'.repeat(257), 1)).toThrow(SessionLimitError);
    expect(() => session.delete('')).toThrow(RangeError);
    session.set('x'.repeat(256), 1);
    expect(session.has('x'.repeat(256))).toBe(true);
  });

  it('enforces maxAttributes, maxAttributeNameLength and maxValueDepth with SessionLimitError, storing nothing', () => {
    const session = new Session({
      node: 'n1',
      clock: new HybridClock('n1'),
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
      limits: { maxAttributes: 4, maxAttributeNameLength: 4, maxValueDepth: 3 },
    });
    session.set('a', 1);
    session.set('b', 2);
    expect(() => session.set('abcde', 1)).toThrow(expect.objectContaining({ limit: 'maxAttributeNameLength' }));
    session.set('d', [[1]]); // depth 2
    session.set('e', [[[1]]]); // three levels: the limit
    expect(() => session.set('e', [[[[1]]]])).toThrow(expect.objectContaining({ limit: 'maxValueDepth' }));
    expect(() => session.set('e', new Map([[1, new Map([[2, new Set([[3]])]])]]))).toThrow(SessionLimitError);
    session.delete('e');
    session.set('c', 3);
    expect(() => session.set('e', 1)).toThrow(expect.objectContaining({ limit: 'maxAttributes' }));
    session.set('a', 10); // replacing an existing attribute is fine at the limit
    session.delete('b');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    session.set('e', cyclic); // a cycle is not depth
    expect(session.keys()).toEqual(['a', 'c', 'd', 'e']);
  });

  it('asks admit() before a new session is first used and throws TooManySessionsError when refused', () => {
    let refused = false;
    const session = new Session({
      node: 'n1',
      clock: new HybridClock('n1'),
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
      admit: () => (refused ? 5 : undefined),
    });
    refused = true;
    expect(() => session.set('a', 1)).toThrow(TooManySessionsError);
    expect(session.used).toBe(false);
    refused = false;
    session.set('a', 1);
    expect(session.used).toBe(true);
  });

  it('throws UnserializableValueError for a function and keeps the previous value', () => {
    const session = newSession();
    session.set('f', 1);
    expect(() => session.set('f', () => 2)).toThrow(UnserializableValueError);
    expect(session.get('f')).toBe(1);
  });

  it('stores a copy: changing the object after set changes nothing', () => {
    const session = newSession();
    const cart = { items: ['apple'] };
    session.set('cart', cart);
    cart.items.push('pear');
    expect(session.get('cart')).toEqual({ items: ['apple'] });
    expect(valuesOf(session.takeChanges(Date.now()).deltas[0]!).cart).toEqual({ items: ['apple'] });
  });
});

describe('in-place mutation (Tomcat semantics)', () => {
  it('mutating a value read from the session is not replicated unless it is set again', () => {
    const state = stored({ cart: { items: ['apple'] } });
    const reader = existing(state);
    reader.get<{ items: string[] }>('cart')!.items.push('pear');
    const untouched = reader.takeChanges(Date.now());
    expect(untouched.modified).toBe(false);
    expect(untouched.deltas[0]!.attributes.size).toBe(0);
    // The stored state is unchanged: the next request reads the original value.
    expect(existing(state).get('cart')).toEqual({ items: ['apple'] });

    const writer = existing(state);
    const cart = writer.get<{ items: string[] }>('cart')!;
    cart.items.push('pear');
    writer.set('cart', cart);
    const changes = writer.takeChanges(Date.now());
    expect(changes.modified).toBe(true);
    expect(valuesOf(changes.deltas[0]!).cart).toEqual({ items: ['apple', 'pear'] });
  });
});

describe('invalidate', () => {
  it('every use after invalidate throws InvalidatedSessionError', () => {
    const session = existing(stored({ a: 1 }));
    session.invalidate();
    expect(session.valid).toBe(false);
    const uses: Array<[string, () => unknown]> = [
      ['get', () => session.get('a')],
      ['set', () => session.set('a', 2)],
      ['delete', () => session.delete('a')],
      ['has', () => session.has('a')],
      ['keys', () => session.keys()],
      ['attributes', () => session.attributes()],
      ['maxInactiveInterval=', () => (session.maxInactiveInterval = 5)],
      ['regenerateId', () => session.regenerateId()],
      ['invalidate twice', () => session.invalidate()],
    ];
    for (const [name, use] of uses) expect(use, name).toThrow(InvalidatedSessionError);
  });

  it('an invalidated stored session yields one end delta with no attributes', () => {
    const state = stored({ a: 1 });
    const session = existing(state);
    session.invalidate();
    const changes = session.takeChanges(Date.now());
    expect(changes.modified).toBe(true);
    expect(changes.deltas).toHaveLength(1);
    expect(changes.deltas[0]!.key).toBe(state.key);
    expect(changes.deltas[0]!.ended?.reason).toBe('invalidated');
    expect(changes.deltas[0]!.attributes.size).toBe(0);
  });

  it('a new session invalidated in its first request leaves nothing to replicate', () => {
    const session = newSession();
    session.set('a', 1);
    session.invalidate();
    expect(session.takeChanges(Date.now()).deltas).toEqual([]);
  });

  it('a session that ended on another node is no longer valid', () => {
    const state = stored({ a: 1 });
    const session = existing(state);
    const end = cloneState(state);
    end.ended = { stamp: [Date.now() + 1, 0, 'n2'], reason: 'invalidated' };
    mergeInto(state, end);
    expect(session.valid).toBe(false);
    expect(() => session.get('a')).toThrow(InvalidatedSessionError);
  });
});

describe('maxSessionBytes', () => {
  it('throws SessionTooLargeError and does NOT store the attribute', () => {
    const session = newSession(1000);
    session.set('small', 'x'.repeat(100));
    let error: unknown;
    try {
      session.set('big', 'y'.repeat(1000));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SessionTooLargeError);
    expect((error as SessionTooLargeError).limitBytes).toBe(1000);
    expect((error as SessionTooLargeError).sizeBytes).toBeGreaterThan(1000);
    expect((error as SessionTooLargeError).code).toBe('SESSION_TOO_LARGE');
    expect(session.has('big')).toBe(false);
    expect(session.keys()).toEqual(['small']);
    const [delta] = session.takeChanges(Date.now()).deltas;
    expect([...delta!.attributes.keys()]).toEqual(['small']);
  });

  it('counts the total of all attributes, including stored ones, and replacing one frees its old size', () => {
    const state = stored({ a: 'x'.repeat(400) });
    const session = existing(state, nodeClock, 1000);
    expect(() => session.set('b', 'y'.repeat(500))).toThrow(SessionTooLargeError);
    expect(session.has('b')).toBe(false);
    // Replacing `a` counts the new value instead of the old one.
    session.set('a', 'z'.repeat(700));
    expect(session.get('a')).toBe('z'.repeat(700));
    // A failed replacement keeps the previous value.
    expect(() => session.set('a', 'w'.repeat(1000))).toThrow(SessionTooLargeError);
    expect(session.get('a')).toBe('z'.repeat(700));
  });

  it('counts UTF-8 bytes, not characters', () => {
    const session = newSession(1000);
    // 400 euro signs are 400 characters but 1200 bytes.
    expect(() => session.set('e', '€'.repeat(400))).toThrow(SessionTooLargeError);
    session.set('a', 'a'.repeat(400));
    expect(session.has('a')).toBe(true);
  });
});

describe('regenerateId', () => {
  it('gives a new key; the changes end the old key and carry every attribute under the new key', () => {
    const state = stored({ user: 'ann', cart: [1, 2] });
    const oldKey = state.key;
    const session = existing(state);
    session.set('role', 'admin');
    session.regenerateId();
    expect(session.key).not.toBe(oldKey);
    expect(parseSessionId(session.id)).toEqual({ key: session.key, route: NODE });
    expect(session.previousKey).toBe(oldKey);
    expect(session.get('user')).toBe('ann');

    const changes = session.takeChanges(Date.now());
    expect(changes.modified).toBe(true);
    expect(changes.deltas).toHaveLength(2);
    const [end, full] = changes.deltas;
    expect(end!.key).toBe(oldKey);
    expect(end!.ended?.reason).toBe('regenerated');
    expect(end!.attributes.size).toBe(0);
    expect(full!.key).toBe(session.key);
    expect(full!.ended).toBeUndefined();
    expect(valuesOf(full!)).toEqual({ user: 'ann', cart: [1, 2], role: 'admin' });
    expect(full!.createdAt).toBe(state.createdAt);
  });

  it('twice in one request still ends only the key the request arrived with', () => {
    const state = stored({ a: 1 });
    const session = existing(state);
    session.regenerateId();
    const middle = session.key;
    session.regenerateId();
    const changes = session.takeChanges(Date.now());
    expect(changes.deltas.map((d) => d.key)).toEqual([state.key, session.key]);
    expect(session.key).not.toBe(middle);
  });

  it('on a new session needs no tombstone', () => {
    const session = newSession();
    const first = session.key;
    session.set('a', 1);
    session.regenerateId();
    expect(session.key).not.toBe(first);
    const changes = session.takeChanges(Date.now());
    expect(changes.deltas.map((d) => d.key)).toEqual([session.key]);
    expect(valuesOf(changes.deltas[0]!)).toEqual({ a: 1 });
  });

  it('then invalidate: only the old key ends, the fresh key was never stored', () => {
    const state = stored({ a: 1 });
    const session = existing(state);
    session.regenerateId();
    session.invalidate();
    const changes = session.takeChanges(Date.now());
    expect(changes.deltas).toHaveLength(1);
    expect(changes.deltas[0]!.key).toBe(state.key);
    expect(changes.deltas[0]!.ended).toBeDefined();
  });
});

describe('used, isNew and takeChanges().modified', () => {
  it('a new session nobody touched is not used', () => {
    const session = newSession();
    expect(session.used).toBe(false);
    expect(session.valid).toBe(true); // checking validity does not count as use
    expect(session.used).toBe(false);
  });

  it.each<[string, (s: Session) => unknown]>([
    ['id', (s) => s.id],
    ['key', (s) => s.key],
    ['isNew', (s) => s.isNew],
    ['get', (s) => s.get('x')],
    ['keys', (s) => s.keys()],
    ['has', (s) => s.has('x')],
    ['attributes', (s) => s.attributes()],
    ['createdAt', (s) => s.createdAt],
    ['maxInactiveInterval', (s) => s.maxInactiveInterval],
    ['takeFlash of a missing message', (s) => s.takeFlash('notice')],
    ['delete of a missing attribute', (s) => s.delete('x')],
  ])('reading %s creates nothing: a new session stays unused', (_label, read) => {
    const session = newSession();
    read(session);
    expect(session.used).toBe(false);
  });

  it.each<[string, (s: Session) => void]>([
    ['set', (s) => s.set('x', 1)],
    ['touch', (s) => s.touch()],
    ['flash', (s) => s.flash('notice', 'saved')],
    ['setPrincipal', (s) => s.setPrincipal('alice')],
    ['regenerateId', (s) => s.regenerateId()],
    ['maxInactiveInterval =', (s) => (s.maxInactiveInterval = 5)],
    ['maxLifetime =', (s) => (s.maxLifetime = 5)],
  ])('writing with %s marks a new session used', (_label, write) => {
    const session = newSession();
    write(session);
    expect(session.used).toBe(true);
  });

  it('a new session is modified and isNew; a stored one is not new', () => {
    const fresh = newSession();
    expect(fresh.isNew).toBe(true);
    const changes = fresh.takeChanges(Date.now());
    expect(changes.modified).toBe(true);
    expect(changes.deltas).toHaveLength(1);
    expect(existing(stored({})).isNew).toBe(false);
  });

  it('a read-only request is a touch: not modified, only the access time moves', () => {
    const state = stored({ a: 1 });
    const session = existing(state);
    expect(session.get('a')).toBe(1);
    expect(session.has('a')).toBe(true);
    const now = state.lastAccessedAt + 5000;
    const changes = session.takeChanges(now);
    expect(changes.modified).toBe(false);
    expect(changes.deltas).toHaveLength(1);
    expect(changes.deltas[0]!.attributes.size).toBe(0);
    expect(changes.deltas[0]!.lastAccessedAt).toBe(now);
    expect(changes.deltas[0]!.lastAccessedBy).toBe(NODE);
  });

  it('the access time never goes backwards', () => {
    const state = stored({});
    const changes = existing(state).takeChanges(state.lastAccessedAt - 10_000);
    expect(changes.deltas[0]!.lastAccessedAt).toBe(state.lastAccessedAt);
  });

  it.each<[string, (s: Session) => void]>([
    ['set', (s) => s.set('b', 2)],
    ['delete', (s) => s.delete('a')],
    ['delete of an unknown name', (s) => s.delete('never-set')],
    ['maxInactiveInterval', (s) => (s.maxInactiveInterval = 60)],
  ])('%s makes the request modified', (_label, write) => {
    const session = existing(stored({ a: 1 }));
    write(session);
    expect(session.takeChanges(Date.now()).modified).toBe(true);
  });
});

describe('maxInactiveInterval', () => {
  it("defaults to the node's default, truncates, and replicates the change", () => {
    const session = newSession();
    expect(session.maxInactiveInterval).toBe(1800);
    session.maxInactiveInterval = 90.9;
    expect(session.maxInactiveInterval).toBe(90);
    expect(session.takeChanges(Date.now()).deltas[0]!.maxInactive.seconds).toBe(90);
  });

  it('rejects non-finite values', () => {
    const session = newSession();
    expect(() => (session.maxInactiveInterval = Infinity)).toThrow(RangeError);
    expect(() => (session.maxInactiveInterval = NaN)).toThrow(RangeError);
    expect(session.maxInactiveInterval).toBe(1800);
  });
});

describe('stamps', () => {
  it("every write is stamped by the node's clock, later than what the clock has seen", () => {
    const c = clock();
    const remote = [Date.now() + 30_000, 9, 'n9'] as const;
    c.observe(remote);
    const session = newSession(1024 * 1024, c);
    session.set('a', 1);
    const register = session.takeChanges(Date.now()).deltas[0]!.attributes.get('a')!;
    expect(compareStamps(register.stamp, remote)).toBeGreaterThan(0);
    expect(register.stamp[2]).toBe(NODE);
    expect(register.bytes).toBe(encodeValue('a', 1).bytes);
  });
});

describe('flash messages', () => {
  it('takeFlash returns the message once and removes it in the same change', () => {
    const writer = newSession();
    writer.flash('notice', 'saved');
    expect(writer.has('flash:notice')).toBe(true);
    const reader = existing(stored({ 'flash:notice': 'saved' }));
    expect(reader.takeFlash('notice')).toBe('saved');
    expect(reader.takeFlash('notice')).toBeUndefined();
    const changes = reader.takeChanges(Date.now());
    expect(changes.deltas[0]!.attributes.get('flash:notice')).toMatchObject({ bytes: 0 });
    expect(changes.deltas[0]!.attributes.get('flash:notice')?.value).toBeUndefined();
  });
});

describe('principal', () => {
  it('setPrincipal writes the configured attribute; undefined clears it; empty ids are refused', () => {
    const session = new Session({
      node: NODE,
      clock: nodeClock,
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
      principalAttribute: 'user',
    });
    session.setPrincipal('alice');
    expect(session.principal).toBe('alice');
    expect(session.get('user')).toBe('alice');
    expect(() => session.setPrincipal('')).toThrow(RangeError);
    session.setPrincipal(undefined);
    expect(session.principal).toBeUndefined();
  });
});

describe('absolute lifetime', () => {
  it('a new session carries defaultMaxLifetimeSeconds; expiresAt is the earlier of idle and lifetime', () => {
    const session = new Session({
      node: NODE,
      clock: nodeClock,
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 600,
      defaultMaxLifetimeSeconds: 60,
    });
    expect(session.maxLifetime).toBe(60);
    const now = session.createdAt;
    expect(session.expiresAt(now)).toBe(session.createdAt + 60_000);
    session.maxLifetime = 0;
    expect(session.expiresAt(now)).toBe(now + 600_000);
    session.maxLifetime = 3600;
    const delta = session.takeChanges(now).deltas[0]!;
    expect(delta.maxLifetime?.seconds).toBe(3600);
  });

  it('isIdleExpired ends a session past its lifetime even when it was just used', () => {
    const state = createState('k'.repeat(24), nodeClock.tick(), 600, 10);
    expect(isIdleExpired(state, state.createdAt + 9_999)).toBe(false);
    state.lastAccessedAt = state.createdAt + 9_999;
    expect(isIdleExpired(state, state.createdAt + 10_000)).toBe(true);
  });

  it('merges the lifetime last-writer-wins and keeps it through cloneState', () => {
    const a = createState('k'.repeat(24), nodeClock.tick(), 600, 10);
    const b = cloneState(a);
    b.maxLifetime = { seconds: 99, stamp: nodeClock.tick() };
    expect(mergeInto(a, b)).toBe(true);
    expect(cloneState(a).maxLifetime?.seconds).toBe(99);
  });
});

describe('typed data and Standard Schema', () => {
  interface Data extends Record<string, unknown> {
    cart: string[];
    visits: number;
  }

  it('get and set are typed per attribute name', () => {
    const session = new Session<Data>({
      node: NODE,
      clock: nodeClock,
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
    });
    session.set('visits', 1);
    const visits: number | undefined = session.get('visits');
    expect(visits).toBe(1);
    // @ts-expect-error a string is not a number
    session.set('visits', 'two');
  });

  it("checks set() against the attribute's schema: InvalidSessionValueError names the issue; the output is stored", () => {
    const schema = { visits: z.number().int().nonnegative(), name: z.string().trim() };
    const session = new Session({
      node: NODE,
      clock: nodeClock,
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
      schema,
    });
    expect(() => session.set('visits', -1)).toThrow(InvalidSessionValueError);
    expect(() => session.set('visits', '3')).toThrow(
      expect.objectContaining({ code: 'INVALID_SESSION_VALUE', attribute: 'visits' }),
    );
    expect(session.used).toBe(false);
    session.set('name', '  ada ');
    expect(session.get('name')).toBe('ada');
    session.set('other', { any: 'thing' }); // no schema: not checked
    expect(session.get('other')).toEqual({ any: 'thing' });
  });

  it('refuses an asynchronous schema with InvalidOptionsError', () => {
    const schema = { name: z.string().refine(async () => true) };
    const session = new Session({
      node: NODE,
      clock: nodeClock,
      maxSessionBytes: 1 << 20,
      defaultMaxInactiveSeconds: 60,
      schema,
    });
    expect(() => session.set('name', 'x')).toThrow(InvalidOptionsError);
  });
});
