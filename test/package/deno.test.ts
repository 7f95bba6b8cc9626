// Owns: the packed package on Deno (the `deno` npm package): the user's Hono app from a fresh app
// folder, served by `session-replication/deno` as two member processes over a real nats-server's
// WebSocket listener; a write on one is read back on the other; SIGTERM leaves gracefully.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describeProcessRuntime } from './edge-scenario.ts';

describeProcessRuntime({
  name: 'Deno',
  /** The Deno binary the `deno` npm package ships (in its platform package; nothing is downloaded). */
  binary: () => {
    const { runInstall } = createRequire(import.meta.url)('deno/install_api.cjs') as { runInstall(): string };
    return runInstall();
  },
  args: (file) => ['run', '--no-prompt', '--allow-net', '--allow-env', '--allow-read', file],
  env: (appDir) => ({ DENO_DIR: join(appDir, '.deno'), DENO_NO_UPDATE_CHECK: '1' }),
});
