// Owns: an app without the optional peers: the core works, and each subpath that needs NATS or the AWS SDK fails with
// MissingPeerDependencyError naming the package to install (plain node, from the packed tarball).
import { beforeAll, describe, expect, it } from "vitest";
import { createApp, type InstalledApp } from "../kit/package.ts";

let app: InstalledApp;

beforeAll(async () => {
  app = await createApp("test/package/fixtures/without-peers", { dependencies: ["hono"] });
}, 300_000);

/** Imports `entries` in the app with plain node; resolves with what each import did. */
async function probe(...entries: string[]): Promise<Record<string, unknown>> {
  const result = await app.run(process.execPath, ["probe.mjs", ...entries]);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe("an app that installed session-replication and hono only", () => {
  it("loads the core entry", { timeout: 60_000 }, async () => {
    expect(await probe()).toEqual({ core: "function" });
  });

  it("gets MissingPeerDependencyError naming @nats-io/nats-core from session-replication/nats", { timeout: 60_000 }, async () => {
    const { "session-replication/nats": nats } = await probe("session-replication/nats");
    expect(nats).toEqual({
      name: "MissingPeerDependencyError",
      code: "MISSING_PEER_DEPENDENCY",
      packageName: "@nats-io/nats-core",
      neededBy: "session-replication/nats",
      message: 'session-replication/nats needs the package "@nats-io/nats-core", which is not installed: npm install @nats-io/nats-core',
      isLibraryError: true,
    });
  });

  it("names the missing package of every other subpath that needs one", { timeout: 60_000 }, async () => {
    const results = await probe("session-replication/jetstream", "session-replication/dynamodb", "session-replication/sns-sqs");
    expect(results["session-replication/jetstream"]).toMatchObject({ name: "MissingPeerDependencyError", packageName: "@nats-io/jetstream", isLibraryError: true });
    expect(results["session-replication/dynamodb"]).toMatchObject({ name: "MissingPeerDependencyError", packageName: "@aws-sdk/client-dynamodb", isLibraryError: true });
    expect(results["session-replication/sns-sqs"]).toMatchObject({ name: "MissingPeerDependencyError", packageName: "@aws-sdk/client-sns", isLibraryError: true });
  });
});
