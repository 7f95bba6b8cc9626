// Owns: vitest configuration: three projects (unit, integration, e2e); forked workers capped at 2.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { ENTRIES, specifier } from './scripts/entries.ts';

/** Tests under test/lib and test/functions that need servers or processes: they run in integration or e2e. */
const NEEDS_SERVERS = [
  'test/lib/store/dynamodb.test.ts',
  'test/lib/store/snapshot-writer.test.ts',
  'test/functions/lambda/**/*.test.ts',
];
const NEEDS_PROCESSES = ['test/lib/web-only.test.ts'];

export default defineConfig({
  resolve: {
    // `session-replication` and `session-replication/<subpath>` resolve to the TypeScript sources (scripts/entries.ts).
    alias: ENTRIES.map((entry) => ({
      find: new RegExp(`^${specifier(entry)}$`),
      replacement: fileURLToPath(new URL(entry.source, import.meta.url)),
    })),
  },
  test: {
    testTimeout: 30000,
    hookTimeout: 60000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        // Pure logic on the in-process channel: no global setup, no server, no child process.
        test: {
          name: 'unit',
          include: ['test/lib/**/*.test.ts', 'test/functions/**/*.test.ts'],
          exclude: [...NEEDS_SERVERS, ...NEEDS_PROCESSES],
        },
      },
      {
        extends: true,
        // In-process nodes against the shared nats-server and DynamoDB Local (and servers the kit starts).
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/kit/**/*.test.ts', ...NEEDS_SERVERS],
          globalSetup: ['./test/global-setup.ts'],
        },
      },
      {
        extends: true,
        // Node processes, HAProxy, Deno, the CDK synth, packaging, the runtime adapters: the product as users run it.
        test: {
          name: 'e2e',
          include: [
            'test/e2e/**/*.test.ts',
            'test/adapters/**/*.test.ts',
            'test/package/**/*.test.ts',
            'test/infra/**/*.test.ts',
            ...NEEDS_PROCESSES,
          ],
          globalSetup: ['./test/global-setup.ts'],
        },
      },
    ],
  },
});
