// Owns: unit and property tests of lib/managers/backup/ownership-map.ts (roles, last-writer-wins merge with
// terminal tombstones, live/raw views, role counts, round-robin backup choice).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  OwnershipMap,
  roleOf,
  RoundRobin,
  type OwnershipEntry,
} from '../../../../lib/managers/backup/ownership-map.ts';
import type { Stamp } from '../../../../lib/session/clock.ts';

const entry = (
  key: string,
  primary: string,
  backup: string,
  at: number,
  extra: Partial<OwnershipEntry> = {},
): OwnershipEntry => ({
  key,
  primary,
  backup,
  stamp: [at, 0, primary || 'x'] as Stamp,
  ...extra,
});

describe('roleOf', () => {
  it('names the primary, the backup, and every other node a proxy', () => {
    const e = entry('k', 'n1', 'n2', 1);
    expect(roleOf(e, 'n1')).toBe('primary');
    expect(roleOf(e, 'n2')).toBe('backup');
    expect(roleOf(e, 'n3')).toBe('proxy');
  });

  it('an entry without a backup makes every node but the primary a proxy', () => {
    const e = entry('k', 'n1', '', 1);
    expect(roleOf(e, 'n1')).toBe('primary');
    expect(roleOf(e, 'n2')).toBe('proxy');
  });
});

describe('OwnershipMap.merge', () => {
  it('takes an unknown key and reports no previous entry', () => {
    const map = new OwnershipMap();
    expect(map.merge(entry('k', 'n1', 'n2', 1))).toEqual({ previous: undefined });
    expect(map.get('k')).toMatchObject({ primary: 'n1', backup: 'n2' });
  });

  it('keeps the entry with the newer stamp, reporting the one it replaced', () => {
    const map = new OwnershipMap();
    const first = entry('k', 'n1', 'n2', 1);
    map.merge(first);
    expect(map.merge(entry('k', 'n2', 'n3', 2))).toEqual({ previous: first });
    expect(map.merge(entry('k', 'n3', 'n1', 1))).toBeUndefined();
    expect(map.merge(entry('k', 'n2', 'n3', 2))).toBeUndefined(); // an equal stamp changes nothing
    expect(map.get('k')).toMatchObject({ primary: 'n2', backup: 'n3' });
  });

  it('an ended entry wins over a live one whatever the stamps, and nothing live replaces it', () => {
    const map = new OwnershipMap();
    map.merge(entry('k', 'n1', 'n2', 100));
    expect(map.merge(entry('k', 'n1', 'n2', 5, { ended: true }))).toBeDefined();
    expect(map.get('k')).toBeUndefined();
    expect(map.raw('k')?.ended).toBe(true);
    expect(map.merge(entry('k', 'n3', 'n1', 1000))).toBeUndefined();
    expect(map.raw('k')).toMatchObject({ primary: 'n1', ended: true });
  });

  it('between two ended entries the newer stamp wins', () => {
    const map = new OwnershipMap();
    map.merge(entry('k', 'n1', '', 5, { ended: true }));
    expect(map.merge(entry('k', 'n2', '', 3, { ended: true }))).toBeUndefined();
    expect(map.merge(entry('k', 'n2', '', 9, { ended: true }))).toBeDefined();
    expect(map.raw('k')?.primary).toBe('n2');
  });

  it('converges on the same entries whatever order the broadcasts arrive in (and however often)', () => {
    const node = fc.constantFrom('n1', 'n2', 'n3', '');
    const anEntry = fc.record({
      key: fc.constantFrom('a', 'b', 'c'),
      primary: fc.constantFrom('n1', 'n2', 'n3'),
      backup: node,
      // Distinct stamps per key: real stamps are unique (the clock's node breaks ties).
      at: fc.integer({ min: 1, max: 1_000_000 }),
      ended: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(anEntry, { selector: (e) => `${e.key}:${e.at}`, maxLength: 30 }),
        fc.integer(),
        (raw, seed) => {
          const entries = raw.map((e) => entry(e.key, e.primary, e.backup, e.at, e.ended ? { ended: true } : {}));
          const shuffled = [...entries, ...entries.slice(0, seed % (entries.length + 1))].sort(
            (x, y) => ((x.stamp[0] * 7919 + seed) % 101) - ((y.stamp[0] * 7919 + seed) % 101),
          );
          const inOrder = new OwnershipMap();
          const outOfOrder = new OwnershipMap();
          for (const e of entries) inOrder.merge(e);
          for (const e of shuffled) outOfOrder.merge(e);
          expect([...outOfOrder.all()].sort((x, y) => (x.key < y.key ? -1 : 1))).toEqual(
            [...inOrder.all()].sort((x, y) => (x.key < y.key ? -1 : 1)),
          );
        },
      ),
    );
  });
});

describe('OwnershipMap views', () => {
  it('live() and get() skip tombstones, all() and raw() include them, delete() forgets outright', () => {
    const map = new OwnershipMap();
    map.merge(entry('a', 'n1', 'n2', 1));
    map.merge(entry('b', 'n2', 'n1', 1));
    map.merge(entry('c', 'n1', '', 1, { ended: true }));
    expect([...map.live()].map((e) => e.key)).toEqual(['a', 'b']);
    expect([...map.all()].map((e) => e.key)).toEqual(['a', 'b', 'c']);
    expect(map.get('c')).toBeUndefined();
    expect(map.raw('c')?.ended).toBe(true);
    map.delete('c');
    expect(map.raw('c')).toBeUndefined();
    expect([...map.all()].map((e) => e.key)).toEqual(['a', 'b']);
  });

  it('counts live entries by the role one node plays', () => {
    const map = new OwnershipMap();
    map.merge(entry('a', 'n1', 'n2', 1));
    map.merge(entry('b', 'n2', 'n1', 1));
    map.merge(entry('c', 'n2', 'n3', 1));
    map.merge(entry('d', 'n1', '', 1));
    map.merge(entry('e', 'n1', 'n2', 1, { ended: true }));
    expect(map.counts('n1')).toEqual({ primary: 2, backup: 1, proxy: 1 });
    expect(map.counts('n3')).toEqual({ primary: 0, backup: 1, proxy: 3 });
  });
});

describe('RoundRobin', () => {
  it("gives '' when there is no candidate", () => {
    expect(new RoundRobin().pick([])).toBe('');
  });

  it('cycles through the candidates in sorted order, whatever order they are given in', () => {
    const rr = new RoundRobin();
    const picks = [
      rr.pick(['n3', 'n1', 'n2']),
      rr.pick(['n2', 'n3', 'n1']),
      rr.pick(['n1', 'n2', 'n3']),
      rr.pick(['n3', 'n2', 'n1']),
    ];
    expect(picks).toEqual(['n1', 'n2', 'n3', 'n1']);
  });

  it('spreads picks evenly over a stable candidate set', () => {
    const rr = new RoundRobin();
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const node = rr.pick(['n1', 'n2', 'n3']);
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({ n1: 100, n2: 100, n3: 100 });
  });

  it('never picks a node that is not a candidate when the set shrinks', () => {
    const rr = new RoundRobin();
    rr.pick(['n1', 'n2', 'n3']);
    rr.pick(['n1', 'n2', 'n3']);
    for (let i = 0; i < 5; i++) expect(['n1']).toContain(rr.pick(['n1']));
  });
});
