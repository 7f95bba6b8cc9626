/** Runs one cluster node on Node.js: NATS or in-process channel, the demo app over HTTP, pino logs. */
import { serve, type ServerType } from '@hono/node-server';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type TlsOptions } from '@nats-io/transport-node';
import pino from 'pino';
import { createCluster, MemoryChannel, type Channel, type Logger, type MemoryBus, type ReplicatedSessions } from '../../lib/index.ts';
import { NatsChannel, NODE_CONNECTION_DEFAULTS } from '../../lib/channel/nats.ts';
import { jetStreamLogFor } from '../../lib/channel/jetstream-log.ts';
import { DynamoSnapshotStore } from '../../lib/store/dynamodb.ts';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
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

/** Connection options for the configured NATS credentials and TLS files (TLS also for `tls://` server URLs). */
export function natsAuthOptions(auth: NatsAuthConfig, servers: string[] = []): Partial<ConnectionOptions> {
  const tls = auth.tlsCaFile !== undefined || auth.tlsCertFile !== undefined || servers.some((url) => url.startsWith('tls://'));
  const tlsOptions: TlsOptions & { checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined } = {
    ...(auth.tlsCaFile !== undefined ? { caFile: auth.tlsCaFile } : {}),
    ...(auth.tlsCertFile !== undefined && auth.tlsKeyFile !== undefined ? { certFile: auth.tlsCertFile, keyFile: auth.tlsKeyFile } : {}),
    checkServerIdentity: serverIdentityCheck(servers),
  };
  return {
    ...(auth.user !== undefined ? { user: auth.user, pass: auth.password } : {}),
    ...(auth.token !== undefined ? { token: auth.token } : {}),
    ...(auth.credsFile !== undefined ? { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) } : {}),
    ...(auth.nkeySeedFile !== undefined ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(auth.nkeySeedFile, 'utf8').trim())) } : {}),
    ...(tls ? { tls: tlsOptions } : {}),
  };
}

/**
 * nats.js dials a server given by IP address without a TLS server name, so Node checks the server's
 * certificate against "localhost" and refuses one issued for the address (subjectAltName IP:...).
 * In that case the certificate is checked against the IP addresses of the configured servers instead.
 */
function serverIdentityCheck(servers: string[]): (host: string, cert: PeerCertificate) => Error | undefined {
  const ips = servers
    .map((url) => {
      try {
        return new URL(url.includes('://') ? url : `nats://${url}`).hostname.replace(/^\[|\]$/g, '');
      } catch {
        return '';
      }
    })
    .filter((host) => isIP(host) !== 0);
  return (host, cert) => {
    if (host === 'localhost') for (const ip of ips) if (checkServerIdentity(ip, cert) === undefined) return undefined;
    return checkServerIdentity(host, cert);
  };
}

/** One attempt at every server, only to learn why connecting fails: the retrying client does not say. */
async function connectError(options: ConnectionOptions): Promise<string | undefined> {
  try {
    const probe = await connect({ ...options, name: `${options.name ?? 'sessrep'}-probe`, waitOnFirstConnect: false, reconnect: false, maxReconnectAttempts: 0, timeout: 3000 });
    await probe.close();
    return undefined;
  } catch (error) {
    return (error instanceof Error ? error.message || error.name : String(error)).trim();
  }
}

/**
 * Connects to NATS, retrying forever with the client's backoff; while it waits it logs why connecting
 * fails (refused, TLS, certificate). A server that refuses the credentials ends the wait with that error.
 */
export async function connectNats(servers: string[], name: string, logger: Logger, auth: NatsAuthConfig = {}): Promise<NatsChannel> {
  logger.info({ servers }, 'connecting to NATS');
  const started = Date.now();
  const options: ConnectionOptions = {
    servers,
    name,
    ...NODE_CONNECTION_DEFAULTS,
    ...natsAuthOptions(auth, servers),
  };
  let waitingFor = true;
  let probing = false;
  const waiting = setInterval(() => {
    if (probing) return;
    probing = true;
    void connectError(options).then((error) => {
      probing = false;
      if (waitingFor) logger.warn({ servers, waitedMs: Date.now() - started, ...(error !== undefined ? { error } : {}) }, 'NATS unreachable, still retrying');
    });
  }, 5000);
  const connection = await connect(options)
    .catch((error: unknown) => {
      logger.error({ servers, error: error instanceof Error ? error.message : String(error) }, 'NATS refused the connection');
      throw error;
    })
    .finally(() => {
      waitingFor = false;
      clearInterval(waiting);
    });
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
    sweepIntervalMs: config.sweepEveryMs,
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
