/**
 * `serveNode(app, options)`: runs the user's Hono app as a member node on Node.js. It serves the app
 * with @hono/node-server, starts the cluster node, serves the admin routes on an internal port or
 * under a prefix, and on SIGTERM/SIGINT shuts down in order: the `beforeClose` hook (a drain, say),
 * stop accepting, let requests in flight finish, leave the cluster, close what it opened, exit.
 */
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import type { constants } from 'node:os';
import { adminGuard, adminRoutes, type AdminRoutesOptions } from '../../lib/admin/index.ts';
import {
  createCluster,
  InvalidOptionsError,
  SessionReplicationError,
  type ClusterOptions,
  type ClusterNode,
} from '../../lib/index.ts';
import { processMetrics } from './process-metrics.ts';

/** Anything with a Hono-style `fetch`: the user's app. */
export interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/** Where and how the admin routes are served; `port` and `prefix` exclude each other. */
export type NodeAdminOptions = AdminRoutesOptions &
  (
    | {
        /** A separate port for the admin routes only (0: any free port). */
        readonly port: number;
        /**
         * Bind address of the admin port.
         * @default '127.0.0.1'
         */
        readonly hostname?: string;
        readonly prefix?: never;
      }
    | {
        /** A path prefix on the app's port, such as `/_admin`: requests under it go to the admin routes, never to the app. */
        readonly prefix: string;
        readonly port?: never;
        readonly hostname?: never;
      }
  );

/** Options of {@link serveNode}. */
export interface ServeNodeOptions {
  /**
   * The cluster node, its options (the adapter creates it), or a function that creates it, such as
   * after connecting to NATS (it gets the ports the servers listen on, for `advertiseUrl`): until it
   * resolves the app answers 503 and `/readyz` says starting.
   * The adapter starts the node and stops it on close.
   */
  readonly cluster:
    | ClusterNode
    | ClusterOptions
    | ((listening: { port: number; adminPort?: number }) => Promise<ClusterNode>);
  /**
   * The app's port (0: any free port).
   * @default 3000
   */
  readonly port?: number;
  /**
   * The app's bind address.
   * @default '0.0.0.0'
   */
  readonly hostname?: string;
  /** The admin routes, with their guard; omitted: none are served. */
  readonly admin?: NodeAdminOptions;
  /**
   * Signals that shut the node down gracefully and exit; `false`: none (call `close()` yourself).
   * A second signal during the shutdown exits at once with code 1.
   * @default ['SIGTERM', 'SIGINT']
   */
  readonly shutdownSignals?: readonly (keyof typeof constants.signals)[] | false;
  /** Runs first on shutdown, while the node still serves: a drain (`node.drain()`), a log line. */
  readonly beforeClose?: (node: ClusterNode | undefined, reason: string) => void | Promise<void>;
  /**
   * How long requests in flight may take once the listener closed, in ms; then their connections are cut.
   * @default 3000
   */
  readonly graceMs?: number;
  /**
   * The whole shutdown's budget after a signal, in ms; past it the process exits with code 1.
   * @default 15000
   */
  readonly shutdownTimeoutMs?: number;
}

/** A running node server. */
export interface NodeServer {
  /** The app's port. */
  readonly port: number;
  /** The admin port, when the admin routes have their own. */
  readonly adminPort?: number;
  /** Resolves with the node once it has joined the cluster; rejects when it could not be created or started. */
  readonly ready: Promise<ClusterNode>;
  /** The node, once created. */
  readonly node: ClusterNode | undefined;
  /**
   * Shuts down (idempotent): `beforeClose`, stop accepting, finish requests in flight, leave the
   * cluster, close the servers. Does not exit the process.
   */
  close(reason?: string): Promise<void>;
}

const STARTING = { error: 'starting: the node has not joined the cluster yet', code: 'NOT_READY' };

/**
 * Serves `app` as a member node; pass `(node) => app` to build the app on the node once it exists.
 * Resolves once the servers listen; until the node exists the app answers 503 (the admin routes:
 * `/healthz` 200 "starting", `/readyz` 503); `ready` resolves once the node joined. Throws
 * `InvalidOptionsError` on bad options, including admin routes without a guard.
 *
 * @example
 * const server = await serveNode(app, {
 *   cluster: node,
 *   port: 8080,
 *   admin: { port: 9090, token: process.env.ADMIN_TOKEN },
 *   beforeClose: (node) => node?.drain(),
 * });
 */
export async function serveNode(
  app: FetchApp | ((node: ClusterNode) => FetchApp),
  options: ServeNodeOptions,
): Promise<NodeServer> {
  const {
    cluster,
    port = 3000,
    hostname = '0.0.0.0',
    admin,
    shutdownSignals = ['SIGTERM', 'SIGINT'],
    beforeClose,
    graceMs = 3000,
    shutdownTimeoutMs = 15_000,
  } = options;
  if (admin && admin.port === undefined && !admin.prefix?.startsWith('/'))
    throw new InvalidOptionsError('admin needs a `port`, or a `prefix` starting with "/"');
  // A missing or weak guard fails here, before anything listens.
  if (admin) adminGuard(admin);
  const prefix = admin?.prefix?.replace(/\/+$/, '');

  let node: ClusterNode | undefined;
  let served: FetchApp | undefined;
  let closing: Promise<void> | undefined;
  let adminApp: Hono | undefined;
  const adminFetch = (request: Request) => (adminApp ? adminApp.fetch(request) : startingAdmin(request, prefix ?? ''));
  const isAdminPath = (request: Request) => {
    if (prefix === undefined) return false;
    const path = new URL(request.url).pathname;
    return path === prefix || path.startsWith(`${prefix}/`);
  };
  const appServer = await listen(
    (request, env) => {
      if (isAdminPath(request)) return adminFetch(request);
      if (!served) return Response.json(STARTING, { status: 503, headers: { 'retry-after': '1' } });
      return served.fetch(request, env);
    },
    port,
    hostname,
  );
  const adminServer =
    admin?.port !== undefined ? await listen(adminFetch, admin.port, admin.hostname ?? '127.0.0.1') : undefined;

  const ready = (async () => {
    const listening = { port: appServer.port, ...(adminServer ? { adminPort: adminServer.port } : {}) };
    const created =
      typeof cluster === 'function'
        ? await cluster(listening)
        : isClusterNode(cluster)
          ? cluster
          : createCluster(cluster);
    if (closing) {
      // Closed while the node was being created (say, still connecting to NATS): it never starts.
      await created.stop().catch(() => undefined);
      throw new SessionReplicationError('CLOSED', 'the server was closed before the node started');
    }
    node = created;
    served = typeof app === 'function' ? app(created) : app;
    if (admin) {
      const { port: _port, hostname: _hostname, prefix: _prefix, ...routes } = admin;
      const labels = { cluster: created.cluster, node: created.node };
      const extra = routes.extraMetrics;
      const metrics = processMetrics(labels);
      const router = adminRoutes(created, {
        ...routes,
        extraMetrics: async () => metrics() + (extra ? await extra() : ''),
      });
      adminApp = prefix ? new Hono().route(prefix, router) : router;
    }
    if (!created.ready) await created.start();
    return created;
  })();

  const signals = shutdownSignals === false ? [] : shutdownSignals;
  const close = (reason = 'close') =>
    (closing ??= (async () => {
      await beforeClose?.(node, reason);
      await Promise.all([
        closeHttp(appServer.server, graceMs),
        adminServer ? closeHttp(adminServer.server, graceMs) : undefined,
      ]);
      // The node leaves only once the requests in flight are done: their acks still need it. A node
      // still being created is not waited for (the factory may wait for NATS forever).
      if (node) {
        await ready.catch(() => undefined);
        await node.stop();
      }
      for (const signal of signals) process.off(signal, onSignal);
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) process.exit(1);
    setTimeout(() => process.exit(1), shutdownTimeoutMs).unref();
    close(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        node?.logger.error({ error, signal }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, onSignal);
  // A start that fails closes the servers (a caller awaiting `ready` sees the error).
  ready.catch(async (error: unknown) => {
    node?.logger.error({ error }, 'the node could not start');
    await close('start failed').catch(() => undefined);
  });

  return {
    port: appServer.port,
    ...(adminServer ? { adminPort: adminServer.port } : {}),
    ready,
    get node() {
      return node;
    },
    close,
  };
}

/** A `ClusterNode` (has `start`), as opposed to its options. */
function isClusterNode(value: ClusterNode | ClusterOptions): value is ClusterNode {
  return typeof (value as Partial<ClusterNode>).start === 'function';
}

/** The admin routes while the node does not exist yet: alive, not ready, nothing else. */
function startingAdmin(request: Request, prefix: string): Response {
  const path = new URL(request.url).pathname.slice(prefix.length);
  if (path === '/healthz')
    return Response.json({ status: 'starting', ready: false }, { headers: { 'cache-control': 'no-store' } });
  return Response.json(
    { ...STARTING, ready: false },
    { status: 503, headers: { 'retry-after': '1', 'cache-control': 'no-store' } },
  );
}

/** Starts an HTTP server and resolves with it and its port once it listens. */
function listen(
  fetch: (request: Request, env: unknown) => Response | Promise<Response>,
  port: number,
  hostname: string,
): Promise<{ server: ServerType; port: number }> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname }, (info: AddressInfo) => resolve({ server, port: info.port }));
    server.once('error', reject);
  });
}

/**
 * Closes the listener, closes idle keep-alive connections (a load balancer's pooled ones) at once,
 * and cuts connections still busy after `graceMs`; resolves when every connection is gone.
 */
function closeHttp(server: ServerType, graceMs: number): Promise<void> {
  const http = server as ServerType &
    Partial<Pick<import('node:http').Server, 'closeIdleConnections' | 'closeAllConnections'>>;
  return new Promise<void>((resolve) => {
    const idle = setInterval(() => http.closeIdleConnections?.(), 100);
    const cut = setTimeout(() => http.closeAllConnections?.(), graceMs);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(cut);
      resolve();
    });
    http.closeIdleConnections?.();
  });
}
