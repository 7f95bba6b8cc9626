/**
 * `DynamoSnapshotStore`: session snapshots in one DynamoDB table. Partition key `pk` is
 * `<cluster>#<shard>` (a cluster is spread over `shards` partitions so writes do not pile onto one
 * partition and a load can Query them in parallel), sort key `sk` is the session key. An item holds
 * the encoded state `s`, its version `v` (the log sequence it reflects) and `ttl` (epoch seconds),
 * so DynamoDB deletes expired sessions by itself. The client is injected, so any endpoint works:
 * AWS, LocalStack or DynamoDB Local.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  TransactWriteItemsCommand,
  UpdateTimeToLiveCommand,
  type AttributeValue,
  type DynamoDBClient,
  type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import { decodeSessionState, encodeSessionState } from '../codec/envelope.ts';
import type { SessionState } from '../session/state.ts';
import type { LoadProgress, SnapshotItem, SnapshotStore, SnapshotWriteResult } from './snapshot-store.ts';

/** DynamoDB's item size limit; items are checked against it before they are sent. */
export const DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024;

/** Settings of the DynamoDB store. */
export interface DynamoSnapshotStoreOptions {
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly cluster: string;
  /** Partitions per cluster; default 16. Every node of a cluster must use the same number. */
  readonly shards?: number;
  /** Items per transaction (DynamoDB allows 100); default 25. */
  readonly batchSize?: number;
  /** Transactions in flight; default 8. */
  readonly concurrency?: number;
  /** Attempts per batch on throttling or conflicts; default 8, with exponential backoff. */
  readonly maxAttempts?: number;
}

const RETRYABLE = new Set(['ThrottlingError', 'TransactionConflict', 'ProvisionedThroughputExceeded', 'None', 'RequestLimitExceeded']);

/** The shard of a session key: FNV-1a of its characters. */
export function shardOf(key: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % shards;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Snapshot store on DynamoDB. */
export class DynamoSnapshotStore implements SnapshotStore {
  readonly kind = 'dynamodb';
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #cluster: string;
  readonly #shards: number;
  readonly #batchSize: number;
  readonly #concurrency: number;
  readonly #maxAttempts: number;

  constructor(options: DynamoSnapshotStoreOptions) {
    this.#client = options.client;
    this.#table = options.table;
    this.#cluster = options.cluster;
    this.#shards = options.shards ?? 16;
    this.#batchSize = Math.min(100, options.batchSize ?? 25);
    this.#concurrency = options.concurrency ?? 8;
    this.#maxAttempts = options.maxAttempts ?? 8;
  }

  async write(items: readonly SnapshotItem[]): Promise<SnapshotWriteResult> {
    const result: SnapshotWriteResult = { written: 0, superseded: 0 };
    const batches: SnapshotItem[][] = [];
    for (let i = 0; i < items.length; i += this.#batchSize) batches.push(items.slice(i, i + this.#batchSize));
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const outcome = await this.#writeBatch(batch);
        result.written += outcome.written;
        result.superseded += outcome.superseded;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, batches.length) }, worker));
    return result;
  }

  async writeCheckpoint(sequence: number): Promise<void> {
    try {
      await this.#client.send(
        new PutItemCommand({
          TableName: this.#table,
          Item: { pk: { S: this.#metaKey() }, sk: { S: 'checkpoint' }, seq: { N: String(sequence) }, at: { N: String(Date.now()) } },
          ConditionExpression: 'attribute_not_exists(sk) OR seq < :seq',
          ExpressionAttributeValues: { ':seq': { N: String(sequence) } },
        }),
      );
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    }
  }

  async readCheckpoint(): Promise<number | undefined> {
    const { Item } = await this.#client.send(
      new GetItemCommand({ TableName: this.#table, Key: { pk: { S: this.#metaKey() }, sk: { S: 'checkpoint' } }, ConsistentRead: true }),
    );
    return Item?.seq?.N !== undefined ? Number(Item.seq.N) : undefined;
  }

  async load(onPage: (states: SessionState[]) => void, onProgress?: (progress: LoadProgress) => void): Promise<number | undefined> {
    const checkpoint = await this.readCheckpoint();
    const progress: LoadProgress = { sessions: 0, pages: 0 };
    const now = Math.floor(Date.now() / 1000);
    await Promise.all(
      Array.from({ length: this.#shards }, async (_, shard) => {
        let start: Record<string, AttributeValue> | undefined;
        do {
          const page = await this.#client.send(
            new QueryCommand({
              TableName: this.#table,
              KeyConditionExpression: 'pk = :pk',
              ExpressionAttributeValues: { ':pk': { S: `${this.#cluster}#${shard}` } },
              ConsistentRead: true,
              ...(start ? { ExclusiveStartKey: start } : {}),
            }),
          );
          const states: SessionState[] = [];
          for (const item of page.Items ?? []) {
            // DynamoDB's TTL deletion lags by up to days: skip what has expired already.
            if (item.ttl?.N !== undefined && Number(item.ttl.N) < now) continue;
            if (item.s?.S !== undefined) states.push(decodeSessionState(item.s.S));
          }
          onPage(states);
          progress.sessions += states.length;
          progress.pages++;
          onProgress?.({ ...progress });
          start = page.LastEvaluatedKey;
        } while (start);
      }),
    );
    return checkpoint;
  }

  async #writeBatch(batch: SnapshotItem[]): Promise<SnapshotWriteResult> {
    const result: SnapshotWriteResult = { written: 0, superseded: 0 };
    let pending = batch;
    for (let attempt = 1; pending.length > 0; attempt++) {
      try {
        await this.#client.send(new TransactWriteItemsCommand({ TransactItems: pending.map((item) => this.#operation(item)) }));
        result.written += pending.length;
        return result;
      } catch (error) {
        const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons;
        const retry: SnapshotItem[] = [];
        if ((error as Error).name === 'TransactionCanceledException' && reasons) {
          reasons.forEach((reason, i) => {
            if (reason.Code === 'ConditionalCheckFailed') result.superseded++;
            else if (RETRYABLE.has(reason.Code ?? 'None')) retry.push(pending[i]!);
            else throw error;
          });
        } else if (isThrottling(error)) {
          retry.push(...pending);
        } else {
          throw error;
        }
        if (retry.length > 0 && attempt >= this.#maxAttempts) throw error;
        pending = retry;
        if (pending.length > 0) await sleep(Math.min(5000, 50 * 2 ** attempt) * (0.5 + Math.random() / 2));
      }
    }
    return result;
  }

  #operation(item: SnapshotItem): TransactWriteItem {
    const key = { pk: { S: `${this.#cluster}#${shardOf(item.state.key, this.#shards)}` }, sk: { S: item.state.key } };
    const condition = { ConditionExpression: 'attribute_not_exists(sk) OR v <= :v', ExpressionAttributeValues: { ':v': { N: String(item.version) } } };
    if (item.state.ended) return { Delete: { TableName: this.#table, Key: key, ...condition } };
    const encoded = encodeSessionState(item.state);
    const fields: Record<string, AttributeValue> = { ...key, v: { N: String(item.version) }, s: { S: encoded } };
    if (item.expiresAt !== undefined) fields.ttl = { N: String(item.expiresAt) };
    return { Put: { TableName: this.#table, Item: fields, ...condition } };
  }

  #metaKey(): string {
    return `${this.#cluster}#meta`;
  }
}

function isThrottling(error: unknown): boolean {
  const name = (error as Error).name;
  return name === 'ProvisionedThroughputExceededException' || name === 'ThrottlingException' || name === 'RequestLimitExceeded' || name === 'InternalServerError';
}

/**
 * Creates the snapshot table (on-demand billing, `pk`/`sk` keys) and turns on TTL on `ttl`; waits
 * until it is active. An existing table is left as it is. For local use: infra creates it in the cloud.
 */
export async function createSnapshotTable(client: DynamoDBClient, table: string): Promise<'created' | 'exists'> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (error) {
    if ((error as Error).name === 'ResourceInUseException') return 'exists';
    throw error;
  }
  for (let i = 0; i < 600; i++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
    if (Table?.TableStatus === 'ACTIVE') break;
    await sleep(100);
  }
  await client.send(new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true } }));
  return 'created';
}
