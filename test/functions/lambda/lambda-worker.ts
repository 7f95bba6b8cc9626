// Owns: a Lambda execution environment in a child process for handler tests (SIGSTOP = freeze, SIGCONT = thaw, SIGTERM = recycle).
// Configured by environment variables like the real function; NATS settings come in SESSREP_TEST_NATS_SETTINGS.
// Protocol over the IPC channel: {id, event} in, {id, result, stats} out; {id} asks for the counters; {id, stall: true} stalls the log follower as an expired pull would.
import { createLambdaRuntime, lambdaConfigFromEnv } from "../../../functions/lambda/runtime.ts";
import type { LambdaEvent } from "hono/aws-lambda";

const settings = process.env.SESSREP_TEST_NATS_SETTINGS;
const runtime = createLambdaRuntime(lambdaConfigFromEnv(), {
  ...(settings !== undefined ? { fetchNatsSettings: async () => settings } : {}),
  handleSigterm: true,
});
await runtime.start();
process.on("message", (raw) => {
  const message = raw as { id: number; event?: LambdaEvent; stall?: boolean };
  const answer = async () => {
    if (message.stall) runtime.log!.stallForTests();
    if (message.event) {
      const result = await runtime.handler(message.event);
      return { id: message.id, result, stats: runtime.stats };
    }
    return { id: message.id, stats: runtime.stats };
  };
  answer().then(
    (reply) => process.send!(reply),
    (error: unknown) => process.send!({ id: message.id, error: String(error) }),
  );
});
// The runner's channel closing means the test is gone: do not outlive it.
process.once("disconnect", () => process.exit(0));
process.send!({ ready: true, node: runtime.node });
