// Owns: the backup manager's per-destination batching of request writes (lib/managers/backup/copies.ts):
// the writes of one event-loop turn share one `copy` message per backup, in async and ack mode.
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../../lib/channel/memory.ts';
import { waitFor } from '../../../../functions/launch/index.ts';
import type { BackupManager } from '../../../../lib/managers/backup/backup-manager.ts';
import { attributesOn, makeNode, partsOf, setOn, startNodes, writeAllAtOnce } from '../../../kit/memory-nodes.ts';
import { keyOf } from '../../../kit/cookie-client.ts';

describe('backup manager: request writes of one turn share a message per destination', () => {
  for (const mode of ['async', 'ack'] as const) {
    it(`${mode}: 20 concurrent writes on one primary send one copy per backup, and each backup holds every value`, async () => {
      const bus = new MemoryBus();
      // The nodes share one event loop: under load a lag past the preset's 300 ms memberDropMs counted as a stall or a
      // lost member, and the repair that followed sent copies of its own (4 instead of 2, about 1 run in 10 at load 5).
      const [a, b, c] = await startNodes(bus, ['a', 'b', 'c'], {
        manager: 'backup',
        sendMode: mode,
        memberDropMs: 5000,
      });
      const cookies: string[] = [];
      for (let i = 0; i < 20; i++) cookies.push(await setOn(a!, undefined, { n: 0 }));
      const manager = partsOf(a!).manager as BackupManager;
      const backups = new Set(cookies.map((cookie) => manager.entry(keyOf(cookie))?.backup));
      expect([...backups].sort()).toEqual(['b', 'c']); // round-robin: both members back some up
      await waitFor('every backup to hold its copy', () =>
        cookies.every((cookie) => {
          const backup = manager.entry(keyOf(cookie))!.backup === 'b' ? b! : c!;
          return attributesOn(backup, keyOf(cookie))?.n === 0;
        }),
      );

      const { sent, received } = await writeAllAtOnce(a!, cookies, { n: 1 });
      expect(sent.copy).toBe(2);
      if (mode === 'ack') expect(received.ack).toBe(2);
      const onBackups = () =>
        cookies.every((cookie) => {
          const backup = manager.entry(keyOf(cookie))!.backup === 'b' ? b! : c!;
          return attributesOn(backup, keyOf(cookie))?.n === 1;
        });
      if (mode === 'ack')
        expect(onBackups()).toBe(true); // acknowledged: applied before the answers
      else await waitFor('every backup to hold the new values', onBackups);
      expect(a!.stats.acksTimedOut).toBe(0);
    });
  }
});

/** A memory channel that records the entries of every `copy` it publishes (and may claim to be unordered). */
class CopyRecorder extends MemoryChannel {
  readonly copies: number[] = [];
  constructor(
    bus: MemoryBus,
    override readonly ordered: boolean,
  ) {
    super(bus);
  }
  override publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    const message = JSON.parse(new TextDecoder().decode(data)) as { k: string; b: { e?: unknown[] } };
    if (message.k === 'copy') this.copies.push(message.b.e?.length ?? 0);
    super.publish(subject, data, options);
  }
}

describe('backup manager: ownership entries in write copies', () => {
  for (const ordered of [true, false]) {
    it(`${ordered ? 'ordered' : 'unordered'} channel: a write's copy ${ordered ? 'leaves out the entry the backup already got' : 'always carries the entry'}, and the backup holds every write`, async () => {
      const bus = new MemoryBus();
      const channel = new CopyRecorder(bus, ordered);
      const a = makeNode(bus, 'a', { manager: 'backup', channel });
      await a.start();
      const b = makeNode(bus, 'b', { manager: 'backup' });
      await b.start();
      await waitFor('a to see b ready', () => a.membership.readyMembers().length === 1);
      let cookie = await setOn(a, undefined, { n: 0 });
      for (let n = 1; n <= 3; n++) cookie = await setOn(a, cookie, { n });
      await waitFor('b to hold the last write', () => attributesOn(b, keyOf(cookie))?.n === 3);
      expect(channel.copies).toEqual(ordered ? [0, 0, 0, 0] : [1, 1, 1, 1]);
    });
  }
});
