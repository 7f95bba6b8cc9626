// Owns: the ReplicationLog contract suite (lib/log/replication-log.ts), run against every implementation
// (test/integration/replication-log.test.ts: JetStream on a real nats-server, and a lagging wrapper of it).
import { describe, expect, it } from 'vitest';
import { DuplicateMessageIdError } from '../../lib/errors.ts';
import type { LogFollower, LogMessage, ReplicationLog } from '../../lib/log/replication-log.ts';
import { waitFor } from '../kit/index.ts';

/** One fresh, empty log for one test. */
export interface ReplicationLogFixture {
  /** The log as one node (writer) holds it. */
  readonly log: ReplicationLog;
  /** Another writer on the same log, as a second node (or a restarted process) holds it: its own instance. */
  writer(): Promise<ReplicationLog>;
  /** Removes the log's storage and closes what the fixture opened. */
  destroy(): Promise<void>;
}

/** What the contract needs from an implementation. */
export interface ReplicationLogTarget {
  /** Shown in test names. */
  readonly name: string;
  /** A fresh, empty log no other test uses. */
  create(): Promise<ReplicationLogFixture>;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** Follows `log` from `fromSeq`, collecting what it delivers until stopped. */
async function collect(
  log: ReplicationLog,
  fromSeq: number,
): Promise<{ messages: LogMessage[]; follower: LogFollower }> {
  const messages: LogMessage[] = [];
  const follower = await log.follow(fromSeq, (message) => messages.push(message));
  return { messages, follower };
}

/** Runs `fn` with a fresh log and destroys it afterwards, also when `fn` fails. */
async function withLog(
  target: ReplicationLogTarget,
  fn: (fixture: ReplicationLogFixture) => Promise<void>,
): Promise<void> {
  const fixture = await target.create();
  try {
    await fixture.log.ensure();
    await fn(fixture);
  } finally {
    await fixture.destroy();
  }
}

/** Registers the ReplicationLog contract tests for `target`. */
export function describeReplicationLogContract(target: ReplicationLogTarget): void {
  describe(`ReplicationLog contract: ${target.name}`, () => {
    it('ensure is idempotent, also when writers race; an empty log has first = last + 1', async () => {
      await withLog(target, async ({ log, writer }) => {
        const others = await Promise.all([writer(), writer(), writer()]);
        await Promise.all([log.ensure(), ...others.map((other) => other.ensure())]);
        const { first, last } = await log.bounds();
        expect(first).toBe(last + 1);
      });
    });

    it('append resolves with consecutive sequences; follow delivers the exact bytes in order, then new messages as they are stored', async () => {
      await withLog(target, async ({ log }) => {
        const before = await log.bounds();
        const seqs: number[] = [];
        for (let i = 0; i < 5; i++) seqs.push(await log.append(bytes(`m${i}`), `id-${i}`));
        expect(seqs).toEqual([0, 1, 2, 3, 4].map((i) => before.last + 1 + i));
        expect(await log.bounds()).toEqual({ first: seqs[0], last: seqs[4] });

        const { messages, follower } = await collect(log, seqs[0]!);
        await waitFor('the stored messages', () => messages.length >= 5);
        seqs.push(await log.append(bytes('live'), 'id-live'));
        await waitFor('the live message', () => messages.length >= 6);
        follower.stop();
        expect(messages.map((m) => [m.seq, text(m.data)])).toEqual([
          ...[0, 1, 2, 3, 4].map((i) => [seqs[i], `m${i}`]),
          [seqs[5], 'live'],
        ]);
      });
    });

    it('follow from a later sequence starts exactly there; a stopped follower delivers nothing more', async () => {
      await withLog(target, async ({ log }) => {
        const seqs: number[] = [];
        for (let i = 0; i < 6; i++) seqs.push(await log.append(bytes(`m${i}`), `id-${i}`));
        const { messages, follower } = await collect(log, seqs[3]!);
        await waitFor('messages from the 4th on', () => messages.length >= 3);
        follower.stop();
        expect(messages.map((m) => text(m.data))).toEqual(['m3', 'm4', 'm5']);
        // Another follower sees the next message; the stopped one must not.
        const watcher = await collect(log, seqs[5]! + 1);
        await log.append(bytes('after stop'), 'id-after');
        await waitFor('the watcher to see the new message', () => watcher.messages.length >= 1);
        watcher.follower.stop();
        expect(messages).toHaveLength(3);
      });
    });

    it('a retry (same id, same bytes) is stored once and answers the first sequence', async () => {
      await withLog(target, async ({ log }) => {
        const first = await log.append(bytes('once'), 'retry-1');
        const again = await log.append(bytes('once'), 'retry-1');
        expect(again).toBe(first);
        const next = await log.append(bytes('next'), 'retry-2');
        expect(next).toBe(first + 1);
        const { messages, follower } = await collect(log, first);
        await waitFor('both messages', () => messages.length >= 2);
        follower.stop();
        expect(messages.map((m) => text(m.data))).toEqual(['once', 'next']);
      });
    });

    it('ids of different writers never collide: the same id from two writers stores both messages', async () => {
      await withLog(target, async ({ log, writer }) => {
        const other = await writer();
        // What two manager incarnations with the same short prefix produce: the same msgId.
        const a = await log.append(bytes('from A'), 'abcd1234-1');
        const b = await other.append(bytes('from B'), 'abcd1234-1');
        expect(b).not.toBe(a);
        const { messages, follower } = await collect(log, Math.min(a, b));
        await waitFor('both messages', () => messages.length >= 2);
        follower.stop();
        expect(messages.map((m) => text(m.data)).sort()).toEqual(['from A', 'from B']);
      });
    });

    it('an id a writer already used for different bytes rejects with DuplicateMessageIdError and stores nothing', async () => {
      await withLog(target, async ({ log }) => {
        const first = await log.append(bytes('original'), 'dup-1');
        const error = await log.append(bytes('impostor'), 'dup-1').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DuplicateMessageIdError);
        expect((error as DuplicateMessageIdError).code).toBe('LOG_DUPLICATE_MESSAGE_ID');
        expect(await log.bounds()).toEqual({ first, last: first });
      });
    });

    it('concurrent appends from two writers get distinct, gap-free sequences, each delivered once', async () => {
      await withLog(target, async ({ log, writer }) => {
        const other = await writer();
        const before = await log.bounds();
        const seqs = await Promise.all(
          Array.from({ length: 200 }, (_, i) => (i % 2 ? other : log).append(bytes(`c${i}`), `c-${i}`)),
        );
        expect(new Set(seqs).size).toBe(200);
        expect(Math.min(...seqs)).toBe(before.last + 1);
        expect(Math.max(...seqs)).toBe(before.last + 200);
        const { messages, follower } = await collect(log, before.last + 1);
        await waitFor('all 200 messages', () => messages.length >= 200, { timeoutMs: 20_000 });
        follower.stop();
        expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => before.last + 1 + i));
        const bySeq = new Map(seqs.map((seq, i) => [seq, `c${i}`]));
        for (const m of messages) expect(text(m.data)).toBe(bySeq.get(m.seq));
      });
    });
  });
}
