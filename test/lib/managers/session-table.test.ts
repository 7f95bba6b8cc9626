// Owns: unit tests of lib/managers/session-table.ts (merge outcomes, live sessions vs tombstones, expiry, collection).
import { describe, expect, it } from 'vitest';
import { SessionTable } from '../../../lib/managers/session-table.ts';
import type { Stamp } from '../../../lib/session/clock.ts';
import { createState, type SessionState } from '../../../lib/session/state.ts';

const key = (i: number) => `key${String(i).padStart(21, '0')}`;
const live = (k: string, at = 1000, attributes: Record<string, string> = {}): SessionState => ({
  ...createState(k, [at, 0, 'a'], 60),
  attributes: new Map(
    Object.entries(attributes).map(([name, value], i) => [
      name,
      { stamp: [at, i + 1, 'a'] as Stamp, value, bytes: value.length },
    ]),
  ),
});
const ended = (k: string, at: number, reason: 'invalidated' | 'expired' = 'invalidated'): SessionState => ({
  ...createState(k, [1000, 0, 'a'], 60),
  ended: { stamp: [at, 0, 'b'], reason },
});

describe('SessionTable.merge', () => {
  it('reports created for an unknown key, then changed or unchanged', () => {
    const table = new SessionTable();
    expect(table.merge(live(key(1), 1000, { a: '1' }))).toEqual({ created: true, ended: false, changed: true });
    expect(table.merge(live(key(1), 1000, { a: '1' }))).toEqual({ created: false, ended: false, changed: false });
    expect(table.merge(live(key(1), 2000, { a: '2' }))).toEqual({ created: false, ended: false, changed: true });
    expect(table.live(key(1))?.attributes.get('a')?.value).toBe('2');
  });

  it('reports ended exactly once, when a live session ends', () => {
    const table = new SessionTable();
    table.merge(live(key(1)));
    expect(table.merge(ended(key(1), 3000))).toEqual({ created: false, ended: true, changed: true });
    expect(table.merge(ended(key(1), 3000))).toEqual({ created: false, ended: false, changed: false });
    // An earlier end replaces the stamp but the session did not end again.
    expect(table.merge(ended(key(1), 2000))).toEqual({ created: false, ended: false, changed: true });
  });

  it('a first-seen end is a tombstone, neither created nor ended', () => {
    const table = new SessionTable();
    const dirty = { ...ended(key(1), 3000), attributes: live(key(1), 1000, { a: '1' }).attributes };
    expect(table.merge(dirty)).toEqual({ created: false, ended: false, changed: true });
    expect(table.live(key(1))).toBeUndefined();
    expect(table.get(key(1))?.ended).toBeDefined();
    expect(table.get(key(1))?.attributes.size).toBe(0);
    expect([table.liveCount, table.tombstoneCount]).toEqual([0, 1]);
  });

  it('keeps its own copy: changing the merged object afterwards changes nothing', () => {
    const table = new SessionTable();
    const delta = live(key(1), 1000, { a: '1' });
    table.merge(delta);
    delta.attributes.set('b', { stamp: [5000, 0, 'a'], value: 'x', bytes: 1 });
    delta.lastAccessedAt = 9999;
    expect(table.get(key(1))?.attributes.has('b')).toBe(false);
    expect(table.get(key(1))?.lastAccessedAt).toBe(1000);
  });

  it('a late write does not revive a tombstone', () => {
    const table = new SessionTable();
    table.merge(live(key(1)));
    table.merge(ended(key(1), 2000));
    expect(table.merge(live(key(1), 9000, { a: 'late' })).ended).toBe(false);
    expect(table.live(key(1))).toBeUndefined();
    expect(table.get(key(1))?.attributes.size).toBe(0);
    expect([table.liveCount, table.tombstoneCount]).toEqual([0, 1]);
  });
});

describe('SessionTable counts and views', () => {
  it('counts live sessions and tombstones, and lists each kind', () => {
    const table = new SessionTable();
    for (let i = 0; i < 5; i++) table.merge(live(key(i)));
    table.merge(ended(key(1), 2000));
    table.merge(ended(key(3), 2000));
    table.merge(ended(key(9), 2000)); // never seen live
    expect(table.liveCount).toBe(3);
    expect(table.tombstoneCount).toBe(3);
    expect([...table.liveStates()].map((s) => s.key).sort()).toEqual([key(0), key(2), key(4)]);
    expect(table.keys().sort()).toEqual([0, 1, 2, 3, 4, 9].map(key).sort());
    expect(table.live(key(1))).toBeUndefined();
    expect(table.get(key(1))).toBeDefined();
    expect(table.get(key(42))).toBeUndefined();
  });

  it('expired() lists idle live sessions using the per-session grace', () => {
    const table = new SessionTable();
    table.merge(live(key(1), 1000)); // 60 s interval: idle from 61000
    table.merge(live(key(2), 50_000));
    table.merge(ended(key(3), 2000));
    expect(table.expired(61_000, () => 0).map((s) => s.key)).toEqual([key(1)]);
    expect(table.expired(61_000, () => 1)).toEqual([]);
    expect(
      table
        .expired(200_000, () => 0)
        .map((s) => s.key)
        .sort(),
    ).toEqual([key(1), key(2)]);
    expect(table.expired(200_000, (s) => (s.key === key(2) ? 1e9 : 0)).map((s) => s.key)).toEqual([key(1)]);
  });

  it('collect removes the tombstones the predicate says are due, and only those', () => {
    const table = new SessionTable();
    table.merge(live(key(0)));
    table.merge(ended(key(1), 1000));
    table.merge(ended(key(2), 5000));
    table.merge(ended(key(3), 4999));
    const due = (state: SessionState) => state.ended!.stamp[0] < 5000;
    expect(table.collect(due).sort()).toEqual([key(1), key(3)]);
    expect(table.get(key(1))).toBeUndefined();
    expect(table.get(key(2))).toBeDefined();
    expect(table.live(key(0))).toBeDefined();
    expect([table.liveCount, table.tombstoneCount]).toEqual([1, 1]);
    expect(table.collect(due)).toEqual([]);
    // A collected key is unknown again.
    expect(table.merge(live(key(1))).created).toBe(true);
  });

  it('remove drops a live session or a tombstone and keeps the counts right', () => {
    const table = new SessionTable();
    table.merge(live(key(1)));
    table.merge(live(key(2)));
    table.merge(ended(key(2), 2000));
    table.remove(key(1));
    table.remove(key(2));
    table.remove(key(3)); // unknown: nothing happens
    expect([table.liveCount, table.tombstoneCount]).toEqual([0, 0]);
    expect(table.keys()).toEqual([]);
  });
});
