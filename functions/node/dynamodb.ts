/**
 * The command's DynamoDB support (the snapshot store, table creation, a client for the configured
 * endpoint), loaded only when a setting asks for DynamoDB: `@aws-sdk/client-dynamodb` is an optional
 * peer of the package and stays outside the built command, so a missing SDK is a one-line error naming it.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { loadOptionalPeer } from 'session-replication';
import type { createSnapshotTable, DynamoSnapshotStore } from 'session-replication/dynamodb';
import type { ServeConfig } from './config.ts';

/** What {@link loadDynamoDB} resolves with. */
export interface DynamoDBSupport {
  /** A client for the configured endpoint; local endpoints get placeholder credentials when none are set. */
  createClient(config: Pick<ServeConfig, 'dynamodbEndpoint' | 'awsRegion'>): DynamoDBClient;
  /** Creates the snapshot table (see `session-replication/dynamodb`). */
  readonly createSnapshotTable: typeof createSnapshotTable;
  /** The snapshot store (see `session-replication/dynamodb`). */
  readonly DynamoSnapshotStore: typeof DynamoSnapshotStore;
}

/** Loads the AWS SDK client and the DynamoDB entry; without the SDK it rejects with MissingPeerDependencyError naming it. */
export async function loadDynamoDB(): Promise<DynamoDBSupport> {
  const [sdk, store] = await loadOptionalPeer(
    'DynamoDB snapshots (--dynamodb-table)',
    ['@aws-sdk/client-dynamodb'],
    () => Promise.all([import('@aws-sdk/client-dynamodb'), import('session-replication/dynamodb')]),
  );
  return {
    createClient(config) {
      const local = config.dynamodbEndpoint !== undefined && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE;
      return new sdk.DynamoDBClient({
        region: config.awsRegion,
        maxAttempts: 3,
        requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000 },
        ...(config.dynamodbEndpoint !== undefined ? { endpoint: config.dynamodbEndpoint } : {}),
        ...(local ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
      });
    },
    createSnapshotTable: store.createSnapshotTable,
    DynamoSnapshotStore: store.DynamoSnapshotStore,
  };
}
