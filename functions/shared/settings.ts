/**
 * The table of every setting of the repo's entry points (Node CLI, Lambda, edge): its environment
 * variable, CLI flag, help text, default and the runtimes that read it, plus the per-runtime
 * defaults. The reader (config.ts) validates what this table names; Web-standard only.
 */

/** The runtimes with an entry point in `functions/`. */
export type Runtime = 'node' | 'lambda' | 'edge';

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
  cluster: {
    env: 'SESSREP_CLUSTER',
    flag: 'cluster',
    help: 'cluster name: nodes with the same name share sessions',
    default: 'demo',
    runtimes: ALL,
  },
  node: {
    env: 'SESSREP_NODE',
    flag: 'node',
    help: 'this node id, also the cookie route (default: random)',
    runtimes: ALL,
  },
  port: { env: 'PORT', flag: 'port', help: 'HTTP port', default: '8080', runtimes: NODE },
  host: { env: 'HOST', flag: 'host', help: 'HTTP bind address', default: '127.0.0.1', runtimes: NODE },
  advertiseUrl: {
    env: 'SESSREP_ADVERTISE_URL',
    flag: 'advertise-url',
    help: "this node's HTTP base URL as other members' dashboards reach it (default http://HOST:PORT)",
    runtimes: NODE_EDGE,
  },
  nats: {
    env: 'NATS_URL',
    flag: 'nats',
    help: 'NATS server URL(s), comma-separated (default: in-process channel)',
    runtimes: ALL,
  },
  manager: {
    env: 'SESSREP_MANAGER',
    flag: 'manager',
    help: 'replication strategy: delta (all-to-all) or backup (primary/backup)',
    default: 'delta',
    runtimes: ALL,
  },
  send: {
    env: 'SESSREP_SEND',
    flag: 'send',
    help: 'send mode: async (respond at once), ack (when every member applied), persist (when JetStream stored it); default async (Lambda: persist with the JetStream log)',
    runtimes: ALL,
  },
  maxInactive: {
    env: 'SESSREP_MAX_INACTIVE',
    flag: 'max-inactive',
    help: 'session timeout in seconds (<= 0: never)',
    default: '1800',
    runtimes: ALL,
  },
  trustProxy: {
    env: 'SESSREP_TRUST_PROXY',
    flag: 'trust-proxy',
    help: 'true behind a TLS-terminating proxy that sets X-Forwarded-Proto: the session cookie is Secure when the client used https',
    default: 'false',
    runtimes: ALL,
  },
  logLevel: {
    env: 'LOG_LEVEL',
    flag: 'log-level',
    help: 'debug, info, warn, error or silent',
    default: 'info',
    runtimes: ALL,
  },
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
  awsRegion: {
    env: 'AWS_REGION',
    envAlias: 'AWS_DEFAULT_REGION',
    flag: 'aws-region',
    help: 'AWS region of the DynamoDB table',
    default: 'us-east-1',
    runtimes: NODE_LAMBDA,
  },
  clusterKey: {
    env: 'SESSREP_CLUSTER_KEY',
    flag: 'cluster-key',
    help: 'cluster key(s) "id:base64,id:base64" (256 bits each, newest first): authenticates every message',
    runtimes: ALL,
  },
  clusterKeyFile: {
    env: 'SESSREP_CLUSTER_KEY_FILE',
    flag: 'cluster-key-file',
    help: 'file with one "id:base64" key per line, newest first',
    runtimes: NODE,
  },
  protection: {
    env: 'SESSREP_PROTECTION',
    flag: 'protection',
    help: 'with cluster keys: encrypt (AES-256-GCM) or sign (HMAC-SHA256)',
    default: 'encrypt',
    runtimes: ALL,
  },
  natsUser: { env: 'NATS_USER', flag: 'nats-user', help: 'NATS user name (with --nats-password)', runtimes: NODE_EDGE },
  natsPassword: { env: 'NATS_PASSWORD', flag: 'nats-password', help: 'NATS password', runtimes: NODE_EDGE },
  natsToken: { env: 'NATS_TOKEN', flag: 'nats-token', help: 'NATS authentication token', runtimes: NODE_EDGE },
  natsNkeySeedFile: {
    env: 'NATS_NKEY_SEED_FILE',
    flag: 'nats-nkey-seed-file',
    help: 'file with the NKey seed (SU...) to authenticate with',
    runtimes: NODE,
  },
  natsCreds: { env: 'NATS_CREDS', flag: 'nats-creds', help: 'NATS credentials file (JWT + NKey seed)', runtimes: NODE },
  natsTlsCa: {
    env: 'NATS_TLS_CA',
    flag: 'nats-tls-ca',
    help: 'CA certificate file that signed the NATS server certificate (turns on TLS)',
    runtimes: NODE,
  },
  natsTlsCert: {
    env: 'NATS_TLS_CERT',
    flag: 'nats-tls-cert',
    help: 'client certificate file for NATS TLS (with --nats-tls-key)',
    runtimes: NODE,
  },
  natsTlsKey: { env: 'NATS_TLS_KEY', flag: 'nats-tls-key', help: 'client key file for NATS TLS', runtimes: NODE },
  natsSecret: {
    env: 'SESSREP_NATS_SECRET',
    flag: 'nats-secret',
    help: 'Secrets Manager secret id or ARN holding the NATS settings',
    runtimes: LAMBDA,
  },
  natsParameter: {
    env: 'SESSREP_NATS_PARAMETER',
    flag: 'nats-parameter',
    help: 'SSM SecureString parameter holding the NATS settings',
    runtimes: LAMBDA,
  },
  catchUpTimeoutMs: {
    env: 'SESSREP_CATCHUP_TIMEOUT_MS',
    flag: 'catchup-timeout-ms',
    help: 'how long a request whose session here is older than its version cookie waits for the newer state (log catch-up, members), then 503',
    default: '2000',
    runtimes: LAMBDA,
  },
  rywWaitMs: {
    env: 'SESSREP_RYW_WAIT_MS',
    flag: 'ryw-wait-ms',
    help: 'read-your-writes: how long a request whose session here is older than its version cookie waits for the newer state, then 503; 0: off',
    default: '2000',
    runtimes: NODE,
  },
  sweepEveryMs: {
    env: 'SESSREP_SWEEP_INTERVAL_MS',
    flag: 'sweep-interval-ms',
    help: 'time between expiry sweeps (Lambda: the minimum, swept on a request)',
    default: '10000',
    runtimes: NODE_LAMBDA,
  },
  adminToken: {
    env: 'SESSREP_ADMIN_TOKEN',
    flag: 'admin-token',
    help: 'token (16+ characters) for /cluster, drain, /cluster/ui and /metrics: Bearer, or the Basic-auth password; prefer the env var (default: those routes are off)',
    runtimes: ALL,
    secret: true,
  },
  adminOpen: {
    env: 'SESSREP_ADMIN_OPEN',
    flag: 'admin-open',
    help: 'true: serve /cluster, drain, /cluster/ui and /metrics without a token when no admin token is set; only where nobody else can reach the port (a benchmark, a private sandbox)',
    default: 'false',
    runtimes: NODE,
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
