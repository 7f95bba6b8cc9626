/**
 * The one configuration reader of the repo's entry points (Node CLI, Lambda, edge): every setting
 * with its environment variable, CLI flag, help text and default in one table, one zod schema that
 * validates them, and the few per-runtime differences stated beside the table. Web-standard only:
 * edge runtimes import it, so reading files (key files, TLS files) stays in the Node entry.
 *
 *   const config = readConfig('edge', env);               // environment variables
 *   const config = parseConfig('node', raw, nameOf);      // values a CLI parser already collected
 */
import { z } from 'zod';
import { SessionReplicationError, type LogLevel } from '../../lib/index.ts';
import { checkClusterKeys, parseClusterKeys, type ClusterKeyConfig } from '../../lib/codec/protection.ts';
import { TOKEN_PATTERN } from '../../lib/session/ids.ts';

/** The runtimes with an entry point in `functions/`. */
export type Runtime = 'node' | 'lambda' | 'edge';

/** A setting is missing, malformed or contradicts another; the message names the variable (or flag). */
export class ConfigError extends SessionReplicationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options);
  }
}

/** How one setting is found and documented. */
export interface SettingSpec {
  /** The environment variable. */
  readonly env: string;
  /** Another variable read when `env` is unset (AWS_DEFAULT_REGION). */
  readonly envAlias?: string;
  /** The CLI flag, without `--`. */
  readonly flag: string;
  /** One line for `--help`. */
  readonly help: string;
  /** The default on every runtime that reads it (see `RUNTIME_DEFAULTS` for the exceptions). */
  readonly default?: string;
  /** The runtimes that read it. */
  readonly runtimes: readonly Runtime[];
  /** A secret: an error about it names the rule, never the value. @default false */
  readonly secret?: boolean;
}

const ALL: readonly Runtime[] = ['node', 'lambda', 'edge'];
const NODE: readonly Runtime[] = ['node'];
const NODE_LAMBDA: readonly Runtime[] = ['node', 'lambda'];
const LAMBDA: readonly Runtime[] = ['lambda'];
const NODE_EDGE: readonly Runtime[] = ['node', 'edge'];

/** Every setting of every runtime, in `--help` order. */
export const SETTINGS = {
  cluster: { env: 'SESSREP_CLUSTER', flag: 'cluster', help: 'cluster name: nodes with the same name share sessions', default: 'demo', runtimes: ALL },
  node: { env: 'SESSREP_NODE', flag: 'node', help: 'this node id, also the cookie route (default: random)', runtimes: ALL },
  port: { env: 'PORT', flag: 'port', help: 'HTTP port', default: '8080', runtimes: NODE },
  host: { env: 'HOST', flag: 'host', help: 'HTTP bind address', default: '127.0.0.1', runtimes: NODE },
  advertiseUrl: {
    env: 'SESSREP_ADVERTISE_URL',
    flag: 'advertise-url',
    help: "this node's HTTP base URL as other members' dashboards reach it (default http://HOST:PORT)",
    runtimes: NODE_EDGE,
  },
  nats: { env: 'NATS_URL', flag: 'nats', help: 'NATS server URL(s), comma-separated (default: in-process channel)', runtimes: ALL },
  manager: { env: 'SESSREP_MANAGER', flag: 'manager', help: 'replication strategy: delta (all-to-all) or backup (primary/backup)', default: 'delta', runtimes: ALL },
  send: {
    env: 'SESSREP_SEND',
    flag: 'send',
    help: 'send mode: async (respond at once), ack (when every member applied), persist (when JetStream stored it); default async (Lambda: persist with the JetStream log)',
    runtimes: ALL,
  },
  maxInactive: { env: 'SESSREP_MAX_INACTIVE', flag: 'max-inactive', help: 'session timeout in seconds (<= 0: never)', default: '1800', runtimes: ALL },
  trustProxy: {
    env: 'SESSREP_TRUST_PROXY',
    flag: 'trust-proxy',
    help: 'true behind a TLS-terminating proxy that sets X-Forwarded-Proto: the session cookie is Secure when the client used https',
    default: 'false',
    runtimes: ALL,
  },
  logLevel: { env: 'LOG_LEVEL', flag: 'log-level', help: 'debug, info, warn, error or silent', default: 'info', runtimes: ALL },
  jetstream: {
    env: 'SESSREP_JETSTREAM',
    flag: 'jetstream',
    help: 'keep a replication log in JetStream: true or false (default true with a DynamoDB table or send mode persist; Lambda: with the delta manager)',
    runtimes: ALL,
  },
  dynamodbTable: {
    env: 'SESSREP_DYNAMODB_TABLE',
    flag: 'dynamodb-table',
    help: 'DynamoDB table for session snapshots (joining nodes load it instead of asking a peer)',
    runtimes: NODE_LAMBDA,
  },
  dynamodbEndpoint: {
    env: 'DYNAMODB_ENDPOINT',
    flag: 'dynamodb-endpoint',
    help: 'DynamoDB endpoint URL, e.g. DynamoDB Local or LocalStack (default: AWS)',
    runtimes: NODE_LAMBDA,
  },
  awsRegion: { env: 'AWS_REGION', envAlias: 'AWS_DEFAULT_REGION', flag: 'aws-region', help: 'AWS region of the DynamoDB table', default: 'us-east-1', runtimes: NODE_LAMBDA },
  clusterKey: {
    env: 'SESSREP_CLUSTER_KEY',
    flag: 'cluster-key',
    help: 'cluster key(s) "id:base64,id:base64" (256 bits each, newest first): authenticates every message',
    runtimes: ALL,
  },
  clusterKeyFile: { env: 'SESSREP_CLUSTER_KEY_FILE', flag: 'cluster-key-file', help: 'file with one "id:base64" key per line, newest first', runtimes: NODE },
  protection: { env: 'SESSREP_PROTECTION', flag: 'protection', help: 'with cluster keys: encrypt (AES-256-GCM) or sign (HMAC-SHA256)', default: 'encrypt', runtimes: ALL },
  natsUser: { env: 'NATS_USER', flag: 'nats-user', help: 'NATS user name (with --nats-password)', runtimes: NODE_EDGE },
  natsPassword: { env: 'NATS_PASSWORD', flag: 'nats-password', help: 'NATS password', runtimes: NODE_EDGE },
  natsToken: { env: 'NATS_TOKEN', flag: 'nats-token', help: 'NATS authentication token', runtimes: NODE_EDGE },
  natsNkeySeedFile: { env: 'NATS_NKEY_SEED_FILE', flag: 'nats-nkey-seed-file', help: 'file with the NKey seed (SU...) to authenticate with', runtimes: NODE },
  natsCreds: { env: 'NATS_CREDS', flag: 'nats-creds', help: 'NATS credentials file (JWT + NKey seed)', runtimes: NODE },
  natsTlsCa: { env: 'NATS_TLS_CA', flag: 'nats-tls-ca', help: 'CA certificate file that signed the NATS server certificate (turns on TLS)', runtimes: NODE },
  natsTlsCert: { env: 'NATS_TLS_CERT', flag: 'nats-tls-cert', help: 'client certificate file for NATS TLS (with --nats-tls-key)', runtimes: NODE },
  natsTlsKey: { env: 'NATS_TLS_KEY', flag: 'nats-tls-key', help: 'client key file for NATS TLS', runtimes: NODE },
  natsSecret: { env: 'SESSREP_NATS_SECRET', flag: 'nats-secret', help: 'Secrets Manager secret id or ARN holding the NATS settings', runtimes: LAMBDA },
  natsParameter: { env: 'SESSREP_NATS_PARAMETER', flag: 'nats-parameter', help: 'SSM SecureString parameter holding the NATS settings', runtimes: LAMBDA },
  catchUpTimeoutMs: {
    env: 'SESSREP_CATCHUP_TIMEOUT_MS',
    flag: 'catchup-timeout-ms',
    help: 'how long a request waits for the log catch-up after a thaw',
    default: '2000',
    runtimes: LAMBDA,
  },
  catchUpFail: {
    env: 'SESSREP_CATCHUP_FAIL',
    flag: 'catchup-fail',
    help: 'when the catch-up times out: reject (503 + Retry-After) or serve (from the possibly stale copy)',
    default: 'reject',
    runtimes: LAMBDA,
  },
  sweepEveryMs: { env: 'SESSREP_SWEEP_INTERVAL_MS', flag: 'sweep-interval-ms', help: 'time between expiry sweeps (Lambda: the minimum, swept on a request)', default: '10000', runtimes: NODE_LAMBDA },
  adminToken: {
    env: 'SESSREP_ADMIN_TOKEN',
    flag: 'admin-token',
    help: 'token (16+ characters) for /cluster, drain, /cluster/ui and /metrics: Bearer, or the Basic-auth password; prefer the env var (default: those routes are off)',
    runtimes: ALL,
    secret: true,
  },
} as const satisfies Record<string, SettingSpec>;

/** The name of a setting (a key of `SETTINGS`). */
export type SettingName = keyof typeof SETTINGS;

/** Raw text values by setting name, before validation (what a CLI parser or the environment gave). */
export type RawSettings = Partial<Record<SettingName, string>>;

/**
 * The per-runtime differences, beside the table: defaults that differ from `SETTINGS[...].default`.
 * Lambda logs at `warn` (one line per request would cost more than the request).
 */
export const RUNTIME_DEFAULTS: Record<Runtime, RawSettings> = {
  node: {},
  edge: {},
  lambda: { logLevel: 'warn' },
};

/** Settings every runtime reads, validated. */
export interface CommonConfig {
  cluster: string;
  /** NATS server URLs; empty: the in-process channel (Node), the secret's servers (Lambda). */
  nats: string[];
  manager: 'delta' | 'backup';
  send: 'async' | 'ack' | 'persist';
  /** Session timeout in seconds; <= 0: never. */
  maxInactive: number;
  /** Believe X-Forwarded-Proto when deciding whether the session cookie is Secure. */
  trustProxy: boolean;
  logLevel: LogLevel;
  /** Keep the replication log in JetStream. */
  jetstream: boolean;
  /** Cluster keys, newest first; empty: messages are neither signed nor encrypted. */
  clusterKeys: ClusterKeyConfig[];
  protection: 'encrypt' | 'sign';
  /** Guards the admin routes; undefined: only the probes `/healthz` and `/readyz` are served. */
  adminToken?: string;
}

/** What `readConfig('node', ...)` returns: file settings are paths the Node entry reads. */
export interface NodeEnvConfig extends CommonConfig {
  node: string;
  port: number;
  host: string;
  advertiseUrl?: string;
  dynamodbTable?: string;
  dynamodbEndpoint?: string;
  awsRegion: string;
  clusterKeyFile?: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsNkeySeedFile?: string;
  natsCreds?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
  /** Expiry sweep period in ms. */
  sweepEveryMs: number;
}

/** What `readConfig('edge', ...)` returns. */
export interface EdgeEnvConfig extends CommonConfig {
  /** Default: the cluster picks a random id. */
  node?: string;
  advertiseUrl?: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
}

/** What `readConfig('lambda', ...)` returns. */
export interface LambdaEnvConfig extends CommonConfig {
  /** Default: `lam-` and 8 random characters, one per execution environment. */
  node: string;
  dynamodbTable?: string;
  dynamodbEndpoint?: string;
  awsRegion: string;
  natsSecret?: string;
  natsParameter?: string;
  catchUpTimeoutMs: number;
  catchUpFail: 'reject' | 'serve';
  sweepEveryMs: number;
}

/** The validated configuration of each runtime. */
export interface RuntimeConfig {
  node: NodeEnvConfig;
  edge: EdgeEnvConfig;
  lambda: LambdaEnvConfig;
}

const MAX_INACTIVE_SECONDS = 10 * 365 * 24 * 3600;
const HTTP_URL = /^https?:\/\/\S+$/;
/** NATS URLs per runtime: edge runtimes reach NATS over WebSocket only. */
const NATS_URL: Record<Runtime, { pattern: RegExp; message: string }> = {
  node: { pattern: /^(nats|tls|ws|wss):\/\/\S+$|^[\w.-]+:\d+$/, message: 'must be URLs like nats://host:4222' },
  lambda: { pattern: /^(nats|tls|ws|wss):\/\/\S+$|^[\w.-]+:\d+$/, message: 'must be URLs like nats://host:4222' },
  edge: { pattern: /^wss?:\/\/\S+$/, message: 'must be ws:// or wss:// URLs on an edge runtime' },
};

const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, { error: max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}` })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be an integer >= ${min}` }).max(max, { error: `must be an integer from ${min} to ${max}` }));
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `must be one of ${values.join(', ')}` });
const token = z.string().regex(TOKEN_PATTERN, { error: 'must be 1-64 characters of A-Z a-z 0-9 _ -' });
const httpUrl = z
  .string()
  .regex(HTTP_URL, { error: 'must be an http(s) URL' })
  .transform((url) => url.replace(/\/+$/, ''));
const text = z.string();

/** The schema of one runtime: a field for each setting it reads. */
function schemaFor(runtime: Runtime) {
  const nats = NATS_URL[runtime];
  const fields = {
    cluster: token,
    node: token,
    port: integer(0, 65535),
    host: text,
    advertiseUrl: httpUrl,
    nats: z
      .string()
      .transform(splitList)
      .pipe(z.array(z.string().regex(nats.pattern, { error: nats.message }))),
    manager: oneOf(['delta', 'backup']),
    send: oneOf(['async', 'ack', 'persist']),
    maxInactive: integer(-1, MAX_INACTIVE_SECONDS),
    trustProxy: oneOf(['true', 'false']).transform((value) => value === 'true'),
    logLevel: oneOf(['debug', 'info', 'warn', 'error', 'silent']),
    jetstream: oneOf(['true', 'false']).transform((value) => value === 'true'),
    dynamodbTable: z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, { error: 'must be 3-255 characters of A-Z a-z 0-9 _ . -' }),
    dynamodbEndpoint: httpUrl,
    awsRegion: text,
    clusterKey: text,
    clusterKeyFile: text,
    protection: oneOf(['encrypt', 'sign']),
    natsUser: text,
    natsPassword: text,
    natsToken: text,
    natsNkeySeedFile: text,
    natsCreds: text,
    natsTlsCa: text,
    natsTlsCert: text,
    natsTlsKey: text,
    natsSecret: text,
    natsParameter: text,
    catchUpTimeoutMs: integer(1),
    catchUpFail: oneOf(['reject', 'serve']),
    sweepEveryMs: integer(1),
    adminToken: z.string().min(16, { error: 'must be at least 16 characters' }),
  } satisfies Record<SettingName, z.ZodType>;
  const shape = Object.fromEntries(
    (Object.keys(SETTINGS) as SettingName[]).filter((name) => settingsOf(runtime).includes(name)).map((name) => [name, fields[name].optional()]),
  );
  return z.object(shape);
}

/** The settings `runtime` reads, in table order. */
export function settingsOf(runtime: Runtime): SettingName[] {
  return (Object.keys(SETTINGS) as SettingName[]).filter((name) => (SETTINGS[name].runtimes as readonly Runtime[]).includes(runtime));
}

/** The default of `name` on `runtime` (the per-runtime override, else the table's), or undefined. */
export function defaultOf(runtime: Runtime, name: SettingName): string | undefined {
  const spec: SettingSpec = SETTINGS[name];
  return RUNTIME_DEFAULTS[runtime][name] ?? spec.default;
}

/**
 * Reads `runtime`'s settings from environment variables (blank counts as unset) and validates them.
 * Throws `ConfigError` naming the variable.
 */
export function readConfig<R extends Runtime>(runtime: R, env: Readonly<Record<string, string | undefined>>): RuntimeConfig[R] {
  const raw: RawSettings = {};
  for (const name of settingsOf(runtime)) {
    const spec: SettingSpec = SETTINGS[name];
    const value = present(env[spec.env]) ?? (spec.envAlias !== undefined ? present(env[spec.envAlias]) : undefined);
    if (value !== undefined) raw[name] = value;
  }
  return parseConfig(runtime, raw, (name) => SETTINGS[name].env);
}

/**
 * Validates raw values (a setting left out takes its default) and applies the cross-field rules.
 * `nameOf` says how errors name a setting: its variable by default, `--flag` for a CLI.
 */
export function parseConfig<R extends Runtime>(runtime: R, raw: RawSettings, nameOf: (name: SettingName) => string = (name) => SETTINGS[name].env): RuntimeConfig[R] {
  const values: RawSettings = {};
  for (const name of settingsOf(runtime)) {
    const value = raw[name] ?? defaultOf(runtime, name);
    if (value !== undefined) values[name] = value;
  }
  const parsed = schemaFor(runtime).safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = issue.path[0] as SettingName;
    const value = name === 'nats' && typeof issue.path[1] === 'number' ? splitList(values.nats ?? '')[issue.path[1]] : values[name];
    const spec: SettingSpec = SETTINGS[name];
    throw new ConfigError(`${nameOf(name)} ${issue.message}${spec.secret ? '' : `, got "${value}"`}`);
  }
  const { clusterKey: _keys, ...settings } = parsed.data as Record<string, unknown>;
  const config: Record<string, unknown> = { ...settings, ...resolveCommon(runtime, parsed.data as Record<string, unknown>, nameOf) };
  // Node ids by default: random per process (Node), per execution environment (Lambda); an edge node leaves it to the cluster.
  if (runtime === 'node') config.node ??= randomNodeId();
  if (runtime === 'lambda') config.node ??= randomNodeId('lam-');
  return withoutUndefined(config) as unknown as RuntimeConfig[R];
}

/** The settings whose defaults depend on others, the cluster keys, and the rules between settings. */
function resolveCommon(runtime: Runtime, settings: Record<string, unknown>, nameOf: (name: SettingName) => string): Pick<CommonConfig, 'jetstream' | 'send' | 'clusterKeys' | 'nats'> {
  const manager = settings.manager as CommonConfig['manager'];
  const nats = (settings.nats as string[] | undefined) ?? [];
  // Lambda keeps the log by default with the delta manager: a thawed instance catches up from it.
  const jetstreamDefault = runtime === 'lambda' ? manager === 'delta' : settings.send === 'persist' || settings.dynamodbTable !== undefined;
  const jetstream = (settings.jetstream as boolean | undefined) ?? jetstreamDefault;
  // With the log, Lambda answers once JetStream stored the change (a frozen instance may never send it later).
  const send = (settings.send as CommonConfig['send'] | undefined) ?? (runtime === 'lambda' && jetstream ? 'persist' : 'async');
  const rule = (broken: boolean, message: string) => {
    if (broken) throw new ConfigError(message);
  };
  rule(runtime === 'edge' && nats.length === 0, `${nameOf('nats')} is required: the NATS WebSocket URL(s), e.g. ws://127.0.0.1:8080`);
  rule(send === 'persist' && !jetstream, `${nameOf('send')}=persist needs ${nameOf('jetstream')}=true (the JetStream log)`);
  rule(settings.dynamodbTable !== undefined && !jetstream, `${nameOf('dynamodbTable')} needs the JetStream log (${nameOf('jetstream')}=true)`);
  rule(jetstream && manager !== 'delta', `${nameOf('jetstream')}, ${nameOf('dynamodbTable')} and ${nameOf('send')} persist work with ${nameOf('manager')} delta only`);
  rule(runtime === 'node' && jetstream && nats.length === 0, `${nameOf('jetstream')}, ${nameOf('dynamodbTable')} and ${nameOf('send')} persist need ${nameOf('nats')} (a NATS server with JetStream)`);
  rule(settings.natsSecret !== undefined && settings.natsParameter !== undefined, `set ${nameOf('natsSecret')} or ${nameOf('natsParameter')}, not both`);
  rule((settings.natsUser === undefined) !== (settings.natsPassword === undefined), `${nameOf('natsUser')} and ${nameOf('natsPassword')} go together`);
  rule((settings.natsTlsCert === undefined) !== (settings.natsTlsKey === undefined), `${nameOf('natsTlsCert')} and ${nameOf('natsTlsKey')} go together`);
  return { nats, jetstream, send, clusterKeys: clusterKeysOf(settings.clusterKey as string | undefined, nameOf('clusterKey')) };
}

/**
 * Parses and checks cluster keys from `id:base64` entries separated by commas, whitespace or lines
 * (lines starting with `#` are comments); a problem is a `ConfigError` naming `source`.
 */
export function clusterKeysOf(text: string | undefined, source: string): ClusterKeyConfig[] {
  if (text === undefined) return [];
  const keys = parseClusterKeys(
    text
      .split('\n')
      .filter((line) => !line.trim().startsWith('#'))
      .join(','),
  );
  try {
    if (keys.length > 0) checkClusterKeys(keys);
  } catch (error) {
    throw new ConfigError(`${source}: ${(error as Error).message}`, { cause: error });
  }
  return keys;
}

/** `prefix` and 8 random base-36 characters: a node id (and cookie route). */
export function randomNodeId(prefix = ''): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `${prefix}${[...bytes].map((b) => (b % 36).toString(36)).join('')}`;
}

function splitList(list: string): string[] {
  return list
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function present(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

function withoutUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));
}
