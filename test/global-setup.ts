// Owns: the one shared nats-server (JetStream + WebSocket) for a whole vitest run.
import type { TestProject } from "vitest/node";
import { startNatsServer } from "./kit/nats-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** nats://127.0.0.1:PORT of the shared server. */
    natsUrl: string;
    /** ws://127.0.0.1:PORT of the shared server. */
    natsWsUrl: string;
  }
}

/** Starts the shared server, provides its URLs to tests (inject("natsUrl")), and stops it on teardown. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startNatsServer({ jetstream: true, websocket: true });
  project.provide("natsUrl", server.url);
  project.provide("natsWsUrl", server.wsUrl!);
  return () => server.stop();
}
