// Owns: the set-up most process-level test files share, as vitest hooks: one nats-server for the file, and the
// processes a test starts, stopped after it whether it passed or not.
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
 * One nats-server for the whole test file: started before its first test and stopped after its last. With `when`
 * false (the file's tests need a binary the machine lacks, such as HAProxy) it starts nothing.
 */
export function natsServerPerFile(options: NatsServerOptions = {}, when = true): FileNatsServer {
  let server: NatsServerHandle | undefined;
  beforeAll(async () => {
    if (when) server = await startNatsServer(options);
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get server(): NatsServerHandle {
      if (!server) throw new Error('the nats-server of this file is not running (read it inside a test or hook)');
      return server;
    },
    get url(): string {
      return this.server.url;
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
