/**
 * The servers a local cluster starts when none is given: `nats-server` (JetStream and a WebSocket
 * listener on random loopback ports, configuration and store in the cluster's directory) and DynamoDB
 * Local (the AWS jar from the amplify-dynamodb-simulator devDependency, in memory unless a data
 * directory keeps it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import { findExecutable, waitUntil, type Child, type ProcessGroup } from './local-processes.ts';

/** The repository root (functions/node is two levels down). */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A free TCP port on `host` a moment ago. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether `port` can be bound on `host` now. */
export async function portIsFree(port: number, host: string): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  }
}

/** A nats-server started for the cluster. */
export interface LocalNats {
  readonly url: string;
  readonly wsUrl?: string;
  readonly child: Child;
}

/**
 * Starts `nats-server` with JetStream (store in `dir/jetstream`) and a plain WebSocket listener, both
 * on random loopback ports, and resolves once its ports file names them.
 */
export async function startNats(group: ProcessGroup, binary: string, dir: string, signal: AbortSignal): Promise<LocalNats> {
  const config = join(dir, 'nats-server.conf');
  writeFileSync(
    config,
    [
      'server_name: sessrep_local',
      'listen: "127.0.0.1:-1"',
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'jetstream'))} }`,
      'websocket { listen: "127.0.0.1:-1", no_tls: true }',
      '',
    ].join('\n'),
  );
  const child = group.spawn({ name: 'nats-server', command: binary, args: ['-c', config, '--ports_file_dir', dir], logFile: join(dir, 'nats-server.log') });
  const portsFile = join(dir, `nats-server_${child.pid}.ports`);
  const ports = await waitUntil(
    'nats-server to report its ports',
    () => {
      if (!existsSync(portsFile)) return undefined;
      const parsed = JSON.parse(readFileSync(portsFile, 'utf8')) as { nats?: string[]; websocket?: string[] };
      return parsed.nats?.[0] ? parsed : undefined;
    },
    { timeoutMs: 20_000, signal, child, intervalMs: 50 },
  );
  return { url: ports.nats![0]!, ...(ports.websocket?.[0] ? { wsUrl: ports.websocket[0] } : {}), child };
}

/** Where the DynamoDB Local jar is: env DDB_LOCAL_DIR, else the amplify-dynamodb-simulator devDependency. */
export function dynamoDbLocalDir(): string | undefined {
  const dir = process.env.DDB_LOCAL_DIR ?? join(REPO_ROOT, 'node_modules/amplify-dynamodb-simulator/emulator');
  return existsSync(join(dir, 'DynamoDBLocal.jar')) ? dir : undefined;
}

/** A DynamoDB client for a local endpoint (any credentials do). */
export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 1000, requestTimeout: 5000 },
  });
}

/** A DynamoDB Local started for the cluster. */
export interface LocalDynamo {
  readonly endpoint: string;
  readonly child: Child;
}

/**
 * Starts DynamoDB Local on a free port with a small, fast-starting JVM, in memory (or in
 * `dir/dynamodb` when `persist`), and resolves once it answers ListTables. It has no host flag and
 * binds every interface.
 */
export async function startDynamo(group: ProcessGroup, java: string, jarDir: string, dir: string, persist: boolean, signal: AbortSignal): Promise<LocalDynamo> {
  const port = await freePort();
  const storage = persist ? ['-dbPath', join(dir, 'dynamodb'), '-sharedDb'] : ['-inMemory'];
  if (persist) mkdirSync(join(dir, 'dynamodb'), { recursive: true });
  const child = group.spawn({
    name: 'dynamodb-local',
    command: java,
    args: [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      // Names the cluster directory on the command line, so the process can be found by it.
      `-Dsessrep.dir=${dir}`,
      `-Djava.library.path=${join(jarDir, 'DynamoDBLocal_lib')}`,
      '-jar',
      join(jarDir, 'DynamoDBLocal.jar'),
      ...storage,
      '-disableTelemetry',
      '-port',
      String(port),
    ],
    // Anything the JVM writes next to itself lands in the cluster's directory.
    cwd: dir,
    logFile: join(dir, 'dynamodb-local.log'),
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  try {
    await waitUntil('DynamoDB Local to answer', async () => ((await client.send(new ListTablesCommand({}))).TableNames ? true : undefined), {
      timeoutMs: 90_000,
      signal,
      child,
      intervalMs: 200,
    });
  } finally {
    client.destroy();
  }
  return { endpoint, child };
}

/** Creates the snapshot table if it does not exist yet. */
export async function ensureTable(endpoint: string, table: string): Promise<'created' | 'exists'> {
  const client = localDynamoClient(endpoint);
  try {
    return await createSnapshotTable(client, table);
  } finally {
    client.destroy();
  }
}

/** `java` on PATH, or undefined. */
export function findJava(): string | undefined {
  return findExecutable('java');
}
