/**
 * `DynamoSnapshotStore`: session snapshots in one DynamoDB table. Partition key `pk` is
 * `<cluster>#<shard>` (a cluster is spread over `shards` partitions so writes do not pile onto one
 * partition and a load can Query them in parallel), sort key `sk` is the session key. An item holds
 * the encoded state `s`, its version `v` (the log sequence it reflects) and `ttl` (epoch seconds),
 * so DynamoDB deletes expired sessions by itself; an ended session is a tombstone (`ended`, `v`,
 * `ttl`, no `s`) that keeps older and live writes out until its `ttl`. The client is injected, so
 * any endpoint works: AWS, LocalStack or DynamoDB Local.
 *
 * Limits: items are sized before they are sent, and one over DynamoDB's 400 KB is rejected
 * (reported, not retried); transactions stay within 100 items and 4 MB, and one that DynamoDB still
 * refuses as too large is split in halves.
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
import { SnapshotWriteError } from '../errors.ts';
import { retrying, sleep } from '../retry.ts';
import type { SessionState } from '../session/state.ts';
import type {
  LoadProgress,
  SnapshotItem,
  SnapshotRejection,
  SnapshotStore,
  SnapshotWriteResult,
} from './snapshot-store.ts';

/** DynamoDB's item size limit; items are sized against it before they are sent. */
export const DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024;
/** DynamoDB's limit for one transaction, all items together (4 MB), less room for the request itself. */
const TRANSACTION_LIMIT_BYTES = 4_000_000;

/** Settings of the DynamoDB store. */
export interface DynamoSnapshotStoreOptions {
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly cluster: string;
  /**
   * Partitions per cluster. Every node of a cluster must use the same number.
   * @default 16
   */
  readonly shards?: number;
  /**
   * Items per transaction (DynamoDB allows 100; fewer when they would exceed 4 MB together).
   * @default 25
   */
  readonly batchSize?: number;
  /**
   * Transactions in flight.
   * @default 8
   */
  readonly concurrency?: number;
  /**
   * Attempts per transaction on throttling or conflicts, with exponential backoff.
   * @default 8
   */
  readonly maxAttempts?: number;
}

const RETRYABLE = new Set([
  'ThrottlingError',
  'TransactionConflict',
  'ProvisionedThroughputExceeded',
  'None',
  'RequestLimitExceeded',
]);

/** The shard of a session key: FNV-1a of its characters. */
export function shardOf(key: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % shards;
}

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
    const rejected: SnapshotRejection[] = [];
    const unwritten: string[] = [];
    let failure: unknown;
    const queue: Operation[][] = [];
    let batch: Operation[] = [];
    let batchBytes = 0;
    for (const item of items) {
      const operation = this.#operation(item);
      if (operation.bytes > DYNAMODB_ITEM_LIMIT_BYTES) {
        rejected.push({
          key: item.state.key,
          reason: `item is about ${operation.bytes} bytes, over DynamoDB's item limit of 400 KB (${DYNAMODB_ITEM_LIMIT_BYTES} bytes)`,
        });
        continue;
      }
      if (
        batch.length > 0 &&
        (batch.length >= this.#batchSize || batchBytes + operation.bytes > TRANSACTION_LIMIT_BYTES)
      ) {
        queue.push(batch);
        batch = [];
        batchBytes = 0;
      }
      batch.push(operation);
      batchBytes += operation.bytes;
    }
    if (batch.length > 0) queue.push(batch);
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const { error, pending } = await this.#writeBatch(next, result, rejected);
        if (error === undefined) continue;
        if (isTooLarge(error) && pending.length > 1) {
          // DynamoDB found the transaction too large after all: try the halves.
          const half = Math.ceil(pending.length / 2);
          queue.push(pending.slice(0, half), pending.slice(half));
        } else if (isTooLarge(error)) {
          rejected.push({ key: pending[0]!.key, reason: (error as Error).message });
        } else {
          failure = error;
          unwritten.push(...pending.map((operation) => operation.key));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, queue.length) }, worker));
    if (rejected.length > 0) result.rejected = rejected;
    if (unwritten.length > 0) {
      throw new SnapshotWriteError(
        `${unwritten.length} of ${items.length} snapshot items not written: ${(failure as Error).message}`,
        result,
        unwritten,
        { cause: failure },
      );
    }
    return result;
  }

  async writeCheckpoint(sequence: number): Promise<void> {
    try {
      await this.#client.send(
        new PutItemCommand({
          TableName: this.#table,
          Item: {
            pk: { S: this.#metaKey() },
            sk: { S: 'checkpoint' },
            seq: { N: String(sequence) },
            at: { N: String(Date.now()) },
          },
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
      new GetItemCommand({
        TableName: this.#table,
        Key: { pk: { S: this.#metaKey() }, sk: { S: 'checkpoint' } },
        ConsistentRead: true,
      }),
    );
    return Item?.seq?.N !== undefined ? Number(Item.seq.N) : undefined;
  }

  async load(
    onPage: (states: SessionState[]) => void,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<number | undefined> {
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
            // A tombstone (`ended`, no `s`) only keeps the end: nothing to load.
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

  /**
   * One transaction, retried with backoff for the items DynamoDB did not get to (throttling,
   * conflicts); items it refuses one by one (too large) go to `rejected`, stale ones count as
   * superseded. Resolves with the error that ended the attempts and the items still unwritten.
   */
  async #writeBatch(
    batch: Operation[],
    result: SnapshotWriteResult,
    rejected: SnapshotRejection[],
  ): Promise<{ error?: unknown; pending: Operation[] }> {
    let pending = batch;
    let retryable = false;
    try {
      await retrying(
        async () => {
          try {
            await this.#client.send(
              new TransactWriteItemsCommand({ TransactItems: pending.map((operation) => operation.write) }),
            );
            result.written += pending.length;
            pending = [];
          } catch (error) {
            retryable = isThrottling(error);
            const reasons = (error as { CancellationReasons?: { Code?: string; Message?: string }[] })
              .CancellationReasons;
            if ((error as Error).name !== 'TransactionCanceledException' || !reasons) throw error;
            const codes = reasons.map((reason) => reason.Code ?? 'None');
            if (
              codes.some(
                (code) => code !== 'ConditionalCheckFailed' && code !== 'ValidationError' && !RETRYABLE.has(code),
              )
            )
              throw error;
            const retry: Operation[] = [];
            reasons.forEach((reason, i) => {
              const operation = pending[i]!;
              if (reason.Code === 'ConditionalCheckFailed') result.superseded++;
              else if (reason.Code === 'ValidationError')
                rejected.push({ key: operation.key, reason: reason.Message ?? 'refused by DynamoDB' });
              else retry.push(operation);
            });
            pending = retry;
            retryable = true;
            if (pending.length > 0) throw error;
          }
        },
        { isRetryable: () => retryable, maxAttempts: this.#maxAttempts },
      );
      return { pending: [] };
    } catch (error) {
      return { error, pending };
    }
  }

  #operation(item: SnapshotItem): Operation {
    const key = { pk: { S: `${this.#cluster}#${shardOf(item.state.key, this.#shards)}` }, sk: { S: item.state.key } };
    const fields: Record<string, AttributeValue> = { ...key, v: { N: String(item.version) } };
    if (item.state.ended) fields.ended = { S: item.state.ended.reason };
    else fields.s = { S: encodeSessionState(item.state) };
    if (item.expiresAt !== undefined) fields.ttl = { N: String(item.expiresAt) };
    // An end replaces any state not newer than it; a live state never replaces an end.
    const ConditionExpression = item.state.ended
      ? 'attribute_not_exists(sk) OR v <= :v'
      : 'attribute_not_exists(sk) OR (v <= :v AND attribute_not_exists(ended))';
    return {
      key: item.state.key,
      bytes: itemBytes(fields),
      write: {
        Put: {
          TableName: this.#table,
          Item: fields,
          ConditionExpression,
          ExpressionAttributeValues: { ':v': { N: String(item.version) } },
        },
      },
    };
  }

  #metaKey(): string {
    return `${this.#cluster}#meta`;
  }
}

/** One item's write, its key and its size as DynamoDB counts it. */
interface Operation {
  readonly key: string;
  readonly bytes: number;
  readonly write: TransactWriteItem;
}

const utf8 = new TextEncoder();

/** An item's size as DynamoDB counts it: attribute names plus values (strings in UTF-8, numbers at most 21). */
function itemBytes(fields: Record<string, AttributeValue>): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(fields)) {
    bytes += utf8.encode(name).byteLength;
    if (value.S !== undefined) bytes += utf8.encode(value.S).byteLength;
    else if (value.N !== undefined) bytes += 21;
  }
  return bytes;
}

/** DynamoDB refused the request as over its size limits (transaction or item): retrying the same will not help. */
function isTooLarge(error: unknown): boolean {
  return (error as Error).name === 'ValidationException' && /size|large|exceed/i.test((error as Error).message);
}

function isThrottling(error: unknown): boolean {
  const name = (error as Error).name;
  return (
    name === 'ProvisionedThroughputExceededException' ||
    name === 'ThrottlingException' ||
    name === 'RequestLimitExceeded' ||
    name === 'InternalServerError'
  );
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
  await client.send(
    new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true } }),
  );
  return 'created';
}
