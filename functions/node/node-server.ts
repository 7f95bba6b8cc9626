/** Runs one cluster node on Node.js: NATS or in-process channel, the demo app on `adapters/node`, pino logs. */
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type TlsOptions,
} from '@nats-io/transport-node';
import pino from 'pino';
import { createCluster, MemoryChannel, type Channel, type Logger, type MemoryBus } from 'session-replication';
import { processMetrics, serveNode, type NodeServer } from 'session-replication/node';
import { NatsChannel, NODE_CONNECTION_DEFAULTS } from 'session-replication/nats';
import { jetStreamLogFor } from 'session-replication/jetstream';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { hostname } from 'node:os';
import { createDemoApp } from '../demo-app.ts';
import type { NatsAuthConfig, ServeConfig } from './config.ts';
import { loadDynamoDB } from './dynamodb.ts';

/** A pino logger at `level` writing JSON lines to stdout. */
export function createLogger(level: ServeConfig['logLevel']): Logger {
  return pino({ level, base: undefined }) as unknown as Logger;
}

/** Connection options for the configured NATS credentials and TLS files (TLS also for `tls://` server URLs). */
export function natsAuthOptions(auth: NatsAuthConfig, servers: string[] = []): Partial<ConnectionOptions> {
  const tls =
    auth.tlsCaFile !== undefined || auth.tlsCertFile !== undefined || servers.some((url) => url.startsWith('tls://'));
  const tlsOptions: TlsOptions & { checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined } = {
    ...(auth.tlsCaFile !== undefined ? { caFile: auth.tlsCaFile } : {}),
    ...(auth.tlsCertFile !== undefined && auth.tlsKeyFile !== undefined
      ? { certFile: auth.tlsCertFile, keyFile: auth.tlsKeyFile }
      : {}),
    checkServerIdentity: serverIdentityCheck(servers),
  };
  return {
    ...(auth.user !== undefined ? { user: auth.user, pass: auth.password } : {}),
    ...(auth.token !== undefined ? { token: auth.token } : {}),
    ...(auth.credsFile !== undefined ? { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) } : {}),
    ...(auth.nkeySeedFile !== undefined
      ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(auth.nkeySeedFile, 'utf8').trim())) }
      : {}),
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
    const probe = await connect({
      ...options,
      name: `${options.name ?? 'sessrep'}-probe`,
      waitOnFirstConnect: false,
      reconnect: false,
      maxReconnectAttempts: 0,
      timeout: 3000,
    });
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
export async function connectNats(
  servers: string[],
  name: string,
  logger: Logger,
  auth: NatsAuthConfig = {},
): Promise<NatsChannel> {
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
      if (waitingFor)
        logger.warn(
          { servers, waitedMs: Date.now() - started, ...(error !== undefined ? { error } : {}) },
          'NATS unreachable, still retrying',
        );
    });
  }, 5000);
  const connection = await connect(options)
    .catch((error: unknown) => {
      logger.error(
        { servers, error: error instanceof Error ? error.message : String(error) },
        'NATS refused the connection',
      );
      throw error;
    })
    .finally(() => {
      waitingFor = false;
      clearInterval(waiting);
    });
  logger.info({ server: connection.getServer() }, 'connected to NATS');
  return new NatsChannel(connection);
}

/** Options of {@link startNode} besides the configuration. */
export interface StartNodeOptions {
  /** Use this in-process bus instead of NATS (the local cluster without nats-server). */
  readonly bus?: MemoryBus;
  /** Leave gracefully and exit on SIGTERM/SIGINT (the `serve` command); default: the caller closes the node. */
  readonly handleSignals?: boolean;
}

/**
 * Starts a node on `adapters/node`: the HTTP server first (every request answers 503 while NATS is
 * unreachable), then the cluster, serving the demo app with the admin routes (guarded by the admin
 * token; without one, only the probes). Resolves once the node has joined.
 */
export async function startNode(
  config: ServeConfig,
  logger: Logger,
  options: StartNodeOptions = {},
): Promise<NodeServer> {
  const { bus, handleSignals = false } = options;
  // This shell opens the channel (and its NATS connection), so it closes it once the node has left.
  let channel: Channel | undefined;
  const server = await serveNode(
    (node) =>
      createDemoApp(node, {
        session: { trustProxy: config.trustProxy },
        ...(config.adminToken !== undefined || config.adminOpen
          ? {
              admin: {
                ...(config.adminToken !== undefined ? { token: config.adminToken } : { authorize: () => true }),
                extraMetrics: processMetrics({ cluster: node.cluster, node: node.node }),
              },
            }
          : {}),
      }),
    {
      port: config.port,
      hostname: config.host,
      shutdownSignals: handleSignals ? ['SIGTERM', 'SIGINT'] : false,
      beforeClose: (_node, reason) => {
        if (reason.startsWith('SIG')) process.stderr.write(`session-replication: ${reason}, leaving the cluster\n`);
      },
      cluster: async ({ port }) => {
        const nats =
          config.nats.length > 0
            ? await connectNats(config.nats, `sessrep-${config.cluster}-${config.node}`, logger, config.natsAuth)
            : undefined;
        channel = nats ?? new MemoryChannel(bus);
        const log = nats && config.jetstream ? jetStreamLogFor(nats.connection, config.cluster) : undefined;
        const dynamodb = config.dynamodbTable !== undefined ? await loadDynamoDB() : undefined;
        const store =
          dynamodb && config.dynamodbTable !== undefined
            ? new dynamodb.DynamoSnapshotStore({
                client: dynamodb.createClient(config),
                table: config.dynamodbTable,
                cluster: config.cluster,
              })
            : undefined;
        return createCluster({
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
          readYourWritesWaitMs: config.rywWaitMs,
          advertiseUrl: config.advertiseUrl ?? defaultAdvertiseUrl(config.host, port),
          logger,
        });
      },
    },
  );
  logger.info({ url: `http://${config.host}:${server.port}` }, 'listening');
  if (config.adminToken === undefined && config.adminOpen)
    logger.warn(
      {},
      'admin routes open without a token (SESSREP_ADMIN_OPEN): anyone who reaches this port can read /cluster and drain the node',
    );
  else if (config.adminToken === undefined)
    logger.warn(
      {},
      'no admin token (SESSREP_ADMIN_TOKEN): /cluster, drain, the dashboard and /metrics are off; /healthz and /readyz stay open',
    );
  await server.ready;
  return {
    port: server.port,
    ...(server.adminPort !== undefined ? { adminPort: server.adminPort } : {}),
    ready: server.ready,
    get node() {
      return server.node;
    },
    async close(reason) {
      await server.close(reason);
      await channel?.close();
    },
  };
}

/** http://HOST:PORT; a wildcard bind address advertises the machine's host name instead. */
export function defaultAdvertiseUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host;
  return `http://${name.includes(':') ? `[${name}]` : name}:${port}`;
}
