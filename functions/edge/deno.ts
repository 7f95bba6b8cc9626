/**
 * Deno entry of the edge node (a full node: Deno keeps the process and its NATS WebSocket alive).
 * The cluster starts at module scope, right after the HTTP listener is up.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 SESSREP_NODE=edge1 PORT=8000 deno run --allow-net --allow-env dist/edge/deno.js
 */
import { createEdgeNode, edgeConfigFromEnv } from './edge-node.ts';
import { deno, onTermination, runtimeEnv } from './runtime.ts';

const Deno = deno();
if (!Deno) throw new Error('functions/edge/deno.ts runs on Deno; on other runtimes use functions/edge/worker.ts');

const env = runtimeEnv();
const config = edgeConfigFromEnv(env);
const node = createEdgeNode(config);
const port = Number(env.PORT ?? '8000');
const hostname = env.HOST ?? '127.0.0.1';

const server = Deno.serve(
  {
    hostname,
    port,
    onListen(address) {
      const url = `http://${address.hostname}:${address.port}`;
      config.advertiseUrl ??= url;
      // Always printed (whatever LOG_LEVEL says): scripts and tests learn the port from it.
      console.log(JSON.stringify({ level: 'info', time: Date.now(), msg: 'listening', url, runtime: 'deno' }));
      node.start().catch(() => undefined); // logged by the node; requests answer 503 until it is up
    },
  },
  (request) => node.fetch(request),
);

// Stop taking requests, leave the cluster gracefully (members drop this node at once), then exit.
// Requests still running after 3 s (or idle keep-alive connections) do not hold the exit up.
onTermination(async () => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([server.shutdown().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, 3000)))]);
  clearTimeout(timer);
  await node.stop();
});
