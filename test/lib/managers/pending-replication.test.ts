// Owns: unit tests of lib/managers/pending-replication.ts (what a commit puts on the wire: stashed filtered changes, rate-limited touches).
import { describe, expect, it } from 'vitest';
import { PendingReplication, touchIntervalFor } from '../../../lib/managers/pending-replication.ts';
import type { Stamp } from '../../../lib/session/clock.ts';
import { createState, type SessionState } from '../../../lib/session/state.ts';

const KEY = 'k'.repeat(24);
const delta = (at: number, attributes: Record<string, string> = {}, seconds = 1800): SessionState => ({
  ...createState(KEY, [1000, 0, 'a'], seconds),
  lastAccessedAt: at,
  attributes: new Map(
    Object.entries(attributes).map(([name, value]) => [
      name,
      { stamp: [at, 0, 'a'] as Stamp, value, bytes: value.length },
    ]),
  ),
});

describe('touchIntervalFor', () => {
  it('is the configured interval, shortened to a tenth of a short session timeout (at least 1 s)', () => {
    expect(touchIntervalFor(delta(0, {}, 1800), 60_000)).toBe(60_000);
    expect(touchIntervalFor(delta(0, {}, 60), 60_000)).toBe(6000);
    expect(touchIntervalFor(delta(0, {}, 1), 60_000)).toBe(1000);
    expect(touchIntervalFor(delta(0, {}, 1), 200)).toBe(200);
    expect(touchIntervalFor(delta(0, {}, 0), 60_000)).toBe(60_000);
  });
});

describe('PendingReplication', () => {
  it('sends a modified delta every time, and a touch at most once per interval', () => {
    const pending = new PendingReplication(1000);
    expect(pending.due(delta(10_000), false, 10_000)).toBeDefined();
    expect(pending.due(delta(10_500), false, 10_500)).toBeUndefined();
    expect(pending.due(delta(10_600, { a: '1' }), true, 10_600)).toBeDefined();
    expect(pending.due(delta(11_000), false, 11_000)).toBeUndefined();
    expect(pending.due(delta(11_600), false, 11_600)).toBeDefined();
  });

  it('stashed filtered changes leave merged with the next commit, even a touch', () => {
    const pending = new PendingReplication(60_000);
    pending.due(delta(1000), true, 1000);
    pending.stash(delta(1100, { a: '1' }));
    pending.stash(delta(1200, { b: '2' }));
    expect(pending.stashed(KEY)).toBe(true); // so this touch carries changes: an ack-mode commit waits for its acks
    const out = pending.due(delta(1300), false, 1300);
    expect(out).toBeDefined();
    expect([...out!.attributes.keys()].sort()).toEqual(['a', 'b']);
    expect(out!.lastAccessedAt).toBe(1300);
    // Sent once: the stash is empty now.
    expect(pending.stashed(KEY)).toBe(false);
    expect(pending.due(delta(1400), false, 1400)).toBeUndefined();
  });

  it('forget drops the stash and the touch history', () => {
    const T = 1_700_000_000_000; // epoch milliseconds, as commits use
    const pending = new PendingReplication(60_000);
    pending.due(delta(T), true, T);
    pending.stash(delta(T + 100, { a: '1' }));
    pending.forget(KEY);
    // Never sent as far as it knows: even a touch goes out, and without the dropped stash.
    const out = pending.due(delta(T + 200), false, T + 200);
    expect(out).toBeDefined();
    expect(out!.attributes.size).toBe(0);
  });
});
