// Owns: tests of the snapshot write-behind (SnapshotWriter): coalescing, leader-only writes, pruning by
// checkpoint, versions, TTLs, failures; then the same on real nodes (NATS JetStream + DynamoDB).
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { SnapshotWriteError } from '../../../lib/errors.ts';
import type { SessionState } from '../../../lib/session/state.ts';
import { DynamoSnapshotStore } from '../../../lib/store/dynamodb.ts';
import { MemorySnapshotStore } from '../../../lib/store/memory.ts';
import type { SnapshotItem, SnapshotStore } from '../../../lib/store/snapshot-store.ts';
import { SnapshotWriter } from '../../../lib/store/snapshot-writer.ts';
import {
  CookieClient,
  ddbClient,
  deleteStreams,
  inBatches,
  memoryLogger,
  persistentNode,
  sessionKey,
  sessionState,
  throwawayTable,
  uniqueCluster,
  waitFor,
  type PersistentNode,
} from '../../kit/index.ts';

/** A memory store that records every write call and checkpoint, and can be made to fail. */
class RecordingStore extends MemorySnapshotStore {
  readonly writes: SnapshotItem[][] = [];
  readonly checkpoints: number[] = [];
  failing?: Error;
  /** The next write writes everything but this key, then rejects with SnapshotWriteError naming it. */
  failOnce?: string;

  override async write(items: readonly SnapshotItem[]) {
    if (this.failing) throw this.failing;
    this.writes.push([...items]);
    const failed = this.failOnce;
    if (failed === undefined) return super.write(items);
    this.failOnce = undefined;
    const done = await super.write(items.filter((item) => item.state.key !== failed));
    throw new SnapshotWriteError('1 snapshot item not written: simulated throttling', done, [failed]);
  }

  /** The next checkpoint write rejects. */
  failCheckpointOnce = false;

  override async writeCheckpoint(sequence: number) {
    if (this.failing) throw this.failing;
    if (this.failCheckpointOnce) {
      this.failCheckpointOnce = false;
      throw new Error('simulated checkpoint failure');
    }
    this.checkpoints.push(sequence);
    return super.writeCheckpoint(sequence);
  }

  get itemsWritten(): number {
    return this.writes.reduce((n, batch) => n + batch.length, 0);
  }
}

/** A writer over `table` (the node's session map) with a switchable leader flag; the timer is not started. */
function writerFor(
  store: SnapshotStore,
  table: Map<string, SessionState>,
  leader: { value: boolean },
  options = { intervalMs: 50, checkpointPollMs: 0 },
) {
  const logger = memoryLogger();
  const writer = new SnapshotWriter(
    store,
    (key) => table.get(key),
    () => leader.value,
    options,
    logger,
  );
  return { writer, logger };
}

describe('SnapshotWriter', () => {
  it('coalesces: a session changed 100 times before a flush costs one item write, at the latest version', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true });
    const key = sessionKey();
    for (let seq = 1; seq <= 100; seq++) {
      table.set(key, sessionState(key, { counter: seq }));
      writer.noteApplied(seq, [key]);
    }
    expect(writer.status.dirty).toBe(1);
    await writer.tick();
    expect(store.writes).toHaveLength(1);
    expect(store.itemsWritten).toBe(1);
    expect(store.writes[0]![0]).toMatchObject({ version: 100, state: { key } });
    expect(store.writes[0]![0]!.state.attributes.get('counter')?.value).toBe('[100]');
    expect(store.checkpoints).toEqual([100]);
    expect(writer.status).toMatchObject({
      leader: true,
      dirty: 0,
      checkpoint: 100,
      itemsWritten: 1,
      flushes: 1,
      errors: 0,
    });
    // Nothing changed since: the next tick writes nothing.
    await writer.tick();
    expect(store.writes).toHaveLength(1);
  });

  it('writes many sessions changed by one message, and each session once however many messages touched it', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true });
    const keys = Array.from({ length: 50 }, (_, i) => sessionKey(i));
    for (const key of keys) table.set(key, sessionState(key, { a: 1 }));
    writer.noteApplied(1, keys);
    for (let seq = 2; seq <= 500; seq++) writer.noteApplied(seq, [keys[seq % 50]!]);
    await writer.flush();
    expect(store.itemsWritten).toBe(50);
    expect(new Set(store.writes.flat().map((item) => item.state.key)).size).toBe(50);
    expect(store.writes.flat().every((item) => item.version === 500)).toBe(true);
    expect(await store.readCheckpoint()).toBe(500);
  });

  it('only the leader writes; a non-leader keeps what it saw dirty and forgets what the checkpoint covers', async () => {
    const store = new RecordingStore();
    const tableA = new Map<string, SessionState>();
    const tableB = new Map<string, SessionState>();
    const leaderFlag = { value: true };
    const followerFlag = { value: false };
    const a = writerFor(store, tableA, leaderFlag).writer;
    const b = writerFor(store, tableB, followerFlag).writer;
    const keys = Array.from({ length: 10 }, (_, i) => sessionKey(i));
    // Both nodes see messages 1..6; the follower already sees 7..10, the leader has not yet.
    for (let seq = 1; seq <= 10; seq++) {
      const key = keys[seq - 1]!;
      const state = sessionState(key, { seq });
      tableB.set(key, state);
      b.noteApplied(seq, [key]);
      if (seq <= 6) {
        tableA.set(key, state);
        a.noteApplied(seq, [key]);
      }
    }
    await b.tick(); // not the leader: reads the checkpoint (none yet), writes nothing
    expect(store.writes).toHaveLength(0);
    expect(b.status).toMatchObject({ leader: false, dirty: 10, itemsWritten: 0 });

    await a.tick();
    expect(store.itemsWritten).toBe(6);
    expect(await store.readCheckpoint()).toBe(6);

    await b.tick(); // prunes what checkpoint 6 covers, keeps 7..10
    expect(store.itemsWritten).toBe(6);
    expect(b.status).toMatchObject({ leader: false, dirty: 4, checkpoint: 6, itemsWritten: 0 });

    // The leader goes away; the follower takes over and writes exactly what is still unwritten.
    leaderFlag.value = false;
    followerFlag.value = true;
    await b.tick();
    expect(
      store.writes
        .at(-1)!
        .map((item) => item.state.key)
        .sort(),
    ).toEqual(keys.slice(6).sort());
    expect(await store.readCheckpoint()).toBe(10);
    const loaded: string[] = [];
    await store.load((page) => loaded.push(...page.map((s) => s.key)));
    expect(loaded.sort()).toEqual([...keys].sort());
  });

  it('a fresh node starts at the checkpoint it loaded: nothing at or below it counts as unwritten', async () => {
    const store = new RecordingStore();
    await store.writeCheckpoint(20);
    const { writer } = writerFor(store, new Map(), { value: true });
    writer.startAt(20);
    await writer.tick();
    expect(store.writes).toHaveLength(0);
    expect(store.checkpoints).toEqual([20]); // only the one written above
    expect(writer.status.checkpoint).toBe(20);
  });

  it('an absolute lifetime shorter than the idle timeout sets the TTL: creation plus lifetime plus the grace', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true });
    const key = sessionKey(4);
    const state = sessionState(key, { a: 1 }, { maxInactiveSeconds: 3600 });
    state.maxLifetime = { seconds: 60, stamp: state.maxInactive.stamp };
    table.set(key, state);
    writer.noteApplied(1, [key]);
    await writer.flush();
    expect(store.writes.at(-1)![0]!.expiresAt).toBe(Math.ceil((state.createdAt + 60_000) / 1000) + 3600);
  });

  it('gives items a TTL of the session timeout plus an hour of grace, none for sessions that never expire; ends become tombstones kept a day longer', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true });
    const [expiring, forever, ended] = [sessionKey(1), sessionKey(2), sessionKey(3)];
    table.set(expiring, sessionState(expiring, { a: 1 }, { maxInactiveSeconds: 600 }));
    table.set(forever, sessionState(forever, { a: 1 }, { maxInactiveSeconds: 0 }));
    await store.write([{ state: sessionState(ended, { a: 1 }), version: 1 }]);
    table.set(ended, sessionState(ended, {}, { ended: 'invalidated' }));
    writer.noteApplied(2, [expiring, forever, ended]);
    const flushedAt = Date.now();
    await writer.flush();
    const items = new Map(store.writes.at(-1)!.map((item) => [item.state.key, item]));
    const last = table.get(expiring)!.lastAccessedAt;
    expect(items.get(expiring)!.expiresAt).toBe(Math.ceil((last + 600_000) / 1000) + 3600);
    expect(items.get(forever)!.expiresAt).toBeUndefined();
    // A tombstone outlives any copy a stale writer may hold: counted from now, plus the log's 24 h retention.
    expect(items.get(ended)!.expiresAt).toBeGreaterThanOrEqual(Math.floor(flushedAt / 1000) + 1800 + 24 * 3600);
    const loaded: string[] = [];
    await store.load((page) => loaded.push(...page.map((s) => s.key)));
    expect(loaded.sort()).toEqual([expiring, forever].sort());
  });

  it('keeps sessions dirty through store failures, backs off, and writes them once the store is back', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer, logger } = writerFor(store, table, { value: true }, { intervalMs: 10, checkpointPollMs: 0 });
    const key = sessionKey();
    table.set(key, sessionState(key, { a: 1 }));
    writer.noteApplied(1, [key]);
    store.failing = new Error('ProvisionedThroughputExceededException: simulated');
    await writer.tick();
    expect(writer.status).toMatchObject({
      errors: 1,
      dirty: 1,
      itemsWritten: 0,
      lastError: expect.stringMatching(/simulated/),
    });
    expect(logger.lines.some((l) => l.level === 'warn' && /snapshot write failed/.test(l.message))).toBe(true);
    await writer.tick(); // still backing off: no new attempt
    expect(writer.status.errors).toBe(1);
    store.failing = undefined;
    await waitFor('the writer to retry after its backoff', async () => {
      await writer.tick();
      return writer.status.flushes === 1;
    });
    expect(writer.status).toMatchObject({ dirty: 0, checkpoint: 1, itemsWritten: 1 });
  });

  it('after a partial failure, writes again only what was not written', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true }, { intervalMs: 10, checkpointPollMs: 0 });
    const keys = Array.from({ length: 10 }, (_, i) => sessionKey(i));
    for (const key of keys) table.set(key, sessionState(key, { a: 1 }));
    writer.noteApplied(1, keys);
    // The store wrote 9 and could not write one (as DynamoDB when one transaction's retries run out).
    store.failOnce = keys[3];
    await writer.flush();
    expect(writer.status).toMatchObject({ errors: 1, dirty: 1, itemsWritten: 9 });
    expect(store.checkpoints).toEqual([]);
    await waitFor('the retry after the backoff', async () => {
      await writer.tick();
      return writer.status.flushes === 1;
    });
    expect(store.writes.at(-1)!.map((item) => item.state.key)).toEqual([keys[3]]);
    expect(writer.status).toMatchObject({ dirty: 0, itemsWritten: 10, checkpoint: 1 });
  });

  it('a failed checkpoint after a successful write does not write the items again, only the checkpoint', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: true }, { intervalMs: 10, checkpointPollMs: 0 });
    const keys = Array.from({ length: 5 }, (_, i) => sessionKey(i));
    for (const key of keys) table.set(key, sessionState(key, { a: 1 }));
    writer.noteApplied(7, keys);
    store.failCheckpointOnce = true;
    await writer.flush();
    expect(writer.status).toMatchObject({ errors: 1, itemsWritten: 5, dirty: 0 });
    expect(store.checkpoints).toEqual([]);
    await waitFor('the checkpoint after the backoff', async () => {
      await writer.tick();
      return writer.status.flushes === 1;
    });
    expect(store.itemsWritten).toBe(5);
    expect(store.checkpoints).toEqual([7]);
    expect(writer.status).toMatchObject({ itemsWritten: 5, checkpoint: 7 });
  });

  it('keeps the unwritten set within the sessions held: a non-leader forgets sessions it no longer holds while no checkpoint comes', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const { writer } = writerFor(store, table, { value: false });
    for (let seq = 1; seq <= 1000; seq++) {
      const key = sessionKey(seq);
      table.set(key, sessionState(key, { seq }));
      writer.noteApplied(seq, [key]);
      if (seq % 10 !== 0) table.delete(key); // Ended and collected, or expired: 9 in 10 are gone.
    }
    expect(writer.status.dirty).toBe(1000);
    await writer.tick(); // No checkpoint was ever written.
    expect(writer.status.dirty).toBe(100);
    expect(writer.status.checkpoint).toBeUndefined();
  });

  it('the leader flushes what is dirty when it stops; a non-leader does not', async () => {
    const store = new RecordingStore();
    const table = new Map<string, SessionState>();
    const leader = writerFor(store, table, { value: true }, { intervalMs: 60_000, checkpointPollMs: 60_000 }).writer;
    const follower = writerFor(store, table, { value: false }, { intervalMs: 60_000, checkpointPollMs: 60_000 }).writer;
    const key = sessionKey();
    table.set(key, sessionState(key, { a: 1 }));
    follower.noteApplied(3, [key]);
    follower.start();
    await follower.stop();
    expect(store.writes).toHaveLength(0);
    leader.noteApplied(3, [key]);
    leader.start();
    await leader.stop();
    expect(store.itemsWritten).toBe(1);
    expect(await store.readCheckpoint()).toBe(3);
  });
});

describe('SnapshotWriter on DynamoDB: ends, limits and failures', () => {
  let client: DynamoDBClient;
  let table: { table: string; drop(): Promise<void> };
  beforeAll(async () => {
    client = ddbClient(inject('ddbEndpoint'));
    table = await throwawayTable(client, 'sessrep-writer-limits');
  });
  afterAll(async () => {
    await table?.drop();
    client?.destroy();
  });
  const storeFor = (cluster: string) => new DynamoSnapshotStore({ client, table: table.table, cluster });
  const loadKeys = async (store: SnapshotStore) => {
    const keys: string[] = [];
    await store.load((page) => keys.push(...page.map((state) => state.key)));
    return keys.sort();
  };

  it('a stale leader that thaws never brings an ended session back, and a cold start does not load it', async () => {
    const cluster = uniqueCluster('stale');
    const key = sessionKey();
    // X (oldest) applied S's write at 5 and froze before its next flush.
    const xTable = new Map<string, SessionState>([[key, sessionState(key, { user: 'u' })]]);
    const x = writerFor(storeFor(cluster), xTable, { value: true }).writer;
    x.noteApplied(5, [key]);
    // Meanwhile Z, the interim leader, wrote S, then S's end at 8, and advanced the checkpoint.
    const zTable = new Map<string, SessionState>([[key, sessionState(key, { user: 'u' })]]);
    const z = writerFor(storeFor(cluster), zTable, { value: true }).writer;
    z.noteApplied(5, [key]);
    await z.flush();
    zTable.set(key, sessionState(key, {}, { ended: 'invalidated' }));
    z.noteApplied(8, [key]);
    await z.flush();
    expect(z.status).toMatchObject({ checkpoint: 8, errors: 0 });
    // X thaws: its overdue flush writes the copy it held before the end.
    await x.flush();
    expect(x.status).toMatchObject({ itemsWritten: 0, itemsSuperseded: 1, errors: 0 });
    // A cold start (a fresh store instance, as a new node) does not see S.
    expect(await loadKeys(storeFor(cluster))).toEqual([]);
  });

  it('an item the store can never hold is reported, counted and skipped: the others are written and the checkpoint advances', async () => {
    const cluster = uniqueCluster('huge');
    const store = storeFor(cluster);
    const sessions = new Map<string, SessionState>();
    const keys = [sessionKey(0), sessionKey(1), sessionKey(2)];
    sessions.set(keys[0]!, sessionState(keys[0]!, { blob: 'z'.repeat(450 * 1024) }));
    sessions.set(keys[1]!, sessionState(keys[1]!, { a: 1 }));
    sessions.set(keys[2]!, sessionState(keys[2]!, { a: 2 }));
    const { writer, logger } = writerFor(store, sessions, { value: true });
    writer.noteApplied(3, keys);
    await writer.flush();
    expect(writer.status).toMatchObject({ itemsWritten: 2, itemsRejected: 1, errors: 0, dirty: 0, checkpoint: 3 });
    expect(await store.readCheckpoint()).toBe(3);
    expect(
      logger.lines.some(
        (l) => l.level === 'warn' && /never hold/.test(l.message) && JSON.stringify(l.fields).includes(keys[0]!),
      ),
    ).toBe(true);
    expect(await loadKeys(store)).toEqual([keys[1]!, keys[2]!].sort());
    // The next change to another session is written at once: nothing is stuck behind the big one.
    sessions.set(keys[1]!, sessionState(keys[1]!, { a: 10 }));
    writer.noteApplied(4, [keys[1]!]);
    await writer.flush();
    expect(writer.status).toMatchObject({ itemsWritten: 3, itemsRejected: 1, checkpoint: 4 });
  });
});

describe('snapshot write-behind on a real cluster (JetStream + DynamoDB)', () => {
  let client: DynamoDBClient;
  let table: { table: string; drop(): Promise<void> };
  const nodes: PersistentNode[] = [];
  const clusters: string[] = [];

  beforeAll(async () => {
    client = ddbClient(inject('ddbEndpoint'));
    table = await throwawayTable(client, 'sessrep-writer');
  });
  afterEach(async () => {
    await Promise.allSettled(nodes.splice(0).map((n) => n.stop()));
  });
  afterAll(async () => {
    await deleteStreams(inject('natsUrl'), clusters);
    await table?.drop();
    client?.destroy();
  });

  const start = async (cluster: string, name: string, snapshotIntervalMs: number) => {
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const node = await persistentNode(inject('natsUrl'), cluster, name, { store, options: { snapshotIntervalMs } });
    nodes.push(node);
    return node;
  };

  it('the oldest node alone writes, coalescing 5,000 session writes into a few item writes; the other prunes by checkpoint', async () => {
    const cluster = uniqueCluster('wb');
    clusters.push(cluster);
    const a = await start(cluster, 'a', 1000);
    const b = await start(cluster, 'b', 1000);
    await waitFor('b to see a as ready', () => b.sessions.membership.readyMembers().some((m) => m.node === 'a'));

    // 50 sessions, each written 100 times (sequentially per session, sessions in parallel), half on each node
    // (sticky, as behind a load balancer: async replication gives no read-your-writes on another node).
    const clients = Array.from({ length: 50 }, () => new CookieClient());
    const started = Date.now();
    await inBatches(clients, 50, async (c, i) => {
      for (let n = 1; n <= 100; n++) {
        const reply = await c.request(i % 2 ? a : b, 'POST', '/counter');
        expect(reply.status).toBe(200);
      }
    });
    const writeMs = Date.now() - started;
    const sessionWrites = 50 * 100;
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const stored = new Map<string, SessionState>();
    // Async writes reach the log after the responses: wait for the outcome, every final value in DynamoDB...
    await waitFor(
      "DynamoDB to hold every session's final value",
      async () => {
        stored.clear();
        await store.load((page) => {
          for (const s of page) stored.set(s.key, s);
        });
        const missing = clients.filter((c) => stored.get(c.key)?.attributes.get('counter')?.value !== '[100]').length;
        if (missing > 0) throw new Error(`${missing} sessions not final yet; a ${JSON.stringify(a.snapshot())}`);
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(stored.size).toBe(50);
    // ...then for the checkpoint to cover the whole log (complete now: every write reached the store through it).
    const last = (await a.log.bounds()).last;
    await waitFor('the leader to checkpoint the whole log', () => (a.snapshot()?.checkpoint ?? 0) >= last, {
      timeoutMs: 15_000,
    });
    expect(await store.readCheckpoint()).toBeGreaterThanOrEqual(last);

    const leader = a.snapshot()!;
    expect(leader.leader).toBe(true);
    expect(b.snapshot()!.leader).toBe(false);
    expect(b.snapshot()!.itemsWritten).toBe(0);
    // Each flush writes each dirty session at most once: items <= sessions x flushes, far below the writes
    // (how far depends on how many 1 s intervals the writes took on this machine).
    expect(leader.itemsWritten).toBeLessThanOrEqual(50 * leader.flushes);
    expect(leader.itemsWritten).toBeLessThan(sessionWrites / 4);
    expect(leader.errors).toBe(0);
    console.info(
      `[figure] coalescing: ${sessionWrites} session writes in ${writeMs} ms -> ${leader.itemsWritten} item writes in ${leader.flushes} flushes ` +
        `(ratio ${(sessionWrites / leader.itemsWritten).toFixed(1)}:1, snapshotIntervalMs 1000)`,
    );

    // The non-leader forgets what the checkpoint covers at its next checkpoint poll (every 5 s).
    await waitFor(
      'b to prune its dirty sessions by the checkpoint',
      () => b.snapshot()!.dirty === 0 && (b.snapshot()!.checkpoint ?? 0) >= last,
      { timeoutMs: 15_000 },
    );
  }, 90_000);

  it('a session written 100 times within one interval costs about one item write', async () => {
    const cluster = uniqueCluster('wb1');
    clusters.push(cluster);
    const a = await start(cluster, 'a', 2000);
    const c = new CookieClient();
    for (let n = 1; n <= 100; n++) expect((await c.request(a, 'POST', '/counter')).status).toBe(200);
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    await waitFor(
      'DynamoDB to hold the final value',
      async () => {
        let value: string | undefined;
        await store.load((page) => {
          for (const s of page) value = s.attributes.get('counter')?.value;
        });
        return value === '[100]';
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    // Usually 1; 2 when the 100 writes straddle a flush.
    expect(a.snapshot()!.itemsWritten).toBeGreaterThanOrEqual(1);
    expect(a.snapshot()!.itemsWritten).toBeLessThanOrEqual(2);
  }, 30_000);
});
