/**
 * Deno entry of the demo edge node: `serveDeno` from `session-replication/deno` with the settings of
 * the environment. The node connects and joins right after the HTTP listener is up.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 SESSREP_NODE=edge1 PORT=8000 deno run --allow-net --allow-env dist/edge/deno.js
 */
import { serveDeno } from 'session-replication/deno';
import { readConfig } from '../shared/config.ts';
import { announceListening, demoMemberApp, edgeServeOptions } from './edge-node.ts';
import { runtimeEnv } from './runtime.ts';

const env = runtimeEnv();
const config = readConfig('edge', env);
const node = await serveDeno(demoMemberApp(config), edgeServeOptions(config, env, 8000));
announceListening(node.url, 'deno');
