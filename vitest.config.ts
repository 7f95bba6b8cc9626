// Owns: vitest configuration (one shared nats-server via global setup, forked workers capped at 2).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { ENTRIES, specifier } from "./scripts/entries.ts";

export default defineConfig({
  resolve: {
    // `session-replication` and `session-replication/<subpath>` resolve to the TypeScript sources (scripts/entries.ts).
    alias: ENTRIES.map((entry) => ({
      find: new RegExp(`^${specifier(entry)}$`),
      replacement: fileURLToPath(new URL(entry.source, import.meta.url)),
    })),
  },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["./test/global-setup.ts"],
    testTimeout: 30000,
    hookTimeout: 60000,
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});
