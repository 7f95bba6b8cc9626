/**
 * Starting DynamoDB Local (the real AWS jar from the amplify-dynamodb-simulator devDependency) on a
 * free port with a small, fast-starting JVM: -Xmx256m, serial GC and C1 only give ~1.5 s to the first
 * answer and ~370 MB instead of ~960 MB. It has no host flag and binds every interface.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { freePort } from './ports.ts';
import { defaultGroup, findExecutable, type LaunchedServer, type LaunchOptions } from './processes.ts';
import { REPO_ROOT } from './repo.ts';
import { tail, waitFor } from './wait.ts';

/** Region and credentials DynamoDB Local accepts (any non-empty values do). */
export const LOCAL_AWS = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
} as const;

/** Where the jar is: env DDB_LOCAL_DIR, else the amplify-dynamodb-simulator devDependency; undefined when absent. */
export function dynamoDbLocalDir(): string | undefined {
  const dir = process.env.DDB_LOCAL_DIR ?? join(REPO_ROOT, 'node_modules/amplify-dynamodb-simulator/emulator');
  return existsSync(join(dir, 'DynamoDBLocal.jar')) ? dir : undefined;
}

/** Options of {@link startDynamoDbLocal}. */
export interface DynamoDbLocalOptions extends LaunchOptions {
  /** @default a free port */
  port?: number;
  /** Keep the tables in `dataDir/dynamodb` instead of in memory. */
  dataDir?: string;
  /** The JVM's working directory (anything it writes next to itself lands there). @default the jar's directory */
  cwd?: string;
  /** Extra JVM system properties, e.g. a marker naming the owner on the command line. */
  properties?: Record<string, string>;
  /** How long to wait for the first ListTables answer (the JVM is slow on a busy machine). @default 60000 */
  timeoutMs?: number;
}

/** A running DynamoDB Local. */
export interface DynamoDbLocalHandle extends LaunchedServer {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** SIGTERM, SIGKILL after 3 s; resolves once exited. Idempotent. */
  stop(): Promise<void>;
}

/** A DynamoDB client for a local endpoint: placeholder credentials, one attempt, short timeouts. */
export async function localDynamoClient(endpoint: string): Promise<DynamoDBClient> {
  // Loaded here so that importing the launcher does not load the AWS SDK.
  const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
  return new DynamoDBClient({
    endpoint,
    ...LOCAL_AWS,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 1000, requestTimeout: 10_000 },
  });
}

/** Starts DynamoDB Local and resolves once ListTables answers. */
export async function startDynamoDbLocal(options: DynamoDbLocalOptions = {}): Promise<DynamoDbLocalHandle> {
  const jarDir = dynamoDbLocalDir();
  if (!jarDir)
    throw new Error(
      'DynamoDB Local not found: run npm ci (devDependency amplify-dynamodb-simulator) or set DDB_LOCAL_DIR',
    );
  const java = findExecutable('java');
  if (!java) throw new Error('java not found on PATH: apt-get install openjdk-17-jre-headless');
  const port = options.port ?? (await freePort());
  let storage = ['-inMemory'];
  if (options.dataDir !== undefined) {
    mkdirSync(join(options.dataDir, 'dynamodb'), { recursive: true });
    storage = ['-dbPath', join(options.dataDir, 'dynamodb'), '-sharedDb'];
  }
  const group = options.group ?? defaultGroup();
  const proc = group.spawn(
    java,
    [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      ...Object.entries(options.properties ?? {}).map(([name, value]) => `-D${name}=${value}`),
      `-Djava.library.path=${join(jarDir, 'DynamoDBLocal_lib')}`,
      '-jar',
      join(jarDir, 'DynamoDBLocal.jar'),
      ...storage,
      '-disableTelemetry',
      '-port',
      String(port),
    ],
    {
      cwd: options.cwd ?? jarDir,
      name: 'dynamodb-local',
      maxOutputChars: 64 * 1024,
      ...(options.logFile ? { logFile: options.logFile } : {}),
    },
  );
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => void (await proc.stop(3000));
  const { ListTablesCommand } = await import('@aws-sdk/client-dynamodb');
  const client = await localDynamoClient(endpoint);
  try {
    await waitFor(
      'DynamoDB Local to answer ListTables',
      async () => (await client.send(new ListTablesCommand({}))).TableNames !== undefined,
      {
        timeoutMs: options.timeoutMs ?? 60_000,
        intervalMs: 50,
        process: proc,
        ...(options.signal ? { signal: options.signal } : {}),
      },
    );
  } catch (error) {
    await stop();
    if ((error as Error).name === 'AbortError') throw error;
    throw new Error(`${(error as Error).message.split('\n')[0]}\nDynamoDB Local output:\n${tail(proc.output())}`);
  } finally {
    client.destroy();
  }
  return { endpoint, port, pid: proc.pid, process: proc, stop, kill: (signal = 'SIGTERM') => proc.kill(signal) };
}
