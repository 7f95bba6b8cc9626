// Owns: the packed package on Bun (the `bun` npm package): the user's Hono app from a fresh app
// folder, served by `session-replication/bun` as two member processes over a real nats-server's
// WebSocket listener; a write on one is read back on the other; SIGTERM leaves gracefully.
import { createRequire } from 'node:module';
import { describeProcessRuntime } from './edge-scenario.ts';

describeProcessRuntime({
  name: 'Bun',
  /**
   * The Bun binary of the `bun` npm package's platform package (`@oven/bun-<os>-<arch>`): the
   * repository installs it without install scripts, so nothing is downloaded or moved.
   */
  binary: () => {
    const arch = process.arch === 'arm64' ? 'aarch64' : process.arch;
    return createRequire(import.meta.url).resolve(`@oven/bun-${process.platform}-${arch}/bin/bun`);
  },
  args: (file) => [file],
  env: (appDir) => ({ BUN_INSTALL_CACHE_DIR: `${appDir}/.bun-cache` }),
});
