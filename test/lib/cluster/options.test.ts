// Owns: unit tests of lib/cluster/options.ts: resolveOptions derives every computed default in one place.
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { resolveOptions } from '../../../lib/cluster/index.ts';
import { MemorySnapshotStore } from '../../../lib/store/memory.ts';
import type { ReplicationLog } from '../../../lib/log/replication-log.ts';
import { silentLogger } from '../../kit/logger.ts';

/** A log that is never used: resolveOptions only checks its shape. */
const log: ReplicationLog = {
  name: 'unused',
  ensure: async () => undefined,
  bounds: async () => ({ first: 0, last: 0 }),
  follow: async () => ({ stop: () => undefined }),
  append: async () => 1,
};

/** A channel whose broker accepts messages up to `maxPayload` bytes. */
function channelWithPayload(maxPayload: number): MemoryChannel {
  return Object.assign(new MemoryChannel(new MemoryBus()), { maxPayload });
}

describe('resolveOptions', () => {
  it('fills in every plain default', () => {
    const resolved = resolveOptions({ cluster: 'c' });
    expect(resolved).toMatchObject({
      subjectPrefix: 'sessrep',
      manager: 'delta',
      sendMode: 'async',
      ackTimeoutMs: 5000,
      heartbeatIntervalMs: 500,
      memberDropMs: 3000,
      pingTimeoutMs: 1000,
      fetchTimeoutMs: 5000,
      stateTransferTimeoutMs: 60_000,
      maxInactiveSeconds: 1800,
      sweepIntervalMs: 10_000,
      tombstoneTtlMs: 600_000,
      maxActiveSessions: -1,
      maxAttributes: 1000,
      maxAttributeNameLength: 256,
      maxValueDepth: 32,
      protection: 'encrypt',
      drainQuietMs: 1000,
      channel: undefined,
      log: undefined,
      store: undefined,
    });
    expect(resolved.node).toMatch(/^[0-9a-f-]{8}$/);
    expect(typeof resolved.logger.child).toBe('function');
  });

  it('derives the touch interval from the session timeout: a tenth, between 1 s and 60 s, unless given', () => {
    expect(resolveOptions({ cluster: 'c' }).touchIntervalMs).toBe(60_000);
    expect(resolveOptions({ cluster: 'c', maxInactiveSeconds: 120 }).touchIntervalMs).toBe(12_000);
    expect(resolveOptions({ cluster: 'c', maxInactiveSeconds: 5 }).touchIntervalMs).toBe(1000);
    expect(resolveOptions({ cluster: 'c', maxInactiveSeconds: 120, touchIntervalMs: 300 }).touchIntervalMs).toBe(300);
  });

  it("derives maxSessionBytes: 1 MiB, 350 KiB with a store, capped by the channel's max payload less 64 KiB", () => {
    expect(resolveOptions({ cluster: 'c' }).maxSessionBytes).toBe(1024 * 1024);
    expect(resolveOptions({ cluster: 'c', log, store: new MemorySnapshotStore() }).maxSessionBytes).toBe(350 * 1024);
    expect(resolveOptions({ cluster: 'c', channel: channelWithPayload(512 * 1024) }).maxSessionBytes).toBe(448 * 1024);
    expect(
      resolveOptions({ cluster: 'c', channel: channelWithPayload(512 * 1024), maxSessionBytes: 2000 }).maxSessionBytes,
    ).toBe(2000);
  });

  it('derives the snapshot checkpoint poll (5 snapshot intervals, at least 5 s) and the page limits per manager', () => {
    expect(resolveOptions({ cluster: 'c' }).snapshot).toEqual({ intervalMs: 1000, checkpointPollMs: 5000 });
    expect(resolveOptions({ cluster: 'c', snapshotIntervalMs: 3000 }).snapshot).toEqual({
      intervalMs: 3000,
      checkpointPollMs: 15_000,
    });
    expect(resolveOptions({ cluster: 'c' }).pageLimits).toEqual({ maxSessions: 1000, maxBytes: 512 * 1024 });
    expect(resolveOptions({ cluster: 'c', manager: 'backup' }).pageLimits).toEqual({
      maxSessions: 5000,
      maxBytes: 512 * 1024,
    });
  });

  it('keeps what the caller gave', () => {
    const channel = new MemoryChannel(new MemoryBus());
    const resolved = resolveOptions({
      cluster: 'c',
      node: 'n1',
      channel,
      logger: silentLogger,
      advertiseUrl: 'http://10.0.0.1:8080',
    });
    expect(resolved.channel).toBe(channel);
    expect(resolved.logger).toBe(silentLogger);
    expect(resolved).toMatchObject({ node: 'n1', advertiseUrl: 'http://10.0.0.1:8080' });
  });
});
