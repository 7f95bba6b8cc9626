/**
 * Bun entry of the demo edge node: `serveBun` from `session-replication/bun` with the settings of
 * the environment. The node connects and joins right after the HTTP listener is up.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 SESSREP_NODE=edge1 PORT=3000 bun dist/edge/bun.js
 */
import { serveBun } from 'session-replication/bun';
import { readConfig } from '../shared/config.ts';
import { demoMemberApp, edgeMemberOptions } from './edge-node.ts';
import { runtimeEnv } from './runtime.ts';

const env = runtimeEnv();
const config = readConfig('edge', env);
const node = await serveBun(demoMemberApp(config), {
  ...edgeMemberOptions(config),
  port: Number(env.PORT ?? '3000'),
  hostname: env.HOST ?? '127.0.0.1',
});
// Always printed (whatever LOG_LEVEL says): scripts and tests learn the port from it.
console.log(JSON.stringify({ level: 'info', time: Date.now(), msg: 'listening', url: node.url, runtime: 'bun' }));
