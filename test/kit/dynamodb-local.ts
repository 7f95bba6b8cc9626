// Owns: starting throwaway DynamoDB Local servers (the real AWS jar on a JVM, in memory, random loopback port).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./node-process.ts";
import { freePort } from "./ports.ts";
import { spawnTracked, tail, type TrackedProcess } from "./processes.ts";
import { waitFor } from "./wait.ts";

/** Where the DynamoDB Local jar lives: env DDB_LOCAL_DIR, else the amplify-dynamodb-simulator devDependency. */
export const DYNAMODB_LOCAL_DIR = process.env.DDB_LOCAL_DIR ?? join(REPO_ROOT, "node_modules/amplify-dynamodb-simulator/emulator");

/** Options for {@link startDynamoDbLocal}. */
export interface DynamoDbLocalOptions {
  /** Port (default: a free one). DynamoDB Local has no host flag: it binds every interface. */
  port?: number;
  /** How long to wait for the first ListTables answer (default 60000 ms: the JVM is slow on a busy box). */
  timeoutMs?: number;
}

/** A running DynamoDB Local owned by a test. */
export interface DynamoDbLocalHandle {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  pid: number;
  /** The tracked JVM process. */
  process: TrackedProcess;
  /** SIGTERM, SIGKILL after 3 s; resolves once exited. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGTERM), e.g. SIGSTOP to make it unreachable for a while. */
  kill(signal?: NodeJS.Signals): boolean;
}

/** Credentials and region DynamoDB Local accepts (any non-empty values). */
export const LOCAL_AWS = { region: "us-east-1", credentials: { accessKeyId: "local", secretAccessKey: "local" } } as const;

/**
 * Starts DynamoDB Local in memory on a free port with a small, fast-starting JVM
 * (-Xmx256m, serial GC, C1 only: ~1.5 s to the first answer and ~370 MB instead of ~960 MB)
 * and resolves once ListTables answers.
 */
export async function startDynamoDbLocal(opts: DynamoDbLocalOptions = {}): Promise<DynamoDbLocalHandle> {
  const dir = DYNAMODB_LOCAL_DIR;
  if (!existsSync(join(dir, "DynamoDBLocal.jar"))) {
    throw new Error(`DynamoDB Local not found in ${dir}: run npm ci (devDependency amplify-dynamodb-simulator) or set DDB_LOCAL_DIR`);
  }
  const port = opts.port ?? (await freePort());
  const proc = spawnTracked(
    "java",
    [
      "-Xmx256m",
      "-XX:+UseSerialGC",
      "-XX:TieredStopAtLevel=1",
      `-Djava.library.path=${join(dir, "DynamoDBLocal_lib")}`,
      "-jar",
      "DynamoDBLocal.jar",
      "-inMemory",
      "-disableTelemetry",
      "-port",
      String(port),
    ],
    { cwd: dir, name: "dynamodb-local", maxOutputChars: 64 * 1024 },
  );
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = () => proc.stop(3000);
  const earlyExit = proc.exited.then((x): never => {
    throw new Error(`DynamoDB Local exited early (code ${x.code}, signal ${x.signal})`);
  });
  earlyExit.catch(() => {}); // only meaningful while racing below
  // Loaded here so importing the kit does not load the AWS SDK.
  const { DynamoDBClient, ListTablesCommand } = await import("@aws-sdk/client-dynamodb");
  const client = new DynamoDBClient({ endpoint, ...LOCAL_AWS, maxAttempts: 1, requestHandler: { connectionTimeout: 1000, requestTimeout: 10_000 } });
  try {
    await Promise.race([
      waitFor("DynamoDB Local to answer ListTables", async () => (await client.send(new ListTablesCommand({}))).TableNames !== undefined, {
        timeoutMs: opts.timeoutMs ?? 60000,
        intervalMs: 50,
      }),
      earlyExit,
    ]);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\nDynamoDB Local output:\n${tail(proc.output())}`);
  } finally {
    client.destroy();
  }
  return { endpoint, port, pid: proc.pid, process: proc, stop, kill: (signal = "SIGTERM") => proc.kill(signal) };
}
