// Owns: unit and property tests of lib/session/state.ts (the session CRDT: merge laws, tombstones, expiry helpers).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Stamp } from '../../../lib/session/clock.ts';
import {
  attributeBytes,
  cloneState,
  createState,
  isIdleExpired,
  latestStamp,
  mergeInto,
  type AttributeRegister,
  type SessionState,
} from '../../../lib/session/state.ts';

const KEY = 'k'.repeat(24);

/** A state in a canonical, order-independent form for deep comparison. */
function canonical(state: SessionState) {
  return {
    key: state.key,
    createdAt: state.createdAt,
    lastAccessedAt: state.lastAccessedAt,
    lastAccessedBy: state.lastAccessedBy,
    maxInactive: state.maxInactive,
    ended: state.ended ?? null,
    attributes: [...state.attributes.entries()]
      .map(([name, r]) => [name, [...r.stamp], r.value ?? null, r.bytes] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  };
}

/** `a ⊔ b` as a new state. */
function join(a: SessionState, b: SessionState): SessionState {
  const out = cloneState(a);
  mergeInto(out, b);
  return out;
}

/** Folds deltas left to right starting from a copy of the first. */
function fold(deltas: SessionState[]): SessionState {
  const [first, ...rest] = deltas;
  const out = cloneState(first!);
  for (const delta of rest) mergeInto(out, delta);
  return out;
}

/**
 * Random deltas of one session. Every write in a real cluster has its own stamp (a node's clock is
 * strictly increasing and the node id breaks ties across nodes), so the stamps are drawn unique and
 * each carries one write: an attribute set, an attribute removal, a max-inactive change or an end.
 */
const NODES = ['a', 'b', 'c'] as const;
const NAMES = ['x', 'y', 'z', '__proto__', 'constructor'] as const;

type Write =
  | { kind: 'set'; name: string; value: number }
  | { kind: 'remove'; name: string }
  | { kind: 'maxInactive'; seconds: number }
  | { kind: 'end'; reason: 'invalidated' | 'expired' };

const writeArb: fc.Arbitrary<Write> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant('set' as const), name: fc.constantFrom(...NAMES), value: fc.integer() }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), name: fc.constantFrom(...NAMES) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('maxInactive' as const), seconds: fc.integer({ min: -1, max: 3600 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('end' as const),
      reason: fc.constantFrom('invalidated' as const, 'expired' as const),
    }),
  },
);

const stampArb = fc.tuple(fc.integer({ min: 1000, max: 1010 }), fc.nat(3), fc.constantFrom(...NODES));
const stampKey = (s: readonly [number, number, string]) => `${s[0]}:${s[1]}:${s[2]}`;

/** One delta: a base stamp for its max-inactive register plus 0..4 writes, all stamps distinct across the whole sequence. */
const deltasArb = (min: number, max: number): fc.Arbitrary<SessionState[]> =>
  fc
    .uniqueArray(stampArb, { selector: stampKey, minLength: min * 6, maxLength: max * 6 })
    .chain((stamps) => {
      const count = Math.max(min, Math.floor(stamps.length / 6));
      return fc.tuple(
        fc.constant(stamps),
        fc.array(
          fc.record({
            createdAt: fc.integer({ min: 900, max: 1000 }),
            lastAccessedAt: fc.integer({ min: 1000, max: 1020 }),
            lastAccessedBy: fc.constantFrom(...NODES),
            writes: fc.array(writeArb, { maxLength: 5 }),
          }),
          { minLength: count, maxLength: count },
        ),
      );
    })
    .map(([stamps, shapes]) => {
      let next = 0;
      const take = (): Stamp => stamps[next++ % stamps.length] as Stamp;
      return shapes.map((shape) => {
        const state: SessionState = {
          key: KEY,
          createdAt: shape.createdAt,
          lastAccessedAt: shape.lastAccessedAt,
          lastAccessedBy: shape.lastAccessedBy,
          maxInactive: { seconds: 1800, stamp: take() },
          attributes: new Map<string, AttributeRegister>(),
        };
        for (const write of shape.writes) {
          const stamp = take();
          if (write.kind === 'set')
            state.attributes.set(write.name, {
              stamp,
              value: JSON.stringify(write.value),
              bytes: String(write.value).length,
            });
          else if (write.kind === 'remove') state.attributes.set(write.name, { stamp, bytes: 0 });
          else if (write.kind === 'maxInactive') state.maxInactive = { seconds: write.seconds, stamp };
          else state.ended = { stamp, reason: write.reason };
        }
        // An end delta carries no attributes (Session and the expiry sweep send it that way).
        if (state.ended) state.attributes.clear();
        return state;
      });
    });

describe('mergeInto: CRDT laws over random deltas', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(deltasArb(2, 2), ([a, b]) => {
        expect(canonical(join(a!, b!))).toEqual(canonical(join(b!, a!)));
      }),
      { numRuns: 500 },
    );
  });

  it('is associative', () => {
    fc.assert(
      fc.property(deltasArb(3, 3), ([a, b, c]) => {
        expect(canonical(join(join(a!, b!), c!))).toEqual(canonical(join(a!, join(b!, c!))));
      }),
      { numRuns: 500 },
    );
  });

  it('is idempotent, and merging a state into itself reports no change', () => {
    fc.assert(
      fc.property(deltasArb(2, 2), ([a, b]) => {
        expect(canonical(join(a!, a!))).toEqual(canonical(a!));
        const ab = join(a!, b!);
        const again = cloneState(ab);
        expect(mergeInto(again, b!)).toBe(false);
        expect(mergeInto(again, a!)).toBe(false);
        expect(canonical(again)).toEqual(canonical(ab));
      }),
      { numRuns: 500 },
    );
  });

  it('gives the identical state for any permutation and duplication of a delta sequence', () => {
    fc.assert(
      fc.property(
        deltasArb(1, 6).chain((deltas) =>
          fc.tuple(
            fc.constant(deltas),
            // A delivery order: every delta at least once, some several times, shuffled.
            fc
              .array(fc.nat(deltas.length - 1), { maxLength: deltas.length * 2 })
              .chain((extra) =>
                fc.shuffledSubarray([...deltas.keys(), ...extra], { minLength: deltas.length + extra.length }),
              ),
          ),
        ),
        ([deltas, order]) => {
          const inOrder = fold(deltas);
          const delivered = fold(order.map((i) => deltas[i]!));
          expect(canonical(delivered)).toEqual(canonical(inOrder));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('the merged state holds, per attribute, the register with the newest stamp', () => {
    fc.assert(
      fc.property(deltasArb(1, 5), (deltas) => {
        const merged = fold(deltas);
        if (deltas.some((d) => d.ended)) return;
        for (const name of NAMES) {
          const registers = deltas
            .map((d) => d.attributes.get(name))
            .filter((r): r is AttributeRegister => r !== undefined);
          if (registers.length === 0) {
            expect(merged.attributes.has(name)).toBe(false);
            continue;
          }
          const newest = registers.reduce((best, r) => (compare(r.stamp, best.stamp) > 0 ? r : best));
          expect(merged.attributes.get(name)).toEqual(newest);
        }
      }),
    );
  });
});

function compare(a: Stamp, b: Stamp): number {
  return a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);
}

describe('mergeInto: fields', () => {
  const base = () => createState(KEY, [1000, 0, 'a'], 1800);

  it('takes the minimum createdAt and the maximum (lastAccessedAt, lastAccessedBy)', () => {
    const target = base();
    expect(mergeInto(target, { ...base(), createdAt: 900, lastAccessedAt: 1500, lastAccessedBy: 'b' })).toBe(true);
    expect(target.createdAt).toBe(900);
    expect([target.lastAccessedAt, target.lastAccessedBy]).toEqual([1500, 'b']);
    expect(mergeInto(target, { ...base(), createdAt: 950, lastAccessedAt: 1400, lastAccessedBy: 'z' })).toBe(false);
    expect([target.createdAt, target.lastAccessedAt, target.lastAccessedBy]).toEqual([900, 1500, 'b']);
    // Equal access time: the greater node id wins, so every order gives the same holder.
    mergeInto(target, { ...base(), lastAccessedAt: 1500, lastAccessedBy: 'c' });
    expect(target.lastAccessedBy).toBe('c');
  });

  it('a removal register with a newer stamp beats a set, and an older set does not revive it', () => {
    const target = base();
    mergeInto(target, {
      ...base(),
      attributes: new Map([['x', { stamp: [1001, 0, 'a'] as Stamp, value: '1', bytes: 1 }]]),
    });
    mergeInto(target, { ...base(), attributes: new Map([['x', { stamp: [1002, 0, 'b'] as Stamp, bytes: 0 }]]) });
    mergeInto(target, {
      ...base(),
      attributes: new Map([['x', { stamp: [1001, 5, 'c'] as Stamp, value: '2', bytes: 1 }]]),
    });
    expect(target.attributes.get('x')).toEqual({ stamp: [1002, 0, 'b'], bytes: 0 });
  });

  it('the last max-inactive write wins', () => {
    const target = base();
    mergeInto(target, { ...base(), maxInactive: { seconds: 60, stamp: [1005, 0, 'b'] } });
    mergeInto(target, { ...base(), maxInactive: { seconds: 30, stamp: [1003, 0, 'c'] } });
    expect(target.maxInactive).toEqual({ seconds: 60, stamp: [1005, 0, 'b'] });
  });
});

describe('mergeInto: an ended state beats everything', () => {
  const live = (): SessionState => ({
    ...createState(KEY, [1000, 0, 'a'], 1800),
    attributes: new Map([
      ['x', { stamp: [1001, 0, 'a'] as Stamp, value: '1', bytes: 1 }],
      ['y', { stamp: [1002, 0, 'a'] as Stamp, value: '2', bytes: 1 }],
    ]),
  });
  const end = (stamp: Stamp, reason: 'invalidated' | 'expired' = 'invalidated'): SessionState => ({
    ...createState(KEY, [1000, 0, 'a'], 1800),
    ended: { stamp, reason },
  });

  it('ending a live state drops every attribute', () => {
    const target = live();
    expect(mergeInto(target, end([1003, 0, 'b']))).toBe(true);
    expect(target.ended).toEqual({ stamp: [1003, 0, 'b'], reason: 'invalidated' });
    expect(target.attributes.size).toBe(0);
  });

  it('writes stamped after the end do not bring attributes back', () => {
    const target = end([1003, 0, 'b']);
    const late = live();
    late.attributes.set('z', { stamp: [9999, 0, 'c'], value: '3', bytes: 1 });
    expect(mergeInto(target, late)).toBe(false);
    expect(target.attributes.size).toBe(0);
    expect(target.ended?.stamp).toEqual([1003, 0, 'b']);
  });

  it('an ended state that arrives carrying attributes is stored without them', () => {
    const target = live();
    const dirty = { ...end([1004, 0, 'b']), attributes: live().attributes };
    mergeInto(target, dirty);
    expect(target.attributes.size).toBe(0);
  });

  it('the earliest end wins, whatever the order, so every node keeps the same reason', () => {
    const a = live();
    mergeInto(a, end([1010, 0, 'b'], 'expired'));
    mergeInto(a, end([1005, 0, 'c'], 'invalidated'));
    const b = live();
    mergeInto(b, end([1005, 0, 'c'], 'invalidated'));
    mergeInto(b, end([1010, 0, 'b'], 'expired'));
    expect(a.ended).toEqual({ stamp: [1005, 0, 'c'], reason: 'invalidated' });
    expect(canonical(a)).toEqual(canonical(b));
  });
});

describe('helpers', () => {
  it('createState starts with the creation stamp everywhere and no attributes', () => {
    const state = createState(KEY, [1234, 3, 'n1'], 60);
    expect(state).toEqual({
      key: KEY,
      createdAt: 1234,
      lastAccessedAt: 1234,
      lastAccessedBy: 'n1',
      maxInactive: { seconds: 60, stamp: [1234, 3, 'n1'] },
      attributes: new Map(),
    });
  });

  it('cloneState is independent of the original', () => {
    const original = createState(KEY, [1, 0, 'a'], 60);
    original.ended = { stamp: [2, 0, 'a'], reason: 'expired' };
    const copy = cloneState(original);
    copy.attributes.set('x', { stamp: [3, 0, 'a'], value: '1', bytes: 1 });
    copy.maxInactive.seconds = 5;
    copy.lastAccessedAt = 99;
    expect(original.attributes.size).toBe(0);
    expect(original.maxInactive.seconds).toBe(60);
    expect(original.lastAccessedAt).toBe(1);
    expect(copy.ended).toEqual(original.ended);
    expect(copy.ended).not.toBe(original.ended);
  });

  it('latestStamp finds the newest stamp among max-inactive, attributes and end', () => {
    const state = createState(KEY, [10, 0, 'a'], 60);
    expect(latestStamp(state)).toEqual([10, 0, 'a']);
    state.attributes.set('x', { stamp: [12, 0, 'b'], value: '1', bytes: 1 });
    state.attributes.set('y', { stamp: [11, 9, 'c'], bytes: 0 });
    expect(latestStamp(state)).toEqual([12, 0, 'b']);
    state.ended = { stamp: [12, 1, 'a'], reason: 'invalidated' };
    expect(latestStamp(state)).toEqual([12, 1, 'a']);
  });

  it('attributeBytes counts names and values of set attributes, not removals', () => {
    const state = createState(KEY, [10, 0, 'a'], 60);
    state.attributes.set('ab', { stamp: [11, 0, 'a'], value: 'xxxxx', bytes: 5 });
    state.attributes.set('gone', { stamp: [12, 0, 'a'], bytes: 0 });
    expect(attributeBytes(state)).toBe(2 + 5);
  });

  it('isIdleExpired uses seconds, the grace period, and never expires a non-positive interval', () => {
    const state = createState(KEY, [10_000, 0, 'a'], 2);
    expect(isIdleExpired(state, 11_999)).toBe(false);
    expect(isIdleExpired(state, 12_000)).toBe(true);
    expect(isIdleExpired(state, 12_000, 500)).toBe(false);
    expect(isIdleExpired(state, 12_500, 500)).toBe(true);
    state.maxInactive = { seconds: 0, stamp: [10_000, 1, 'a'] };
    expect(isIdleExpired(state, 1e12)).toBe(false);
    state.maxInactive = { seconds: -1, stamp: [10_000, 2, 'a'] };
    expect(isIdleExpired(state, 1e12)).toBe(false);
  });
});
