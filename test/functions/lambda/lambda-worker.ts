// Owns: a Lambda execution environment in a child process for handler tests (SIGSTOP = freeze, SIGCONT = thaw, SIGTERM = recycle).
// Configured by environment variables like the real function; NATS settings come in SESSREP_TEST_NATS_SETTINGS.
// Protocol over the IPC channel: {id, event} in, {id, result, stats} out; {id} asks for the counters; {id, stall: true} stalls the log follower as an expired pull would.
import type { LambdaEvent } from 'hono/aws-lambda';
import { jetStreamLogFor } from '../../../lib/log/jetstream.ts';
import type { LogFollower, LogMessage, ReplicationLog } from '../../../lib/log/replication-log.ts';
import { readConfig } from '../../../functions/shared/config.ts';
import { createDemoLambdaHandler } from '../../../functions/lambda/runtime.ts';

/** The JetStream log, except that `stall()` stops the running follower without telling anyone. */
class StallableLog implements ReplicationLog {
  #follower?: LogFollower;
  constructor(private readonly inner: ReplicationLog) {}
  get name() {
    return this.inner.name;
  }
  ensure() {
    return this.inner.ensure();
  }
  append(data: Uint8Array, msgId: string) {
    return this.inner.append(data, msgId);
  }
  bounds() {
    return this.inner.bounds();
  }
  async follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower> {
    this.#follower = await this.inner.follow(fromSeq, onMessage);
    return this.#follower;
  }
  stall() {
    this.#follower?.stop();
  }
}

const config = readConfig('lambda', process.env);
const settings = process.env.SESSREP_TEST_NATS_SETTINGS;
let log: StallableLog | undefined;
const handler = createDemoLambdaHandler(config, {
  ...(settings !== undefined ? { nats: { load: async () => settings } } : {}),
  log: (connection) => (log = new StallableLog(jetStreamLogFor(connection, config.cluster))),
  leaveOnSigterm: true,
});
await handler.start();
process.on('message', (raw) => {
  const message = raw as { id: number; event?: LambdaEvent; stall?: boolean };
  const answer = async () => {
    if (message.stall) log!.stall();
    if (message.event) {
      const result = await handler(message.event);
      return { id: message.id, result, stats: handler.stats };
    }
    return { id: message.id, stats: handler.stats };
  };
  answer().then(
    (reply) => process.send!(reply),
    (error: unknown) => process.send!({ id: message.id, error: String(error) }),
  );
});
// The runner's channel closing means the test is gone: do not outlive it.
process.once('disconnect', () => process.exit(0));
process.send!({ ready: true, node: handler.node });
