/** Runs one cluster node on Node.js: NATS or in-process channel, the demo app over HTTP, pino logs. */
import { serve, type ServerType } from '@hono/node-server';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import pino from 'pino';
import { createCluster, MemoryChannel, type Channel, type Logger, type MemoryBus, type ReplicatedSessions } from '../../lib/index.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { jetStreamLogFor } from '../../lib/channel/jetstream-log.ts';
import { DynamoSnapshotStore } from '../../lib/store/dynamodb.ts';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createDemoApp } from '../demo-app.ts';
import { createNodeMetrics } from './metrics.ts';
import type { NatsAuthConfig, ServeConfig } from './config.ts';

/** A running node. */
export interface RunningNode {
  readonly sessions: ReplicatedSessions;
  readonly server: ServerType;
  /** The port the HTTP server listens on (useful with port 0). */
  readonly port: number;
  /** Leaves the cluster gracefully and closes the HTTP server. */
  close(): Promise<void>;
}

/** A pino logger at `level` writing JSON lines to stdout. */
export function createLogger(level: ServeConfig['logLevel']): Logger {
  return pino({ level, base: undefined }) as unknown as Logger;
}

/** A DynamoDB client for the configured endpoint; local endpoints get placeholder credentials when none are set. */
export function createDynamoClient(config: Pick<ServeConfig, 'dynamodbEndpoint' | 'awsRegion'>): DynamoDBClient {
  const local = config.dynamodbEndpoint !== undefined && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE;
  return new DynamoDBClient({
    region: config.awsRegion,
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000 },
    ...(config.dynamodbEndpoint !== undefined ? { endpoint: config.dynamodbEndpoint } : {}),
    ...(local ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
  });
}

/** Connection options for the configured NATS credentials and TLS files. */
export function natsAuthOptions(auth: NatsAuthConfig): Partial<ConnectionOptions> {
  const tls = auth.tlsCaFile !== undefined || auth.tlsCertFile !== undefined;
  return {
    ...(auth.user !== undefined ? { user: auth.user, pass: auth.password } : {}),
    ...(auth.token !== undefined ? { token: auth.token } : {}),
    ...(auth.credsFile !== undefined ? { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) } : {}),
    ...(auth.nkeySeedFile !== undefined ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(auth.nkeySeedFile, 'utf8').trim())) } : {}),
    ...(tls
      ? {
          tls: {
            ...(auth.tlsCaFile !== undefined ? { caFile: auth.tlsCaFile } : {}),
            ...(auth.tlsCertFile !== undefined ? { certFile: auth.tlsCertFile, keyFile: auth.tlsKeyFile } : {}),
          },
        }
      : {}),
  };
}

/** Connects to NATS, retrying forever with the client's backoff; logs while it waits. */
export async function connectNats(servers: string[], name: string, logger: Logger, auth: NatsAuthConfig = {}): Promise<NatsChannel> {
  logger.info({ servers }, 'connecting to NATS');
  const started = Date.now();
  const waiting = setInterval(() => logger.warn({ servers, waitedMs: Date.now() - started }, 'NATS unreachable, still retrying'), 5000);
  const connection = await connect({
    servers,
    name,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    // A node never needs its own publishes back: skipping them saves a decode per message.
    noEcho: true,
    ...natsAuthOptions(auth),
  }).finally(() => clearInterval(waiting));
  logger.info({ server: connection.getServer() }, 'connected to NATS');
  return new NatsChannel(connection);
}

/**
 * Starts a node: the HTTP server first (so `/healthz` answers 503 while NATS is unreachable and
 * during state transfer), then the cluster. With `bus`, uses that in-process bus instead of NATS.
 */
export async function startNode(config: ServeConfig, logger: Logger, bus?: MemoryBus): Promise<RunningNode> {
  // Until the cluster exists (NATS may still be unreachable), every request gets 503.
  let fetch: (request: Request) => Response | Promise<Response> = () =>
    Response.json({ ready: false, node: config.node, detail: 'starting: connecting to the channel' }, { status: 503 });
  const { server, port } = await new Promise<{ server: ServerType; port: number }>((resolve, reject) => {
    const server = serve({ fetch: (request) => fetch(request), port: config.port, hostname: config.host }, (info) => resolve({ server, port: info.port }));
    server.once('error', reject);
  });
  logger.info({ url: `http://${config.host}:${port}` }, 'listening');
  const nats = config.nats.length > 0 ? await connectNats(config.nats, `sessrep-${config.cluster}-${config.node}`, logger, config.natsAuth) : undefined;
  const channel: Channel = nats ?? new MemoryChannel(bus);
  const log = nats && config.jetstream ? jetStreamLogFor(nats.connection, config.cluster) : undefined;
  const store =
    config.dynamodbTable !== undefined ? new DynamoSnapshotStore({ client: createDynamoClient(config), table: config.dynamodbTable, cluster: config.cluster }) : undefined;
  const sessions = createCluster({
    ...(log ? { log } : {}),
    ...(store ? { store } : {}),
    ...(config.clusterKeys.length > 0 ? { clusterKeys: config.clusterKeys, protection: config.protection } : {}),
    cluster: config.cluster,
    node: config.node,
    channel,
    manager: config.manager,
    sendMode: config.send,
    maxInactiveSeconds: config.maxInactive,
    advertiseUrl: config.advertiseUrl ?? defaultAdvertiseUrl(config.host, port),
    logger,
  });
  fetch = createDemoApp(sessions, { dashboardHtml: dashboardHtml(), metrics: createNodeMetrics(sessions).handler }).fetch;
  await sessions.start();
  return {
    sessions,
    server,
    port,
    async close() {
      // Stop taking requests first and let those in flight finish (their acks still need the cluster), then leave.
      await closeHttp(server, 3000);
      await sessions.stop();
    },
  };
}

/**
 * Closes the listener, closes idle keep-alive connections (a load balancer's pooled ones) at once, and
 * cuts connections still busy after `graceMs`; resolves when every connection is gone.
 */
function closeHttp(server: ServerType, graceMs: number): Promise<void> {
  const http = server as Partial<Pick<import('node:http').Server, 'closeIdleConnections' | 'closeAllConnections'>> & ServerType;
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

/** http://HOST:PORT; a wildcard bind address advertises the machine's host name instead. */
export function defaultAdvertiseUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host;
  return `http://${name.includes(':') ? `[${name}]` : name}:${port}`;
}

let dashboardPage: string | undefined;

/** The dashboard page (functions/dashboard/index.html), read once. */
export function dashboardHtml(): string {
  dashboardPage ??= readFileSync(new URL('../dashboard/index.html', import.meta.url), 'utf8');
  return dashboardPage;
}
