// Owns: the set-up most process-level test files share, as vitest hooks: a server (nats-server, the SNS/SQS endpoint)
// for the whole file, and the processes a test starts, stopped after it whether it passed or not.
import { afterAll, afterEach, beforeAll } from 'vitest';
import { type NatsServerHandle, type NatsServerOptions, startNatsServer } from '../../functions/launch/index.ts';

/** The nats-server of a test file (see `natsServerPerFile`). */
export interface FileNatsServer {
  /** The running server; throws when read before the file's `beforeAll` started it, or when it was not started. */
  readonly server: NatsServerHandle;
  /** Its client URL. */
  readonly url: string;
}

/**
 * Something a whole test file shares (a server, an emulator): started before its first test and stopped after its
 * last. With `when` false (the file's tests need a binary the machine lacks, such as HAProxy) nothing starts. The
 * accessor throws when read before the file's `beforeAll` started it, or when it was not started.
 */
export function startedPerFile<T extends { stop(): Promise<unknown> }>(
  what: string,
  start: () => Promise<T>,
  when = true,
): () => T {
  let started: T | undefined;
  beforeAll(async () => {
    if (when) started = await start();
  });
  afterAll(async () => {
    await started?.stop();
  });
  return () => {
    if (!started) throw new Error(`the ${what} of this file is not running (read it inside a test or hook)`);
    return started;
  };
}

/** One nats-server for the whole test file (see `startedPerFile`). */
export function natsServerPerFile(options: NatsServerOptions = {}, when = true): FileNatsServer {
  const current = startedPerFile('nats-server', () => startNatsServer(options), when);
  return {
    get server(): NatsServerHandle {
      return current();
    },
    get url(): string {
      return current().url;
    },
  };
}

/** A list whose entries (node processes, load balancers) are stopped after each test, passed or failed. */
export function stoppedAfterEach<T extends { stop(): Promise<unknown> }>(): T[] {
  const started: T[] = [];
  afterEach(async () => {
    await Promise.allSettled(started.splice(0).map((entry) => entry.stop()));
  });
  return started;
}

/**
 * A list of clean-up functions (stop a server, close a forwarder, resume and stop a node) run after each test,
 * passed or failed, last added first; one that throws does not keep the others from running.
 */
export function cleanupsAfterEach(): Array<() => unknown> {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  });
  return cleanups;
}
