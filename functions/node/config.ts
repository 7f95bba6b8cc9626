/** Command-line and environment configuration of a node: every flag has an environment variable. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import type { LogLevel } from '../../lib/index.ts';
import { checkClusterKeys, parseClusterKeys, type ClusterKeyConfig } from '../../lib/codec/protection.ts';

/** A configuration problem: the CLI prints the message as one line and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Settings of `session-replication serve`. */
export interface ServeConfig {
  cluster: string;
  node: string;
  port: number;
  host: string;
  /** The HTTP base URL other members' dashboards use for this node; default http://HOST:PORT. */
  advertiseUrl?: string;
  /** NATS server URLs; empty means the in-process channel. */
  nats: string[];
  manager: 'delta' | 'backup';
  send: 'async' | 'ack' | 'persist';
  maxInactive: number;
  logLevel: LogLevel;
  /** Keep a replication log in JetStream (on with a DynamoDB table or send mode persist). */
  jetstream: boolean;
  /** DynamoDB table for snapshots; undefined: peer state transfer only. */
  dynamodbTable?: string;
  /** DynamoDB endpoint (DynamoDB Local, LocalStack); undefined: AWS. */
  dynamodbEndpoint?: string;
  awsRegion: string;
  /** Cluster keys (newest first); empty: messages are neither signed nor encrypted. */
  clusterKeys: ClusterKeyConfig[];
  protection: 'encrypt' | 'sign';
  /** How the node authenticates to NATS and verifies it. */
  natsAuth: NatsAuthConfig;
  /** The token guarding the admin routes; undefined: only the probes are served. */
  adminToken?: string;
}

/** NATS credentials and TLS files (all optional; combine as the server requires). */
export interface NatsAuthConfig {
  user?: string;
  password?: string;
  token?: string;
  /** File holding an NKey seed (`SU...`). */
  nkeySeedFile?: string;
  /** A `.creds` file (JWT plus NKey seed) from `nsc`. */
  credsFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

/** Flags of `serve`: name, environment variable, help text. */
export const SERVE_FLAGS = {
  cluster: { env: 'SESSREP_CLUSTER', help: 'cluster name: nodes with the same name share sessions', fallback: 'demo' },
  node: { env: 'SESSREP_NODE', help: 'this node id, also the cookie route (default: random)', fallback: undefined },
  port: { env: 'PORT', help: 'HTTP port', fallback: '8080' },
  host: { env: 'HOST', help: 'HTTP bind address', fallback: '127.0.0.1' },
  'advertise-url': { env: 'SESSREP_ADVERTISE_URL', help: "this node's HTTP base URL as other members' dashboards reach it (default http://HOST:PORT)", fallback: undefined },
  nats: { env: 'NATS_URL', help: 'NATS server URL(s), comma-separated (default: in-process channel)', fallback: undefined },
  manager: { env: 'SESSREP_MANAGER', help: 'replication strategy: delta (all-to-all) or backup (primary/backup)', fallback: 'delta' },
  send: { env: 'SESSREP_SEND', help: 'send mode: async (respond at once), ack (when every member applied), persist (when JetStream stored it)', fallback: 'async' },
  'max-inactive': { env: 'SESSREP_MAX_INACTIVE', help: 'session timeout in seconds (<= 0: never)', fallback: '1800' },
  'log-level': { env: 'LOG_LEVEL', help: 'debug, info, warn, error or silent', fallback: 'info' },
  jetstream: { env: 'SESSREP_JETSTREAM', help: 'keep a replication log in JetStream: true or false (true with a DynamoDB table or --send persist)', fallback: 'false' },
  'dynamodb-table': { env: 'SESSREP_DYNAMODB_TABLE', help: 'DynamoDB table for session snapshots (joining nodes load it instead of asking a peer)', fallback: undefined },
  'dynamodb-endpoint': { env: 'DYNAMODB_ENDPOINT', help: 'DynamoDB endpoint URL, e.g. DynamoDB Local or LocalStack (default: AWS)', fallback: undefined },
  'aws-region': { env: 'AWS_REGION', help: 'AWS region of the DynamoDB table', fallback: 'us-east-1' },
  'cluster-key': { env: 'SESSREP_CLUSTER_KEY', help: 'cluster key(s) "id:base64,id:base64" (256 bits each, newest first): authenticates every message', fallback: undefined },
  'cluster-key-file': { env: 'SESSREP_CLUSTER_KEY_FILE', help: 'file with one "id:base64" key per line, newest first', fallback: undefined },
  'nats-user': { env: 'NATS_USER', help: 'NATS user name (with --nats-password)', fallback: undefined },
  'nats-password': { env: 'NATS_PASSWORD', help: 'NATS password', fallback: undefined },
  'nats-token': { env: 'NATS_TOKEN', help: 'NATS authentication token', fallback: undefined },
  'nats-nkey-seed-file': { env: 'NATS_NKEY_SEED_FILE', help: 'file with the NKey seed (SU...) to authenticate with', fallback: undefined },
  'nats-creds': { env: 'NATS_CREDS', help: 'NATS credentials file (JWT + NKey seed)', fallback: undefined },
  'nats-tls-ca': { env: 'NATS_TLS_CA', help: 'CA certificate file that signed the NATS server certificate (turns on TLS)', fallback: undefined },
  'nats-tls-cert': { env: 'NATS_TLS_CERT', help: 'client certificate file for NATS TLS (with --nats-tls-key)', fallback: undefined },
  'nats-tls-key': { env: 'NATS_TLS_KEY', help: 'client key file for NATS TLS', fallback: undefined },
  protection: { env: 'SESSREP_PROTECTION', help: 'with cluster keys: encrypt (AES-256-GCM) or sign (HMAC-SHA256)', fallback: 'encrypt' },
  'admin-token': { env: 'SESSREP_ADMIN_TOKEN', help: 'token (16+ characters) for /cluster, drain, /cluster/ui and /metrics: Bearer, or the Basic-auth password; prefer the env var (default: those routes are off)', fallback: undefined },
} as const;

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'];

/** Parses `args` with `parseArgs`, turning its errors into one-line `UsageError`s. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]!);
  }
}

/** Reads `serve` settings from flags, then environment, then defaults; throws `UsageError` on a bad value. */
export function readServeConfig(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): ServeConfig {
  const pick = (name: keyof typeof SERVE_FLAGS): string | undefined => {
    const flag = values[name];
    if (typeof flag === 'string') return flag;
    const fromEnv = env[SERVE_FLAGS[name].env];
    return fromEnv !== undefined && fromEnv !== '' ? fromEnv : SERVE_FLAGS[name].fallback;
  };
  const token = (name: 'cluster' | 'node', value: string) => {
    if (!TOKEN.test(value)) throw new UsageError(`--${name} must be 1-64 characters of A-Z a-z 0-9 _ -, got "${value}"`);
    return value;
  };
  const integer = (name: keyof typeof SERVE_FLAGS, min: number, max: number) => {
    const raw = pick(name) ?? '';
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || value < min || value > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
    return value;
  };
  const oneOf = <V extends string>(name: keyof typeof SERVE_FLAGS, allowed: readonly V[]): V => {
    const value = pick(name) ?? '';
    if (!allowed.includes(value as V)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got "${value}"`);
    return value as V;
  };
  const nats = (pick('nats') ?? '')
    .split(',')
    .map((url) => url.trim())
    .filter(Boolean);
  const dynamodbTable = pick('dynamodb-table');
  if (dynamodbTable !== undefined && !/^[A-Za-z0-9_.-]{3,255}$/.test(dynamodbTable)) throw new UsageError(`--dynamodb-table must be 3-255 characters of A-Z a-z 0-9 _ . -, got "${dynamodbTable}"`);
  const adminToken = pick('admin-token');
  if (adminToken !== undefined && adminToken.length < 16) throw new UsageError('--admin-token must be at least 16 characters');
  const advertiseUrl = pick('advertise-url');
  if (advertiseUrl !== undefined && !/^https?:\/\/\S+$/.test(advertiseUrl)) throw new UsageError(`--advertise-url must be an http(s) URL, got "${advertiseUrl}"`);
  const dynamodbEndpoint = pick('dynamodb-endpoint');
  if (dynamodbEndpoint !== undefined && !/^https?:\/\/\S+$/.test(dynamodbEndpoint)) throw new UsageError(`--dynamodb-endpoint must be an http(s) URL, got "${dynamodbEndpoint}"`);
  for (const url of nats) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s]+$|^[\w.-]+:\d+$/.test(url)) throw new UsageError(`--nats must be URLs like nats://host:4222, got "${url}"`);
  }
  const config: ServeConfig = {
    cluster: token('cluster', pick('cluster')!),
    node: token('node', pick('node') ?? crypto.randomUUID().slice(0, 8)),
    port: integer('port', 0, 65535),
    host: pick('host')!,
    ...(advertiseUrl !== undefined ? { advertiseUrl: advertiseUrl.replace(/\/+$/, '') } : {}),
    nats,
    manager: oneOf('manager', ['delta', 'backup'] as const),
    send: oneOf('send', ['async', 'ack', 'persist'] as const),
    maxInactive: integer('max-inactive', -1, 10 * 365 * 24 * 3600),
    logLevel: oneOf('log-level', LOG_LEVELS as LogLevel[]),
    jetstream: oneOf('jetstream', ['true', 'false'] as const) === 'true' || dynamodbTable !== undefined || pick('send') === 'persist',
    ...(dynamodbTable !== undefined ? { dynamodbTable } : {}),
    ...(dynamodbEndpoint !== undefined ? { dynamodbEndpoint } : {}),
    awsRegion: pick('aws-region')!,
    clusterKeys: readClusterKeys(pick('cluster-key'), pick('cluster-key-file')),
    protection: oneOf('protection', ['encrypt', 'sign'] as const),
    natsAuth: readNatsAuth(pick),
    ...(adminToken !== undefined ? { adminToken } : {}),
  };
  if (config.jetstream && config.nats.length === 0) throw new UsageError('--jetstream, --dynamodb-table and --send persist need --nats (a NATS server with JetStream)');
  if (config.jetstream && config.manager !== 'delta') throw new UsageError('--jetstream, --dynamodb-table and --send persist work with --manager delta only');
  return config;
}

/** NATS authentication and TLS settings; files must be readable and pairs complete. */
function readNatsAuth(pick: (name: keyof typeof SERVE_FLAGS) => string | undefined): NatsAuthConfig {
  const auth: NatsAuthConfig = {};
  const set = (field: keyof NatsAuthConfig, flag: keyof typeof SERVE_FLAGS, isFile: boolean) => {
    const value = pick(flag);
    if (value === undefined) return;
    if (isFile && !existsSync(value)) throw new UsageError(`--${flag}: no such file ${value}`);
    auth[field] = value;
  };
  set('user', 'nats-user', false);
  set('password', 'nats-password', false);
  set('token', 'nats-token', false);
  set('nkeySeedFile', 'nats-nkey-seed-file', true);
  set('credsFile', 'nats-creds', true);
  set('tlsCaFile', 'nats-tls-ca', true);
  set('tlsCertFile', 'nats-tls-cert', true);
  set('tlsKeyFile', 'nats-tls-key', true);
  if ((auth.user === undefined) !== (auth.password === undefined)) throw new UsageError('--nats-user and --nats-password go together');
  if ((auth.tlsCertFile === undefined) !== (auth.tlsKeyFile === undefined)) throw new UsageError('--nats-tls-cert and --nats-tls-key go together');
  return auth;
}

/** Cluster keys from the flag and/or the key file, validated; a problem is a `UsageError`. */
function readClusterKeys(inline: string | undefined, file: string | undefined): ClusterKeyConfig[] {
  let text = inline ?? '';
  if (file !== undefined) {
    try {
      text += `\n${readFileSync(file, 'utf8')}`;
    } catch (error) {
      throw new UsageError(`--cluster-key-file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  const keys = parseClusterKeys(text.split('\n').filter((line) => !line.trim().startsWith('#')).join(','));
  if (keys.length === 0) return [];
  try {
    checkClusterKeys(keys);
  } catch (error) {
    throw new UsageError(`--cluster-key: ${(error as Error).message}`);
  }
  return keys;
}

/** The `parseArgs` option table of `serve`. */
export function serveOptions() {
  return Object.fromEntries(Object.keys(SERVE_FLAGS).map((name) => [name, { type: 'string' as const }])) as Record<keyof typeof SERVE_FLAGS, { type: 'string' }>;
}

/** Help text for a flag table. */
export function flagHelp(flags: Record<string, { env: string; help: string; fallback: string | undefined }>): string {
  return Object.entries(flags)
    .map(([name, f]) => `  --${name.padEnd(14)} ${f.help}\n  ${''.padEnd(16)} env ${f.env}${f.fallback !== undefined ? `, default ${f.fallback}` : ''}`)
    .join('\n');
}
