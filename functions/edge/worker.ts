/**
 * Module-worker entry of the edge node, `export default { fetch }`: the shape `deno serve` and Bun
 * serve, and a Durable Object-like host can call. It creates the cluster node on the first request
 * (an isolate may not do I/O at module scope) from the environment: a Workers-style `env` argument,
 * else Deno's or Bun's environment. The node stays a full member only while the runtime keeps this
 * isolate (and its NATS WebSocket) alive between requests; a plain Cloudflare Worker does not.
 *
 *   npm run build:edge
 *   NATS_URL=ws://127.0.0.1:8080 deno serve --allow-net --allow-env --port 8000 dist/edge/worker.js
 */
import { ConfigError } from '../shared/config.ts';
import { createEdgeNode, edgeConfigFromEnv, type EdgeNode } from './edge-node.ts';
import { onTermination, runtimeEnv } from './runtime.ts';

let node: EdgeNode | undefined;

export default {
  async fetch(request: Request, env?: Readonly<Record<string, unknown>>): Promise<Response> {
    if (!node) {
      try {
        const config = edgeConfigFromEnv(runtimeEnv(env));
        // The first request tells this node its public base URL (other members' dashboards use it).
        config.advertiseUrl ??= new URL(request.url).origin;
        const created = createEdgeNode(config);
        node = created;
        // Where the runtime has signals (deno serve, Bun): leave the cluster gracefully on SIGTERM.
        onTermination(() => created.stop());
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        return Response.json({ error: error.message }, { status: 500 });
      }
    }
    return node.fetch(request);
  },
};
