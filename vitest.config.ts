// Owns: vitest configuration (one shared nats-server via global setup, forked workers capped at 2).
import { defineConfig } from "vitest/config";

export default defineConfig({
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
