// Owns: helpers for snapshot-store tests: DynamoDB clients for the shared endpoint, throwaway tables,
// session states built directly (no cluster needed), and the canonical form that compares them.
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { encodeValue } from '../../lib/session/values.ts';
import type { Stamp } from '../../lib/session/clock.ts';
import { createState, type SessionState } from '../../lib/session/state.ts';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import { uniqueCluster } from './names.ts';

/**
 * A client for `endpoint` (inject("ddbEndpoint")): placeholder credentials for local endpoints
 * (DynamoDB Local, LocalStack) unless real ones are configured, as the node server does.
 */
export function ddbClient(
  endpoint: string,
  options: { maxAttempts?: number; connectionTimeout?: number } = {},
): DynamoDBClient {
  const real = Boolean(process.env.AWS_ACCESS_KEY_ID || process.env.AWS_PROFILE);
  return new DynamoDBClient({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: { connectionTimeout: options.connectionTimeout ?? 2000, requestTimeout: 15_000 },
    ...(real ? {} : { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
}

/** A fresh snapshot table on `client`'s endpoint; `drop()` deletes it (ignoring a table already gone). */
export async function throwawayTable(
  client: DynamoDBClient,
  prefix = 'sessrep-test',
): Promise<{ table: string; drop(): Promise<void> }> {
  const table = uniqueCluster(prefix);
  await createSnapshotTable(client, table);
  return {
    table,
    async drop() {
      await client.send(new DeleteTableCommand({ TableName: table })).catch(() => undefined);
    },
  };
}

let counter = 0;
/** A stamp from a fake clock: strictly increasing within this process. */
export function stamp(node = 'w'): Stamp {
  return [Date.now(), ++counter, node];
}

/** A session state with `attributes` encoded as the codec does (undefined-valued entries become removals only via `removed`). */
export function sessionState(
  key: string,
  attributes: Record<string, unknown> = {},
  {
    removed = [],
    maxInactiveSeconds = 1800,
    node = 'w',
    ended,
  }: { removed?: string[]; maxInactiveSeconds?: number; node?: string; ended?: 'invalidated' | 'expired' } = {},
): SessionState {
  const state = createState(key, stamp(node), maxInactiveSeconds);
  for (const [name, value] of Object.entries(attributes)) {
    const { text, bytes } = encodeValue(name, value);
    state.attributes.set(name, { stamp: stamp(node), value: text, bytes });
  }
  for (const name of removed) state.attributes.set(name, { stamp: stamp(node), bytes: 0 });
  if (ended) {
    state.attributes.clear();
    state.ended = { stamp: stamp(node), reason: ended };
  }
  return state;
}

/** A session key like the library's (URL-safe, unique). */
export function sessionKey(i?: number): string {
  return `k${i ?? ''}-${crypto.randomUUID().replaceAll('-', '')}`.slice(0, 64);
}

/**
 * A plain, comparable form of a session state: attributes sorted by name with their stamps and
 * encoded values (and sizes, with `bytes`). With `access: false` the last-access fields are left out
 * (reads replicate them only as rate-limited touches, so replicas may legitimately differ there).
 */
export function canonical(state: SessionState | undefined, { access = true, bytes = false } = {}): unknown {
  if (!state) return undefined;
  return {
    key: state.key,
    createdAt: state.createdAt,
    ...(access ? { lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy } : {}),
    maxInactive: [state.maxInactive.seconds, [...state.maxInactive.stamp]],
    attributes: [...state.attributes.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, r]) => [name, [...r.stamp], r.value ?? null, ...(bytes ? [r.bytes] : [])]),
    ended: state.ended ? [[...state.ended.stamp], state.ended.reason] : null,
  };
}

/** Fisher-Yates shuffle (a copy). */
export function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
