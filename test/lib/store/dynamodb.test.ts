// Owns: DynamoSnapshotStore against the SnapshotStore contract on a real DynamoDB (Local by default,
// or env DYNAMODB_ENDPOINT), plus its table layout, table creation and unreachable-endpoint errors.
import {
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  GetItemCommand,
  QueryCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeSessionState } from '../../../lib/codec/envelope.ts';
import { createSnapshotTable, DynamoSnapshotStore, shardOf } from '../../../lib/store/dynamodb.ts';
import { snapshotStoreContract } from '../../contracts/snapshot-store.ts';
import {
  ddbClient,
  freePort,
  canonical,
  sessionKey,
  sessionState,
  throwawayTable,
  uniqueCluster,
} from '../../kit/index.ts';

let client: DynamoDBClient;
let table: { table: string; drop(): Promise<void> };
const extraClients: DynamoDBClient[] = [];

beforeAll(async () => {
  client = ddbClient(inject('ddbEndpoint'));
  table = await throwawayTable(client);
});
afterAll(async () => {
  await table?.drop();
  for (const c of extraClients.splice(0)) c.destroy();
  client?.destroy();
});

// 4 shards instead of 16 so a 3,000-item load needs several 1 MB pages per shard (pagination and
// parallel shards in one test); everything else is shard-count independent.
snapshotStoreContract({
  name: 'DynamoSnapshotStore',
  create: (cluster) => new DynamoSnapshotStore({ client, table: table.table, cluster, shards: 4 }),
  another: (cluster) => {
    const second = ddbClient(inject('ddbEndpoint'));
    extraClients.push(second);
    return new DynamoSnapshotStore({ client: second, table: table.table, cluster, shards: 4 });
  },
  minPagesFor3000: 8,
  bulkTimeoutMs: 60_000,
});

describe('DynamoSnapshotStore on DynamoDB', () => {
  it('lays items out as pk <cluster>#<shard> (16 shards by default), sk session key, s/v/ttl, plus <cluster>#meta/checkpoint', async () => {
    const cluster = uniqueCluster('layout');
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const keys = Array.from({ length: 200 }, (_, i) => sessionKey(i));
    const expiresAt = Math.floor(Date.now() / 1000) + 3600;
    await store.write(keys.map((key, i) => ({ state: sessionState(key, { i }), version: 40 + (i % 3), expiresAt })));
    await store.writeCheckpoint(42);

    const shardsUsed = new Set<number>();
    for (const [i, key] of keys.entries()) {
      const shard = shardOf(key, 16);
      shardsUsed.add(shard);
      if (i % 20 !== 0) continue;
      const { Item } = await client.send(
        new GetItemCommand({ TableName: table.table, Key: { pk: { S: `${cluster}#${shard}` }, sk: { S: key } } }),
      );
      expect(Item, key).toBeDefined();
      expect(Item!.v).toEqual({ N: String(40 + (i % 3)) });
      expect(Item!.ttl).toEqual({ N: String(expiresAt) });
      expect(decodeSessionState(Item!.s!.S!).key).toBe(key);
    }
    expect(shardsUsed.size).toBe(16); // 200 keys hash onto every shard
    let total = 0;
    for (let shard = 0; shard < 16; shard++) {
      const page = await client.send(
        new QueryCommand({
          TableName: table.table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: `${cluster}#${shard}` } },
          Select: 'COUNT',
        }),
      );
      total += page.Count ?? 0;
    }
    expect(total).toBe(200);
    const { Item: meta } = await client.send(
      new GetItemCommand({ TableName: table.table, Key: { pk: { S: `${cluster}#meta` }, sk: { S: 'checkpoint' } } }),
    );
    expect(meta?.seq).toEqual({ N: '42' });
  });

  it('keeps an end as a tombstone item: ended, v and ttl, no state', async () => {
    const cluster = uniqueCluster('tombstone');
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const key = sessionKey();
    const expiresAt = Math.floor(Date.now() / 1000) + 7200;
    await store.write([{ state: sessionState(key, { a: 1 }), version: 3 }]);
    await store.write([{ state: sessionState(key, {}, { ended: 'invalidated' }), version: 4, expiresAt }]);
    const { Item } = await client.send(
      new GetItemCommand({
        TableName: table.table,
        Key: { pk: { S: `${cluster}#${shardOf(key, 16)}` }, sk: { S: key } },
      }),
    );
    expect(Item).toEqual({
      pk: { S: `${cluster}#${shardOf(key, 16)}` },
      sk: { S: key },
      v: { N: '4' },
      ended: { S: 'invalidated' },
      ttl: { N: String(expiresAt) },
    });
  });

  it("rejects and reports an item over DynamoDB's 400 KB, and writes the rest of its batch", async () => {
    const cluster = uniqueCluster('huge');
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const huge = sessionState(sessionKey(0), { blob: 'x'.repeat(420 * 1024) });
    const small = [1, 2, 3].map((i) => sessionState(sessionKey(i), { i }));
    const result = await store.write([small[0]!, huge, small[1]!, small[2]!].map((state) => ({ state, version: 1 })));
    expect(result.written).toBe(3);
    expect(result.rejected?.map((r) => r.key)).toEqual([huge.key]);
    expect(result.rejected?.[0]?.reason).toMatch(/400|size/i);
    const loaded: string[] = [];
    await store.load((page) => loaded.push(...page.map((state) => state.key)));
    expect(loaded.sort()).toEqual(small.map((state) => state.key).sort());
  });

  it("writes items that together exceed a transaction's 4 MB in smaller transactions", {
    timeout: 60_000,
  }, async () => {
    const cluster = uniqueCluster('big');
    const store = new DynamoSnapshotStore({ client, table: table.table, cluster, batchSize: 25 });
    const states = Array.from({ length: 16 }, (_, i) =>
      sessionState(sessionKey(i), { blob: `${i}`.padEnd(300 * 1024, 'y') }),
    );
    const result = await store.write(states.map((state) => ({ state, version: 2 })));
    expect(result).toEqual({ written: 16, superseded: 0 });
    const loaded = new Map<string, number>();
    await store.load((page) => {
      for (const state of page) loaded.set(state.key, state.attributes.get('blob')!.value!.length);
    });
    expect([...loaded.keys()].sort()).toEqual(states.map((state) => state.key).sort());
    for (const length of loaded.values()) expect(length).toBeGreaterThan(300 * 1024);
  });

  it("another node's store (own instance, same cluster) loads what the first one wrote", async () => {
    const cluster = uniqueCluster('shards');
    const writer = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const state = sessionState(sessionKey(), { x: 1 });
    await writer.write([{ state, version: 1 }]);
    const reader = new DynamoSnapshotStore({ client, table: table.table, cluster });
    const loaded: unknown[] = [];
    await reader.load((page) => loaded.push(...page.map((state) => canonical(state, { bytes: true }))));
    expect(loaded).toEqual([canonical(state, { bytes: true })]);
  });

  it('createSnapshotTable creates an on-demand pk/sk table with TTL on ttl, and leaves an existing one alone', async () => {
    const name = uniqueCluster('create');
    try {
      expect(await createSnapshotTable(client, name)).toBe('created');
      expect(await createSnapshotTable(client, name)).toBe('exists');
      const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
      expect(Table?.TableStatus).toBe('ACTIVE');
      expect(Table?.KeySchema).toEqual([
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ]);
      expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
      const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: name }));
      expect(ttl.TimeToLiveDescription).toMatchObject({ AttributeName: 'ttl', TimeToLiveStatus: 'ENABLED' });
    } finally {
      await client.send(new DeleteTableCommand({ TableName: name })).catch(() => undefined);
    }
  });

  it('rejects load, write and checkpoints quickly when DynamoDB is unreachable (so a joiner can fall back)', async () => {
    const closed = ddbClient(`http://127.0.0.1:${await freePort()}`, { maxAttempts: 1, connectionTimeout: 500 });
    extraClients.push(closed);
    const store = new DynamoSnapshotStore({ client: closed, table: table.table, cluster: uniqueCluster('down') });
    const started = Date.now();
    await expect(store.load(() => undefined)).rejects.toThrow(/ECONNREFUSED|connect/i);
    await expect(store.write([{ state: sessionState(sessionKey()), version: 1 }])).rejects.toThrow();
    await expect(store.writeCheckpoint(1)).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
