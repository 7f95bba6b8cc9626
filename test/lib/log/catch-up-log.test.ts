// Owns: tests of CatchUpLog (lib/log/catch-up-log.ts) over a log whose follower can be made to stall.
import { describe, expect, it } from 'vitest';
import type { LogFollower, LogMessage, ReplicationLog } from '../../../lib/log/replication-log.ts';
import { CatchUpLog } from '../../../lib/log/catch-up-log.ts';

describe('CatchUpLog', () => {
  /** A log whose follower can be made to stall, like a pull consumer whose request expired during a freeze. */
  class FakeLog implements ReplicationLog {
    readonly name = 'fake';
    readonly messages: LogMessage[] = [];
    stalled = false;
    follows: number[] = [];
    #live: Array<{ from: number; on: (m: LogMessage) => void; stopped: boolean }> = [];
    async ensure() {}
    async append(data: Uint8Array): Promise<number> {
      const message = { seq: this.messages.length + 1, data };
      this.messages.push(message);
      for (const f of this.#live) if (!f.stopped && !this.stalled) f.on(message);
      return message.seq;
    }
    async bounds() {
      return { first: 1, last: this.messages.length };
    }
    async follow(fromSeq: number, onMessage: (m: LogMessage) => void): Promise<LogFollower> {
      this.follows.push(fromSeq);
      const follower = { from: fromSeq, on: onMessage, stopped: false };
      this.#live.push(follower);
      this.stalled = false;
      for (const m of this.messages) if (m.seq >= fromSeq) onMessage(m);
      return { stop: () => void (follower.stopped = true) };
    }
  }

  it('returns at once when nothing is missing, waits for a live follower, and restarts a stalled one from the next sequence', async () => {
    const inner = new FakeLog();
    const log = new CatchUpLog(inner, { stallMs: 50 });
    const applied: number[] = [];
    await log.follow(1, (m) => applied.push(m.seq));
    await inner.append(new Uint8Array());
    expect(await log.catchUp(1000)).toMatchObject({ ok: true, missed: 0, restarted: false });

    inner.stalled = true;
    await inner.append(new Uint8Array());
    await inner.append(new Uint8Array());
    const result = await log.catchUp(1000);
    expect(result).toMatchObject({ ok: true, target: 3, missed: 2, restarted: true });
    expect(inner.follows).toEqual([1, 2]);
    expect(applied).toEqual([1, 2, 3]); // once each, in order
    expect(log.delivered).toBe(3);
  });

  it('reports failure when the log cannot be read before the deadline', async () => {
    const inner = new FakeLog();
    inner.bounds = () => new Promise(() => undefined);
    const log = new CatchUpLog(inner);
    await log.follow(1, () => undefined);
    const result = await log.catchUp(100);
    expect(result.ok).toBe(false);
    expect(result.ms).toBeGreaterThanOrEqual(90);
  });
});

describe('CatchUpLog with a consumer that applies asynchronously (the delta manager decrypting protected messages)', () => {
  it("counts a message as caught up only once the consumer's promise for it settled", async () => {
    const messages: LogMessage[] = [];
    let live: ((m: LogMessage) => unknown) | undefined;
    const inner: ReplicationLog = {
      name: 'slow',
      ensure: async () => undefined,
      append: async (data) => {
        const message = { seq: messages.length + 1, data };
        messages.push(message);
        live?.(message);
        return message.seq;
      },
      bounds: async () => ({ first: 1, last: messages.length }),
      follow: async (fromSeq, onMessage) => {
        live = onMessage;
        for (const m of messages) if (m.seq >= fromSeq) onMessage(m);
        return { stop: () => (live = undefined) };
      },
    };
    const log = new CatchUpLog(inner, { stallMs: 1000 });
    const applied: number[] = [];
    await log.follow(
      1,
      (m) => new Promise<void>((resolve) => setTimeout(() => resolve(void applied.push(m.seq)), 100)),
    );
    await inner.append(new Uint8Array(), 'a');
    await inner.append(new Uint8Array(), 'b');
    const result = await log.catchUp(2000);
    expect(result).toMatchObject({ ok: true, target: 2, restarted: false });
    expect(applied).toEqual([1, 2]);
    expect(log.delivered).toBe(2);
  });
});
