/**
 * The one configuration reader of the repo's entry points (Node CLI, Lambda, edge): one zod schema
 * that validates the settings of the one table (settings.ts: environment variable, CLI flag, help
 * text, default and per-runtime differences of each), and the rules between them. Web-standard only:
 * edge runtimes import it, so reading files (key files, TLS files) stays in the Node entry.
 *
 *   const config = readConfig('edge', env);               // environment variables
 *   const config = parseConfig('node', raw, nameOf);      // values a CLI parser already collected
 */
import { z } from 'zod';
import {
  checkClusterKeys,
  type ClusterKeyConfig,
  type LogLevel,
  parseClusterKeys,
  SessionReplicationError,
  TOKEN_PATTERN,
} from 'session-replication';
import {
  type RawSettings,
  RUNTIME_DEFAULTS,
  type Runtime,
  SETTINGS,
  type SettingName,
  type SettingSpec,
} from './settings.ts';

// The settings table, for readers of the configuration (the CLI's flags, the docs).
export * from './settings.ts';

/** A setting is missing, malformed or contradicts another; the message names the variable (or flag). */
export class ConfigError extends SessionReplicationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options);
  }
}

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
  /** Serve the admin routes without a guard when no `adminToken` is set (a port nobody else reaches). */
  adminOpen: boolean;
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
  /** Read-your-writes wait in ms (0: off). */
  rywWaitMs: number;
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
    .regex(/^-?\d+$/, {
      error:
        max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`,
    })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `must be an integer >= ${min}` })
        .max(max, { error: `must be an integer from ${min} to ${max}` }),
    );
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });
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
    dynamodbTable: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{3,255}$/, { error: 'must be 3-255 characters of A-Z a-z 0-9 _ . -' }),
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
    rywWaitMs: integer(0),
    sweepEveryMs: integer(1),
    adminToken: z.string().min(16, { error: 'must be at least 16 characters' }),
    adminOpen: oneOf(['true', 'false']).transform((value) => value === 'true'),
  } satisfies Record<SettingName, z.ZodType>;
  const shape = Object.fromEntries(
    (Object.keys(SETTINGS) as SettingName[])
      .filter((name) => settingsOf(runtime).includes(name))
      .map((name) => [name, fields[name].optional()]),
  );
  return z.object(shape);
}

/** The settings `runtime` reads, in table order. */
export function settingsOf(runtime: Runtime): SettingName[] {
  return (Object.keys(SETTINGS) as SettingName[]).filter((name) =>
    (SETTINGS[name].runtimes as readonly Runtime[]).includes(runtime),
  );
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
export function readConfig<R extends Runtime>(
  runtime: R,
  env: Readonly<Record<string, string | undefined>>,
): RuntimeConfig[R] {
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
export function parseConfig<R extends Runtime>(
  runtime: R,
  raw: RawSettings,
  nameOf: (name: SettingName) => string = (name) => SETTINGS[name].env,
): RuntimeConfig[R] {
  const values: RawSettings = {};
  for (const name of settingsOf(runtime)) {
    const value = raw[name] ?? defaultOf(runtime, name);
    if (value !== undefined) values[name] = value;
  }
  const parsed = schemaFor(runtime).safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = issue.path[0] as SettingName;
    const value =
      name === 'nats' && typeof issue.path[1] === 'number' ? splitList(values.nats ?? '')[issue.path[1]] : values[name];
    const spec: SettingSpec = SETTINGS[name];
    throw new ConfigError(`${nameOf(name)} ${issue.message}${spec.secret ? '' : `, got "${value}"`}`);
  }
  const { clusterKey: _keys, ...settings } = parsed.data as Record<string, unknown>;
  const config: Record<string, unknown> = {
    ...settings,
    ...resolveCommon(runtime, parsed.data as Record<string, unknown>, nameOf),
  };
  // Node ids by default: random per process (Node), per execution environment (Lambda); an edge node leaves it to the cluster.
  if (runtime === 'node') config.node ??= randomNodeId();
  if (runtime === 'lambda') config.node ??= randomNodeId('lam-');
  return withoutUndefined(config) as unknown as RuntimeConfig[R];
}

/** The settings whose defaults depend on others, the cluster keys, and the rules between settings. */
function resolveCommon(
  runtime: Runtime,
  settings: Record<string, unknown>,
  nameOf: (name: SettingName) => string,
): Pick<CommonConfig, 'jetstream' | 'send' | 'clusterKeys' | 'nats'> {
  const manager = settings.manager as CommonConfig['manager'];
  const nats = (settings.nats as string[] | undefined) ?? [];
  // Lambda keeps the log by default with the delta manager: a thawed instance catches up from it.
  const jetstreamDefault =
    runtime === 'lambda' ? manager === 'delta' : settings.send === 'persist' || settings.dynamodbTable !== undefined;
  const jetstream = (settings.jetstream as boolean | undefined) ?? jetstreamDefault;
  // With the log, Lambda answers once JetStream stored the change (a frozen instance may never send it later).
  const send =
    (settings.send as CommonConfig['send'] | undefined) ?? (runtime === 'lambda' && jetstream ? 'persist' : 'async');
  const rule = (broken: boolean, message: string) => {
    if (broken) throw new ConfigError(message);
  };
  rule(
    runtime === 'edge' && nats.length === 0,
    `${nameOf('nats')} is required: the NATS WebSocket URL(s), e.g. ws://127.0.0.1:8080`,
  );
  rule(
    send === 'persist' && !jetstream,
    `${nameOf('send')}=persist needs ${nameOf('jetstream')}=true (the JetStream log)`,
  );
  rule(
    settings.dynamodbTable !== undefined && !jetstream,
    `${nameOf('dynamodbTable')} needs the JetStream log (${nameOf('jetstream')}=true)`,
  );
  rule(
    jetstream && manager !== 'delta',
    `${nameOf('jetstream')}, ${nameOf('dynamodbTable')} and ${nameOf('send')} persist work with ${nameOf('manager')} delta only`,
  );
  rule(
    runtime === 'node' && jetstream && nats.length === 0,
    `${nameOf('jetstream')}, ${nameOf('dynamodbTable')} and ${nameOf('send')} persist need ${nameOf('nats')} (a NATS server with JetStream)`,
  );
  rule(
    settings.natsSecret !== undefined && settings.natsParameter !== undefined,
    `set ${nameOf('natsSecret')} or ${nameOf('natsParameter')}, not both`,
  );
  rule(
    (settings.natsUser === undefined) !== (settings.natsPassword === undefined),
    `${nameOf('natsUser')} and ${nameOf('natsPassword')} go together`,
  );
  rule(
    (settings.natsTlsCert === undefined) !== (settings.natsTlsKey === undefined),
    `${nameOf('natsTlsCert')} and ${nameOf('natsTlsKey')} go together`,
  );
  return {
    nats,
    jetstream,
    send,
    clusterKeys: clusterKeysOf(settings.clusterKey as string | undefined, nameOf('clusterKey')),
  };
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
