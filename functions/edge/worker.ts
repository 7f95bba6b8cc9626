/**
 * `deno serve` entry of the demo edge node: `denoServeHandler` from `session-replication/deno`. The
 * node is created on the first request, which also tells it its base URL.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 deno serve --allow-net --allow-env --port 8000 dist/edge/worker.js
 */
import { denoServeHandler } from 'session-replication/deno';
import { readConfig } from '../shared/config.ts';
import { demoMemberApp, edgeMemberOptions } from './edge-node.ts';
import { runtimeEnv } from './runtime.ts';

const config = readConfig('edge', runtimeEnv());

export default denoServeHandler(demoMemberApp(config), edgeMemberOptions(config));
