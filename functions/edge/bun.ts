/**
 * Bun entry of the demo edge node: `serveBun` from `session-replication/bun` with the settings of
 * the environment. The node connects and joins right after the HTTP listener is up.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 SESSREP_NODE=edge1 PORT=3000 bun dist/edge/bun.js
 */
import { serveBun } from 'session-replication/bun';
import { readConfig } from '../shared/config.ts';
import { announceListening, demoMemberApp, edgeServeOptions } from './edge-node.ts';
import { runtimeEnv } from './runtime.ts';

const env = runtimeEnv();
const config = readConfig('edge', env);
const node = await serveBun(demoMemberApp(config), edgeServeOptions(config, env, 3000));
announceListening(node.url, 'bun');
