/**
 * An edge node: the demo app on a runtime with Web APIs only (Deno, Bun, a Durable Object, a
 * browser-like isolate), with NATS reached over WebSocket (`wsconnect`). It is a full cluster node:
 * it subscribes, holds replicas and heartbeats, so it needs a runtime that keeps the process (and its
 * WebSocket) alive between requests. A plain Cloudflare Worker cannot (see docs/architecture.md,
 * "Adapters").
 *
 * Runtime-neutral: no Node API and no runtime global here. A runtime entry (deno.ts) reads its
 * environment, serves `fetch`, and calls `start()` at module scope; an entry that cannot do work
 * outside a request just serves `fetch`, which starts the node on the first request.
 */
import { wsconnect, type ConnectionOptions, type NatsConnection } from '@nats-io/nats-core';
import { createCluster, consoleLogger, type Logger, type LogLevel, type ClusterNode } from '../../lib/index.ts';
import { NatsChannel, NODE_CONNECTION_DEFAULTS } from '../../lib/channel/nats.ts';
import { jetStreamLogFor } from '../../lib/channel/jetstream-log.ts';
import { checkClusterKeys, parseClusterKeys, type ClusterKeyConfig } from '../../lib/codec/protection.ts';
import { TOKEN_PATTERN } from '../../lib/session/ids.ts';
import { createDemoApp } from '../demo-app.ts';

/** A configuration problem in the edge node's environment. */
export class EdgeConfigError extends Error {
  override readonly name = 'EdgeConfigError';
}

/** Settings of an edge node; `edgeConfigFromEnv` reads them from environment variables. */
export interface EdgeConfig {
  cluster: string;
  /** This node's id and cookie route; default: random. */
  node?: string;
  /** NATS WebSocket URLs (`ws://` or `wss://`). */
  nats: string[];
  manager: 'delta' | 'backup';
  send: 'async' | 'ack' | 'persist';
  maxInactive: number;
  logLevel: LogLevel;
  /** Keep the replication log in JetStream (on with send mode persist). */
  jetstream: boolean;
  clusterKeys: ClusterKeyConfig[];
  protection: 'encrypt' | 'sign';
  /** This node's public base URL for other members' dashboards. */
  advertiseUrl?: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
}

/** Environment variables of an edge node: the same names as the Node server's (functions/node/config.ts). */
export const EDGE_ENV = {
  NATS_URL: 'NATS WebSocket URL(s), comma-separated, e.g. wss://nats.example.com:443 (required)',
  SESSREP_CLUSTER: 'cluster name (default demo)',
  SESSREP_NODE: 'node id and cookie route (default: random)',
  SESSREP_MANAGER: 'delta or backup (default delta)',
  SESSREP_SEND: 'async, ack or persist (default async)',
  SESSREP_MAX_INACTIVE: 'session timeout in seconds, <= 0: never (default 1800)',
  SESSREP_JETSTREAM: 'true: keep the replication log in JetStream (default: true with persist)',
  SESSREP_CLUSTER_KEY: 'cluster key(s) "id:base64,id:base64", newest first',
  SESSREP_PROTECTION: 'encrypt or sign (default encrypt)',
  SESSREP_ADVERTISE_URL: "this node's base URL for other members' dashboards",
  LOG_LEVEL: 'debug, info, warn, error or silent (default info)',
  NATS_USER: 'NATS user (with NATS_PASSWORD)',
  NATS_PASSWORD: 'NATS password',
  NATS_TOKEN: 'NATS token',
} as const;

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new EdgeConfigError(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
  return value as T;
}

/** Reads and validates an edge node's settings from environment variables (see `EDGE_ENV`). */
export function edgeConfigFromEnv(env: Readonly<Record<string, string | undefined>>): EdgeConfig {
  const get = (name: keyof typeof EDGE_ENV): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const nats = (get('NATS_URL') ?? '').split(',').map((url) => url.trim()).filter(Boolean);
  if (nats.length === 0) throw new EdgeConfigError('NATS_URL is required: the NATS WebSocket URL(s), e.g. ws://127.0.0.1:8080');
  for (const url of nats) if (!/^wss?:\/\/\S+$/.test(url)) throw new EdgeConfigError(`NATS_URL must be ws:// or wss:// URLs on an edge runtime (got "${url}")`);
  const cluster = get('SESSREP_CLUSTER') ?? 'demo';
  const node = get('SESSREP_NODE');
  for (const [name, value] of [['SESSREP_CLUSTER', cluster], ['SESSREP_NODE', node]] as const) {
    if (value !== undefined && !TOKEN_PATTERN.test(value)) throw new EdgeConfigError(`${name} must be 1-64 characters of A-Z a-z 0-9 _ - (got "${value}")`);
  }
  const maxInactiveText = get('SESSREP_MAX_INACTIVE') ?? '1800';
  const maxInactive = Number(maxInactiveText);
  if (!/^-?\d+$/.test(maxInactiveText) || !Number.isSafeInteger(maxInactive)) throw new EdgeConfigError(`SESSREP_MAX_INACTIVE must be an integer number of seconds (got "${maxInactiveText}")`);
  const send = oneOf('SESSREP_SEND', get('SESSREP_SEND') ?? 'async', ['async', 'ack', 'persist'] as const);
  const jetstream = oneOf('SESSREP_JETSTREAM', get('SESSREP_JETSTREAM') ?? String(send === 'persist'), ['true', 'false'] as const) === 'true';
  if (send === 'persist' && !jetstream) throw new EdgeConfigError('SESSREP_SEND=persist needs SESSREP_JETSTREAM=true');
  const keys = get('SESSREP_CLUSTER_KEY');
  const clusterKeys = keys !== undefined ? parseClusterKeys(keys) : [];
  try {
    if (clusterKeys.length > 0) checkClusterKeys(clusterKeys);
  } catch (error) {
    throw new EdgeConfigError(`SESSREP_CLUSTER_KEY: ${error instanceof Error ? error.message : String(error)}`);
  }
  const advertiseUrl = get('SESSREP_ADVERTISE_URL');
  const natsUser = get('NATS_USER');
  const natsPassword = get('NATS_PASSWORD');
  const natsToken = get('NATS_TOKEN');
  return {
    cluster,
    ...(node !== undefined ? { node } : {}),
    nats,
    manager: oneOf('SESSREP_MANAGER', get('SESSREP_MANAGER') ?? 'delta', ['delta', 'backup'] as const),
    send,
    maxInactive,
    logLevel: oneOf('LOG_LEVEL', get('LOG_LEVEL') ?? 'info', ['debug', 'info', 'warn', 'error', 'silent'] as const),
    jetstream,
    clusterKeys,
    protection: oneOf('SESSREP_PROTECTION', get('SESSREP_PROTECTION') ?? 'encrypt', ['encrypt', 'sign'] as const),
    ...(advertiseUrl !== undefined ? { advertiseUrl } : {}),
    ...(natsUser !== undefined ? { natsUser } : {}),
    ...(natsPassword !== undefined ? { natsPassword } : {}),
    ...(natsToken !== undefined ? { natsToken } : {}),
  };
}

/** A running (or starting) edge node. */
export interface EdgeNode {
  /** Serves the demo app; answers 503 until the NATS connection is up, and starts the node if nobody did. */
  fetch(request: Request): Promise<Response>;
  /** Connects to NATS over WebSocket, creates the cluster node and runs state transfer (idempotent). */
  start(): Promise<ClusterNode>;
  /** The cluster node once it exists (after the NATS connection is up). */
  readonly sessions: ClusterNode | undefined;
  /** Leaves the cluster gracefully and closes the connection. */
  stop(): Promise<void>;
}

/** Parts an entry plugs in: a logger (default: JSON lines on the console) and the dashboard page. */
export interface EdgeNodeOptions {
  logger?: Logger;
  dashboardHtml?: string;
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
  let sessions: ClusterNode | undefined;
  let connection: NatsConnection | undefined;
  let app: { fetch(request: Request): Response | Promise<Response> } | undefined;
  let starting: Promise<ClusterNode> | undefined;
  let stopped = false;
  let appReady: (() => void) | undefined;
  let hasApp = new Promise<void>((resolve) => (appReady = resolve));

  async function run(): Promise<ClusterNode> {
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
    app = createDemoApp(sessions, options.dashboardHtml !== undefined ? { dashboardHtml: options.dashboardHtml } : {});
    appReady?.();
    await sessions.start();
    return sessions;
  }

  function start(): Promise<ClusterNode> {
    if (stopped) return Promise.reject(new Error('the edge node is stopped'));
    starting ??= run().catch((error: unknown) => {
      logger.error({ error: error instanceof Error ? error.message : String(error) }, 'edge node failed to start');
      starting = undefined; // the next request tries again
      const failed = sessions;
      void (failed ? failed.stop().finally(() => failed.channel.close()) : connection?.close())?.catch(() => undefined);
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
      // The node leaves what it was given open: the connection is this shell's to close.
      await sessions?.stop();
      await connection?.close();
    },
  };
}
