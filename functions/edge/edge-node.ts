/**
 * An edge node: the demo app on a runtime with Web APIs only (Deno, Bun, a Durable Object, a
 * browser-like isolate), with NATS reached over WebSocket (`wsconnect`). It is a full cluster node:
 * it subscribes, holds replicas and heartbeats, so it needs a runtime that keeps the process (and its
 * WebSocket) alive between requests. A plain Cloudflare Worker cannot (see ARCHITECTURE.md, "Nodes
 * that cannot listen").
 *
 * Runtime-neutral: no Node API and no runtime global here. A runtime entry (deno.ts) reads its
 * environment, serves `fetch`, and calls `start()` at module scope; an entry that cannot do work
 * outside a request just serves `fetch`, which starts the node on the first request.
 */
import { wsconnect, type ConnectionOptions, type NatsConnection } from '@nats-io/nats-core';
import { createCluster, consoleLogger, type Logger, type LogLevel, type ReplicatedSessions } from '../../lib/index.ts';
import { NatsChannel, NODE_CONNECTION_DEFAULTS } from '../../lib/channel/nats.ts';
import { jetStreamLogFor } from '../../lib/log/jetstream.ts';
import { createDemoApp } from '../demo-app.ts';
import { readConfig, type EdgeEnvConfig } from '../shared/config.ts';

/** Settings of an edge node, read from its environment by the one configuration reader (`readConfig('edge', env)`). */
export type EdgeConfig = EdgeEnvConfig;

/** Reads and validates an edge node's settings from environment variables; throws `ConfigError` naming the variable. */
export function edgeConfigFromEnv(env: Readonly<Record<string, string | undefined>>): EdgeConfig {
  return readConfig('edge', env);
}

/** A running (or starting) edge node. */
export interface EdgeNode {
  /** Serves the demo app; answers 503 until the NATS connection is up, and starts the node if nobody did. */
  fetch(request: Request): Promise<Response>;
  /** Connects to NATS over WebSocket, creates the cluster node and runs state transfer (idempotent). */
  start(): Promise<ReplicatedSessions>;
  /** The cluster node once it exists (after the NATS connection is up). */
  readonly sessions: ReplicatedSessions | undefined;
  /** Leaves the cluster gracefully and closes the connection. */
  stop(): Promise<void>;
}

/** Parts an entry plugs in: a logger (default: JSON lines on the console). */
export interface EdgeNodeOptions {
  logger?: Logger;
  /** How long a request waits for the NATS connection before it is answered 503 (default 5000 ms). */
  connectWaitMs?: number;
}

/** Connection options for `wsconnect`: retry forever with backoff, never our own publishes back. */
export function wsConnectionOptions(config: EdgeConfig, name: string): ConnectionOptions {
  return {
    servers: config.nats,
    name,
    ...NODE_CONNECTION_DEFAULTS,
    ...(config.natsUser !== undefined ? { user: config.natsUser, pass: config.natsPassword ?? '' } : {}),
    ...(config.natsToken !== undefined ? { token: config.natsToken } : {}),
  };
}

/**
 * Creates an edge node. Nothing happens until `start()` or the first `fetch`: an isolate may not do
 * I/O at module scope. `config.advertiseUrl` may be set until then (an entry learns its port late).
 */
export function createEdgeNode(config: EdgeConfig, options: EdgeNodeOptions = {}): EdgeNode {
  const logger = options.logger ?? consoleLogger(config.logLevel);
  let sessions: ReplicatedSessions | undefined;
  let connection: NatsConnection | undefined;
  let app: { fetch(request: Request): Response | Promise<Response> } | undefined;
  let starting: Promise<ReplicatedSessions> | undefined;
  let stopped = false;
  let appReady: (() => void) | undefined;
  let hasApp = new Promise<void>((resolve) => (appReady = resolve));

  async function run(): Promise<ReplicatedSessions> {
    const node = config.node ?? crypto.randomUUID().slice(0, 8);
    logger.info({ servers: config.nats, node }, 'connecting to NATS over WebSocket');
    const connected = await wsconnect(wsConnectionOptions(config, `sessrep-${config.cluster}-${node}-edge`));
    if (stopped) {
      await connected.close();
      throw new Error('the edge node was stopped while connecting');
    }
    connection = connected;
    logger.info({ server: connection.getServer() }, 'connected to NATS');
    const log = config.jetstream ? jetStreamLogFor(connection, config.cluster) : undefined;
    sessions = createCluster({
      ...(log ? { log } : {}),
      ...(config.clusterKeys.length > 0 ? { clusterKeys: config.clusterKeys, protection: config.protection } : {}),
      ...(config.advertiseUrl !== undefined ? { advertiseUrl: config.advertiseUrl } : {}),
      cluster: config.cluster,
      node,
      channel: new NatsChannel(connection),
      manager: config.manager,
      sendMode: config.send,
      maxInactiveSeconds: config.maxInactive,
      logger,
    });
    app = createDemoApp(sessions, { session: { trustProxy: config.trustProxy }, ...(config.adminToken !== undefined ? { admin: { token: config.adminToken } } : {}) });
    appReady?.();
    await sessions.start();
    return sessions;
  }

  function start(): Promise<ReplicatedSessions> {
    if (stopped) return Promise.reject(new Error('the edge node is stopped'));
    starting ??= run().catch((error: unknown) => {
      logger.error({ error: error instanceof Error ? error.message : String(error) }, 'edge node failed to start');
      starting = undefined; // the next request tries again
      const failed = sessions;
      void (failed ? failed.stop() : connection?.close())?.catch(() => undefined);
      connection = undefined;
      sessions = undefined;
      app = undefined;
      hasApp = new Promise<void>((resolve) => (appReady = resolve));
      throw error;
    });
    return starting;
  }

  return {
    get sessions() {
      return sessions;
    },
    start,
    async fetch(request) {
      if (!app) {
        // The first request starts the node and waits for the connection (not for state transfer:
        // until that is done the demo app itself answers /healthz with 503).
        start().catch(() => undefined);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([hasApp, new Promise<void>((resolve) => (timer = setTimeout(resolve, options.connectWaitMs ?? 5000)))]);
        clearTimeout(timer);
      }
      if (!app) {
        return Response.json({ ready: false, node: config.node ?? null, detail: 'starting: connecting to NATS over WebSocket' }, { status: 503, headers: { 'retry-after': '1' } });
      }
      return app.fetch(request);
    },
    async stop() {
      // Not waiting for a connection that may never come: one made later is closed at once (see run).
      stopped = true;
      if (sessions) await sessions.stop();
      else await connection?.close();
    },
  };
}
