// Owns: unit tests of lib/managers/ack-tracker.ts (waiting for acknowledgements by message id).
import { describe, expect, it, vi } from 'vitest';
import { ACK_LATE_MS, AckTracker, RESEND_AFTER_MS } from '../../../lib/managers/ack-tracker.ts';

/** Tracks whether a promise has settled yet, and with what. */
function settled<T>(promise: Promise<T>): { readonly done: boolean; readonly value: T | undefined } {
  const state = { done: false, value: undefined as T | undefined };
  void promise.then((value) => {
    state.done = true;
    state.value = value;
  });
  return state;
}
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('AckTracker', () => {
  it('resolves at once, with nobody missing, when no member is expected', async () => {
    const tracker = new AckTracker();
    expect(await tracker.wait('m1', [], 10_000)).toEqual([]);
  });

  it('resolves with [] once every expected member acknowledged, not before', async () => {
    const tracker = new AckTracker();
    const wait = settled(tracker.wait('m1', ['a', 'b', 'c'], 10_000));
    tracker.acknowledge('m1', 'a');
    tracker.acknowledge('m1', 'b');
    tracker.acknowledge('m1', 'b'); // a duplicate ack counts once
    await tick();
    expect(wait.done).toBe(false);
    tracker.acknowledge('m1', 'c');
    await tick();
    expect(wait.done).toBe(true);
    expect(wait.value).toEqual([]);
  });

  it('ignores acks for other messages and from members it does not wait for', async () => {
    const tracker = new AckTracker();
    const wait = settled(tracker.wait('m1', ['a'], 10_000));
    tracker.acknowledge('m2', 'a');
    tracker.acknowledge('m1', 'z');
    tracker.acknowledge('unknown', 'a');
    await tick();
    expect(wait.done).toBe(false);
    tracker.acknowledge('m1', 'a');
    await tick();
    expect(wait.value).toEqual([]);
  });

  it('times out with the members that did not acknowledge', async () => {
    const tracker = new AckTracker();
    const started = Date.now();
    const waiting = tracker.wait('m1', ['a', 'b', 'c'], 80);
    tracker.acknowledge('m1', 'b');
    expect((await waiting).sort()).toEqual(['a', 'c']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
  });

  it('forget(node) stops waiting for a member that left, for every message', async () => {
    const tracker = new AckTracker();
    const one = settled(tracker.wait('m1', ['a', 'gone'], 10_000));
    const two = settled(tracker.wait('m2', ['gone'], 10_000));
    const three = settled(tracker.wait('m3', ['a'], 10_000));
    tracker.acknowledge('m1', 'a');
    tracker.forget('gone');
    await tick();
    expect([one.done, two.done, three.done]).toEqual([true, true, false]);
    expect(one.value).toEqual([]);
    expect(two.value).toEqual([]);
    tracker.releaseAll();
  });

  it('cancel resolves one waiter with nobody missing', async () => {
    const tracker = new AckTracker();
    const waiting = tracker.wait('m1', ['a'], 10_000);
    tracker.cancel('m1');
    expect(await waiting).toEqual([]);
  });

  it('releaseAll resolves every waiter, reporting who is still pending', async () => {
    const tracker = new AckTracker();
    const one = tracker.wait('m1', ['a', 'b'], 10_000);
    const two = tracker.wait('m2', ['c'], 10_000);
    tracker.acknowledge('m1', 'a');
    tracker.releaseAll();
    expect(await one).toEqual(['b']);
    expect(await two).toEqual(['c']);
    // Finished waiters are gone: late acks are harmless.
    tracker.acknowledge('m1', 'b');
  });

  it('clears the timer of a finished waiter (a later timeout does not re-resolve)', async () => {
    const tracker = new AckTracker();
    const waiting = tracker.wait('m1', ['a'], 30);
    tracker.acknowledge('m1', 'a');
    expect(await waiting).toEqual([]);
    // A second wait under the same id is independent of the first one's timer.
    const second = settled(tracker.wait('m1', ['b'], 10_000));
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(second.done).toBe(false);
    tracker.releaseAll();
  });

  it('sends an unacknowledged message again to the members still pending, at doubling intervals, until it is acknowledged', async () => {
    vi.useFakeTimers();
    try {
      const tracker = new AckTracker();
      const resent: string[][] = [];
      const waiting = settled(tracker.wait('m1', ['a', 'b'], 10_000, (members) => resent.push(members)));
      tracker.acknowledge('m1', 'a');
      await vi.advanceTimersByTimeAsync(RESEND_AFTER_MS - 1);
      expect(resent).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(resent).toEqual([['b']]);
      await vi.advanceTimersByTimeAsync(2 * RESEND_AFTER_MS);
      expect(resent).toEqual([['b'], ['b']]);
      await vi.advanceTimersByTimeAsync(4 * RESEND_AFTER_MS);
      expect(resent.length).toBe(3);
      tracker.acknowledge('m1', 'b');
      await vi.advanceTimersByTimeAsync(0);
      expect(waiting.done).toBe(true);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(resent.length).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('names the members silent (no ack of any message) since a wait for them began, every ACK_LATE_MS while they stay so, once per check', async () => {
    vi.useFakeTimers();
    try {
      const late: string[][] = [];
      const tracker = new AckTracker((members) => late.push(members));
      const one = settled(tracker.wait('m1', ['a', 'b'], 10_000));
      const two = settled(tracker.wait('m2', ['a', 'b'], 10_000));
      await vi.advanceTimersByTimeAsync(1);
      tracker.acknowledge('m2', 'a'); // a is alive, just late with m1: it is not named
      await vi.advanceTimersByTimeAsync(ACK_LATE_MS - 2);
      expect(late).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(late).toEqual([['b']]);
      await vi.advanceTimersByTimeAsync(ACK_LATE_MS);
      expect(late).toEqual([['b'], ['b']]);
      for (const id of ['m1', 'm2']) tracker.acknowledge(id, 'b');
      tracker.acknowledge('m1', 'a');
      await vi.advanceTimersByTimeAsync(10 * ACK_LATE_MS);
      expect(late).toHaveLength(2);
      expect(vi.getTimerCount()).toBe(0); // nothing waits: no check runs
      expect([one.value, two.value]).toEqual([[], []]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('resendAll sends every waiting message again at once (the connection is back), to its pending members only, and counts them', async () => {
    let counted = 0;
    const tracker = new AckTracker(undefined, undefined, (count) => (counted += count));
    const resent: Array<[string, string[]]> = [];
    void tracker.wait('m1', ['a', 'b'], 10_000, (members) => resent.push(['m1', members]));
    void tracker.wait('m2', ['c'], 10_000, (members) => resent.push(['m2', members]));
    void tracker.wait('m3', ['d'], 10_000); // no way to send it again
    tracker.acknowledge('m1', 'b');
    tracker.resendAll();
    expect(resent).toEqual([
      ['m1', ['a']],
      ['m2', ['c']],
    ]);
    expect(counted).toBe(2);
    tracker.releaseAll();
  });

  it('does not wait for a member that is unreachable (its connection is gone)', async () => {
    const down = new Set(['b']);
    const tracker = new AckTracker(undefined, (member) => !down.has(member));
    expect(await tracker.wait('m0', ['b'], 10_000)).toEqual([]);
    const waiting = settled(tracker.wait('m1', ['a', 'b'], 10_000));
    tracker.acknowledge('m1', 'a');
    await tick();
    expect(waiting.value).toEqual([]);
  });
});
