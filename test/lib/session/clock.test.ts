// Owns: unit tests of lib/session/clock.ts (hybrid logical clock, stamp order).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ClockSkew, compareStamps, HybridClock, newerStamp, type Stamp } from '../../../lib/session/clock.ts';

/** A clock whose wall time the test sets. */
function manualClock(node: string, start = 1_000_000) {
  let now = start;
  const clock = new HybridClock(node, () => now);
  return {
    clock,
    set: (ms: number) => (now = ms),
    get now() {
      return now;
    },
  };
}

describe('HybridClock.tick', () => {
  it('is strictly increasing while the wall clock stands still', () => {
    const { clock } = manualClock('a');
    let previous = clock.tick();
    for (let i = 0; i < 1000; i++) {
      const next = clock.tick();
      expect(compareStamps(next, previous)).toBeGreaterThan(0);
      previous = next;
    }
    expect(previous[0]).toBe(1_000_000);
    expect(previous[1]).toBe(1000);
  });

  it('is strictly increasing when the wall clock goes back', () => {
    const m = manualClock('a', 5000);
    const first = m.clock.tick();
    m.set(1000);
    const second = m.clock.tick();
    m.set(4999);
    const third = m.clock.tick();
    expect(compareStamps(second, first)).toBeGreaterThan(0);
    expect(compareStamps(third, second)).toBeGreaterThan(0);
    expect(third[0]).toBe(5000); // never moves the wall part backwards
  });

  it('follows the wall clock forward and resets the counter', () => {
    const m = manualClock('a', 100);
    m.clock.tick();
    m.clock.tick();
    m.set(200);
    expect(m.clock.tick()).toEqual([200, 0, 'a']);
  });

  it('is strictly increasing for any sequence of wall readings', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1e12 }), { minLength: 1, maxLength: 200 }), (walls) => {
        let i = 0;
        const clock = new HybridClock('n', () => walls[Math.min(i++, walls.length - 1)]!);
        let previous: Stamp | undefined;
        for (let k = 0; k < walls.length; k++) {
          const stamp = clock.tick();
          if (previous) expect(compareStamps(stamp, previous)).toBeGreaterThan(0);
          previous = stamp;
        }
      }),
    );
  });

  it('stamps carry the node id', () => {
    expect(manualClock('node-7').clock.tick()[2]).toBe('node-7');
  });
});

describe('HybridClock.observe', () => {
  it('moves past a remote stamp ahead of our wall clock', () => {
    const m = manualClock('a', 1000);
    m.clock.tick();
    const remote: Stamp = [1500, 7, 'z'];
    m.clock.observe(remote);
    const next = m.clock.tick();
    expect(compareStamps(next, remote)).toBeGreaterThan(0);
    expect(next).toEqual([1500, 8, 'a']);
  });

  it('moves past a remote stamp with the same wall time but a higher counter, whatever the node ids', () => {
    const m = manualClock('zzz', 1000);
    m.clock.tick();
    const remote: Stamp = [1000, 42, 'aaa'];
    m.clock.observe(remote);
    expect(compareStamps(m.clock.tick(), remote)).toBeGreaterThan(0);
  });

  it('does not move backwards for an older remote stamp', () => {
    const m = manualClock('a', 1000);
    const before = m.clock.tick();
    m.clock.observe([10, 99, 'b']);
    const after = m.clock.tick();
    expect(compareStamps(after, before)).toBeGreaterThan(0);
    expect(after).toEqual([1000, 1, 'a']);
  });

  it('ignores stamps more than one minute in the future', () => {
    const m = manualClock('a', 1_000_000);
    m.clock.observe([1_000_000 + 60_001, 5, 'b']);
    expect(m.clock.tick()).toEqual([1_000_000, 0, 'a']);
  });

  it('reports a stamp it does not follow as clock skew', () => {
    const skews: ClockSkew[] = [];
    const clock = new HybridClock(
      'a',
      () => 1_000_000,
      (skew) => skews.push(skew),
    );
    clock.observe([1_000_000 + 300_000, 5, 'b']);
    expect(skews).toEqual([{ kind: 'observe', aheadMs: 300_000, from: 'b' }]);
  });

  it('tickAfter: a write replacing a register stamped by a clock 5 minutes ahead is stamped just after it, and reported', () => {
    const skews: ClockSkew[] = [];
    const clock = new HybridClock(
      'a',
      () => 1_000_000,
      (skew) => skews.push(skew),
    );
    const ahead: Stamp = [1_300_000, 4, 'b'];
    clock.observe(ahead);
    const stamp = clock.tickAfter(ahead);
    expect(stamp).toEqual([1_300_000, 5, 'a']);
    expect(compareStamps(stamp, ahead)).toBeGreaterThan(0);
    expect(skews.map((s) => s.kind)).toEqual(['observe', 'write']);
  });

  it('tickAfter: an older register or none gives the plain next tick, with nothing reported', () => {
    const skews: ClockSkew[] = [];
    const clock = new HybridClock(
      'a',
      () => 1_000_000,
      (skew) => skews.push(skew),
    );
    expect(clock.tickAfter([999_000, 7, 'b'])).toEqual([1_000_000, 0, 'a']);
    expect(clock.tickAfter(undefined)).toEqual([1_000_000, 1, 'a']);
    expect(skews).toEqual([]);
  });

  it('accepts stamps up to exactly one minute in the future', () => {
    const m = manualClock('a', 1_000_000);
    m.clock.observe([1_000_000 + 60_000, 5, 'b']);
    expect(m.clock.tick()).toEqual([1_060_000, 6, 'a']);
  });

  it('after observing any set of plausible remote stamps, the next tick is newer than all of them', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100_000, max: 1e9 }),
        fc.array(fc.tuple(fc.integer({ min: -100_000, max: 60_000 }), fc.nat(1000), fc.constantFrom('a', 'b', 'z')), {
          maxLength: 30,
        }),
        (now, remotes) => {
          const clock = new HybridClock('m', () => now);
          const stamps = remotes.map(([offset, counter, node]) => [now + offset, counter, node] as Stamp);
          for (const stamp of stamps) clock.observe(stamp);
          const next = clock.tick();
          for (const stamp of stamps) expect(compareStamps(next, stamp)).toBeGreaterThan(0);
        },
      ),
    );
  });
});

describe('compareStamps', () => {
  const stamp = fc.tuple(fc.nat(5), fc.nat(5), fc.constantFrom('a', 'b', 'c')) as fc.Arbitrary<Stamp>;

  it('orders by wall time, then counter, then node id', () => {
    expect(compareStamps([1, 9, 'z'], [2, 0, 'a'])).toBeLessThan(0);
    expect(compareStamps([2, 1, 'a'], [2, 0, 'z'])).toBeGreaterThan(0);
    expect(compareStamps([2, 1, 'a'], [2, 1, 'b'])).toBeLessThan(0);
    expect(compareStamps([2, 1, 'b'], [2, 1, 'a'])).toBeGreaterThan(0);
    expect(compareStamps([2, 1, 'b'], [2, 1, 'b'])).toBe(0);
  });

  it('is a total order: antisymmetric, transitive, and 0 only for identical stamps', () => {
    fc.assert(
      fc.property(stamp, stamp, stamp, (a, b, c) => {
        expect(Math.sign(compareStamps(a, b)) + Math.sign(compareStamps(b, a))).toBe(0);
        expect(compareStamps(a, b) === 0).toBe(a[0] === b[0] && a[1] === b[1] && a[2] === b[2]);
        if (compareStamps(a, b) <= 0 && compareStamps(b, c) <= 0) expect(compareStamps(a, c)).toBeLessThanOrEqual(0);
      }),
    );
  });

  it('newerStamp picks the greater one, in either argument order', () => {
    fc.assert(
      fc.property(stamp, stamp, (a, b) => {
        expect(newerStamp(a, b)).toEqual(newerStamp(b, a));
        expect(compareStamps(newerStamp(a, b), a)).toBeGreaterThanOrEqual(0);
        expect(compareStamps(newerStamp(a, b), b)).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});
