/**
 * A full cluster member over NATS WebSocket for runtimes with Web APIs only (Deno, Bun, a Durable
 * Object): it connects with `wsconnect`, creates and starts the cluster node, and serves the user's
 * Hono app behind the session middleware. It subscribes, holds replicas and heartbeats, so its host
 * must keep it (and its WebSocket) alive between requests.
 *
 * Runtime-neutral: no runtime global here. adapters/deno, adapters/bun and adapters/cloudflare host it.
 */
import { wsconnect, type ConnectionOptions, type NatsConnection } from '@nats-io/nats-core';
import { Hono } from 'hono';
import { NatsChannel, NODE_CONNECTION_DEFAULTS } from '../../lib/channel/nats.ts';
import { InvalidOptionsError } from '../../lib/errors.ts';
import type { ReplicationLog } from '../../lib/log/replication-log.ts';
import {
  consoleLogger,
  createCluster,
  type ClusterOptions,
  type ClusterNode,
  type SessionMiddlewareOptions,
} from '../../lib/index.ts';

/** Anything that answers a `Request` the way a Hono app does. */
export interface FetchHandler {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/**
 * The user's app: a Hono app, served with the session middleware in front of every route (handlers
 * read `c.get('session')`), or a function that builds the app from the running cluster node (for
 * apps that place `node.middleware()` themselves or show `node.status()`).
 */
// biome-ignore lint/suspicious/noExplicitAny: any Hono app, whatever its Env, schema and base path (Hono's generics are invariant)
export type MemberApp = Hono<any, any, any> | ((node: ClusterNode) => FetchHandler);

/** Options of a member node on a Web-standard runtime. */
export interface EdgeMemberOptions {
  /**
   * nats.js connection options for `wsconnect`: `servers` are `ws://` or `wss://` URLs, plus
   * credentials (`user`/`pass`, `token`, `authenticator`) as needed. The node connection policy
   * (`NODE_CONNECTION_DEFAULTS`: retry forever with backoff, no echo) applies unless these override it.
   */
  nats: ConnectionOptions;
  /** `createCluster` options; the channel is the NATS connection, and `log` comes from the `log` option here. */
  cluster: Omit<ClusterOptions, 'channel' | 'log'>;
  /** Builds the replication log on the connection, e.g. `(nc) => jetStreamLogFor(nc, 'shop')` from `session-replication/jetstream`. */
  log?: (connection: NatsConnection) => ReplicationLog;
  /** Options of the session middleware put in front of a Hono app (an app factory places its own). */
  session?: SessionMiddlewareOptions;
  /** How long a request waits for the NATS connection before it is answered 503. @default 5000 */
  connectWaitMs?: number;
}

/** A member node that starts on `start()` or on its first request. */
export interface EdgeMember {
  /** Serves the app (`env`: the runtime's bindings, for Hono's `c.env`); answers 503 until the NATS connection is up, and starts the node if nobody did. */
  fetch(request: Request, env?: unknown): Promise<Response>;
  /**
   * Connects, creates the cluster node and runs state transfer (idempotent; after a failure the next
   * call tries again). `advertiseUrl` is this node's base URL when the options name none.
   */
  start(advertiseUrl?: string): Promise<ClusterNode>;
  /** The cluster node once the NATS connection is up. */
  readonly node: ClusterNode | undefined;
  /** Leaves the cluster gracefully and closes the NATS connection. */
  stop(): Promise<void>;
}

/** Serves `app` on `node`: a factory builds it; a Hono app is mounted behind the session middleware. */
function mount(app: MemberApp, node: ClusterNode, session: SessionMiddlewareOptions | undefined): FetchHandler {
  if (typeof app === 'function') return app(node);
  const host = new Hono();
  host.use(node.middleware(session));
  host.route('/', app);
  return host;
}

/** Throws `InvalidOptionsError` when `nats` names no server or one that is not a `ws://`/`wss://` URL. */
function checkWebSocketServers(nats: ConnectionOptions): void {
  const servers = typeof nats.servers === 'string' ? [nats.servers] : [...(nats.servers ?? [])];
  if (servers.length === 0)
    throw new InvalidOptionsError('nats.servers must name the NATS WebSocket URL(s), e.g. wss://nats.example.com:8443');
  const bad = servers.filter((url) => !/^wss?:\/\/\S+$/.test(url));
  if (bad.length > 0)
    throw new InvalidOptionsError(
      `nats.servers must be ws:// or wss:// URLs on a Web runtime (got ${bad.map((url) => JSON.stringify(url)).join(', ')})`,
    );
}

/**
 * Creates a member node. Nothing happens until `start()` or the first `fetch` (an isolate may not do
 * I/O at module scope). Throws `InvalidOptionsError` when `nats.servers` are not WebSocket URLs; the
 * cluster options are checked when the node starts.
 */
export function createEdgeMember(app: MemberApp, options: EdgeMemberOptions): EdgeMember {
  checkWebSocketServers(options.nats);
  const logger = options.cluster.logger ?? consoleLogger();
  let node: ClusterNode | undefined;
  let connection: NatsConnection | undefined;
  let handler: FetchHandler | undefined;
  let starting: Promise<ClusterNode> | undefined;
  let stopped = false;
  let handlerReady: () => void = () => undefined;
  let hasHandler = new Promise<void>((resolve) => (handlerReady = resolve));

  async function run(advertiseUrl: string | undefined): Promise<ClusterNode> {
    const name = options.cluster.node ?? crypto.randomUUID().slice(0, 8);
    logger.info({ servers: options.nats.servers, node: name }, 'connecting to NATS over WebSocket');
    const connected = await wsconnect({
      name: `sessrep-${options.cluster.cluster}-${name}`,
      ...NODE_CONNECTION_DEFAULTS,
      ...options.nats,
    });
    if (stopped) {
      await connected.close();
      throw new Error('the member node was stopped while connecting');
    }
    connection = connected;
    logger.info({ server: connected.getServer() }, 'connected to NATS');
    const url = options.cluster.advertiseUrl ?? advertiseUrl;
    node = createCluster({
      ...options.cluster,
      node: name,
      logger,
      channel: new NatsChannel(connected),
      ...(options.log ? { log: options.log(connected) } : {}),
      ...(url !== undefined ? { advertiseUrl: url } : {}),
    });
    handler = mount(app, node, options.session);
    handlerReady();
    await node.start();
    return node;
  }

  function start(advertiseUrl?: string): Promise<ClusterNode> {
    if (stopped) return Promise.reject(new Error('the member node is stopped'));
    starting ??= run(advertiseUrl).catch((error: unknown) => {
      logger.error({ error: error instanceof Error ? error.message : String(error) }, 'member node failed to start');
      starting = undefined;
      const [failedNode, failedConnection] = [node, connection];
      void (async () => {
        await failedNode?.stop();
        await failedConnection?.close();
      })().catch(() => undefined);
      connection = undefined;
      node = undefined;
      handler = undefined;
      hasHandler = new Promise<void>((resolve) => (handlerReady = resolve));
      throw error;
    });
    return starting;
  }

  return {
    get node() {
      return node;
    },
    start,
    async fetch(request, env) {
      if (!handler) {
        // Waits for the connection, not for state transfer (the cluster node handles requests meanwhile).
        start(new URL(request.url).origin).catch(() => undefined);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          hasHandler,
          new Promise<void>((resolve) => (timer = setTimeout(resolve, options.connectWaitMs ?? 5000))),
        ]);
        clearTimeout(timer);
      }
      if (!handler) {
        return Response.json(
          { error: 'starting: connecting to NATS over WebSocket', code: 'NODE_STARTING' },
          { status: 503, headers: { 'retry-after': '1' } },
        );
      }
      return handler.fetch(request, env);
    },
    async stop() {
      // Not waiting for a connection that may never come: one made later is closed at once (see run).
      stopped = true;
      if (node) await node.stop();
      // Drain: the leave announcement goes out before the connection closes.
      const open = connection;
      if (open && !open.isClosed()) await open.drain().catch(() => open.close());
    },
  };
}
