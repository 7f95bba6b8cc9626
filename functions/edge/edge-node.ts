/**
 * The demo app's edge node settings: read from environment variables and turned into the options of
 * the Deno and Bun adapters (`session-replication/deno`, `session-replication/bun`), which do the
 * work. Runtime-neutral: no runtime global here; the entries (deno.ts, bun.ts, worker.ts) read the
 * environment and call the adapters.
 */
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { consoleLogger, type LogLevel, type ReplicatedSessions } from 'session-replication';
import { NODE_CONNECTION_DEFAULTS } from 'session-replication/nats';
import type { EdgeMemberOptions, FetchHandler } from 'session-replication/deno';
import { jetStreamLogFor } from 'session-replication/jetstream';
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

/** Connection options for `wsconnect`: the node connection policy, the URLs and the credentials. */
export function wsConnectionOptions(config: EdgeConfig, name?: string): ConnectionOptions {
  return {
    servers: config.nats,
    ...(name !== undefined ? { name } : {}),
    ...NODE_CONNECTION_DEFAULTS,
    ...(config.natsUser !== undefined ? { user: config.natsUser, pass: config.natsPassword ?? '' } : {}),
    ...(config.natsToken !== undefined ? { token: config.natsToken } : {}),
  };
}

/** The member node options of the Deno and Bun adapters for `config`. */
export function edgeMemberOptions(config: EdgeConfig): EdgeMemberOptions {
  return {
    nats: wsConnectionOptions(config),
    cluster: {
      cluster: config.cluster,
      ...(config.node !== undefined ? { node: config.node } : {}),
      manager: config.manager,
      sendMode: config.send,
      maxInactiveSeconds: config.maxInactive,
      ...(config.clusterKeys.length > 0 ? { clusterKeys: config.clusterKeys, protection: config.protection } : {}),
      ...(config.advertiseUrl !== undefined ? { advertiseUrl: config.advertiseUrl } : {}),
      logger: consoleLogger(config.logLevel),
    },
    ...(config.jetstream ? { log: (connection: NatsConnection) => jetStreamLogFor(connection, config.cluster) } : {}),
  };
}

/** The demo app as a member app: built on the running node, with the dashboard page when given. */
export function demoMemberApp(dashboardHtml?: string): (node: ReplicatedSessions) => FetchHandler {
  return (node) => createDemoApp(node, dashboardHtml !== undefined ? { dashboardHtml } : {});
}
