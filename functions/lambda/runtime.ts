/**
 * A cluster node inside an AWS Lambda execution environment.
 *
 * - One NATS connection and one cluster per execution environment: created at cold start (the
 *   handler module starts it during INIT) and reused by every invocation.
 * - Configuration from environment variables; NATS servers, credentials and TLS material from a
 *   Secrets Manager secret or an SSM SecureString parameter, fetched once at cold start.
 * - A frozen instance hears nothing. Before serving a session cookie that names another node, the
 *   instance catches up with the JetStream replication log (it restarts its log follower if the
 *   follower stalled during the freeze), so it never serves or expires a session from a stale copy.
 *   Expiry sweeps run only right after such a catch-up, never from a timer that fires on thaw.
 * - A recycled instance leaves the cluster on SIGTERM, which Lambda sends only when the function
 *   has an external extension; otherwise the others drop it after missing its heartbeats.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { Hono } from 'hono';
import { handle, type APIGatewayProxyResult, type LambdaContext, type LambdaEvent } from 'hono/aws-lambda';
import { getCookie } from 'hono/cookie';
import { z } from 'zod';
import { jetStreamLogFor, type LogFollower, type LogMessage, type ReplicationLog } from '../../lib/log/jetstream.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { createCluster, parseSessionId, type Logger, type LogLevel, type ClusterNode } from '../../lib/index.ts';
import type { SessionState } from '../../lib/session/state.ts';
import { DynamoSnapshotStore } from '../../lib/store/dynamodb.ts';
import type { LoadProgress, SnapshotStore, SnapshotWriteResult } from '../../lib/store/snapshot-store.ts';
import { createDemoApp } from '../demo-app.ts';
import { ConfigError, readConfig, type LambdaEnvConfig } from '../shared/config.ts';

/** The session cookie of the demo app (the middleware's default name). */
const COOKIE = 'SESSIONID';
/** setInterval's largest delay: the manager's own sweep timer is effectively off (see `sweepEveryMs`). */
const NEVER_MS = 2_147_483_647;

/** Settings of the Lambda node, read from the environment by the one configuration reader (`readConfig('lambda', env)`). */
export type LambdaConfig = LambdaEnvConfig;

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** Reads the configuration from environment variables; throws `ConfigError` naming the bad variable. */
export function lambdaConfigFromEnv(env: Record<string, string | undefined> = process.env): LambdaConfig {
  return readConfig('lambda', env);
}

/**
 * NATS settings kept in Secrets Manager or SSM: a JSON object with any of these fields, or the text
 * of a `.creds` file (JWT + NKey seed) on its own. Files cannot be shipped to Lambda, so TLS
 * material and credentials are PEM / creds text, not paths.
 */
export const natsSettingsSchema = z
  .object({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    user: z.string().optional(),
    password: z.string().optional(),
    token: z.string().optional(),
    /** The contents of a `.creds` file. */
    creds: z.string().optional(),
    /** An NKey seed (`SU...`). */
    nkeySeed: z.string().optional(),
    /** PEM of the CA that signed the server certificate (turns on TLS). */
    tlsCa: z.string().optional(),
    /** PEM client certificate and key for mutual TLS. */
    tlsCert: z.string().optional(),
    tlsKey: z.string().optional(),
  })
  .strict();

/** Parsed NATS settings. */
export type NatsSettings = z.infer<typeof natsSettingsSchema>;

/** Parses the secret or parameter text; never echoes it in an error (it is a credential). */
export function parseNatsSettings(text: string, source: string): NatsSettings {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN NATS USER JWT-----')) return { creds: trimmed };
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    throw new ConfigError(`${source}: not JSON and not a .creds file`);
  }
  const parsed = natsSettingsSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${source}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Connection options for the settings (credentials and TLS). */
export function natsConnectionOptions(settings: NatsSettings): Partial<ConnectionOptions> {
  const tls = settings.tlsCa !== undefined || settings.tlsCert !== undefined;
  return {
    ...(settings.user !== undefined ? { user: settings.user, pass: settings.password } : {}),
    ...(settings.token !== undefined ? { token: settings.token } : {}),
    ...(settings.creds !== undefined ? { authenticator: credsAuthenticator(new TextEncoder().encode(settings.creds)) } : {}),
    ...(settings.nkeySeed !== undefined ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(settings.nkeySeed.trim())) } : {}),
    ...(tls
      ? { tls: { ...(settings.tlsCa !== undefined ? { ca: settings.tlsCa } : {}), ...(settings.tlsCert !== undefined ? { cert: settings.tlsCert, key: settings.tlsKey } : {}) } }
      : {}),
  };
}

/** Fetches the NATS settings text from Secrets Manager or SSM (the SDK clients are loaded only when used). */
export async function fetchNatsSettingsText(config: Pick<LambdaConfig, 'natsSecret' | 'natsParameter' | 'awsRegion'>): Promise<string | undefined> {
  if (config.natsSecret) {
    const { SecretsManagerClient, GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
    const client = new SecretsManagerClient({ region: config.awsRegion, maxAttempts: 3 });
    try {
      const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: config.natsSecret }));
      if (SecretString === undefined) throw new ConfigError(`secret ${config.natsSecret} has no SecretString (binary secrets are not supported)`);
      return SecretString;
    } finally {
      client.destroy();
    }
  }
  if (config.natsParameter) {
    const { SSMClient, GetParameterCommand } = await import('@aws-sdk/client-ssm');
    const client = new SSMClient({ region: config.awsRegion, maxAttempts: 3 });
    try {
      const { Parameter } = await client.send(new GetParameterCommand({ Name: config.natsParameter, WithDecryption: true }));
      if (Parameter?.Value === undefined) throw new ConfigError(`parameter ${config.natsParameter} has no value`);
      return Parameter.Value;
    } finally {
      client.destroy();
    }
  }
  return undefined;
}

/**
 * A logger writing one JSON object per line straight to stdout. `console.log` in Lambda prefixes
 * each line with a timestamp and request id, which would stop CloudWatch JSON metric filters
 * (`{ $.level = "error" }`) from matching; `process.stdout.write` lines reach the log as they are.
 */
export function lambdaLogger(level: LogLevel, bound: Record<string, unknown> = {}, write: (line: string) => void = (line) => void process.stdout.write(line)): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const at = (name: Exclude<LogLevel, 'silent'>) => (fields: Record<string, unknown>, msg: string) => {
    if (LOG_LEVELS.indexOf(name) < min) return;
    write(`${JSON.stringify({ level: name, time: Date.now(), ...bound, ...fields, msg }, jsonSafe)}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (fields) => lambdaLogger(level, { ...bound, ...fields }, write) };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

/** What `catchUp` found. */
export interface CatchUpResult {
  /** True when every message stored when the catch-up began has been delivered. */
  ok: boolean;
  /** The log's last sequence when the catch-up began (undefined when it could not be read). */
  target?: number;
  /** Messages that were missing when it began. */
  missed: number;
  /** Whether the follower was restarted because it had stalled. */
  restarted: boolean;
  ms: number;
}

/**
 * Wraps the replication log so a thawed instance can catch up on demand. It remembers the last
 * sequence delivered to the manager; `catchUp` reads the log's last sequence and waits for the
 * follower to deliver it, restarting the follower from the next sequence when nothing arrives
 * within `stallMs` (a pull request that expired or a consumer the server dropped during a long
 * freeze is otherwise only noticed after missed heartbeats, tens of seconds later). Messages are
 * delivered once and in order: anything at or below the last delivered sequence is skipped.
 */
export class CatchUpLog implements ReplicationLog {
  readonly name: string;
  #delivered = 0;
  #onMessage?: (message: LogMessage) => void;
  #follower?: LogFollower;
  #stopped = false;
  #waiters: Array<{ target: number; resolve: () => void }> = [];
  #running?: Promise<CatchUpResult>;

  constructor(
    private readonly inner: ReplicationLog,
    private readonly options: { stallMs?: number } = {},
  ) {
    this.name = inner.name;
  }

  /** The highest sequence delivered to the manager. */
  get delivered(): number {
    return this.#delivered;
  }

  ensure(): Promise<void> {
    return this.inner.ensure();
  }

  append(data: Uint8Array, msgId: string): Promise<number> {
    return this.inner.append(data, msgId);
  }

  bounds(): Promise<{ first: number; last: number }> {
    return this.inner.bounds();
  }

  async follow(fromSeq: number, onMessage: (message: LogMessage) => void): Promise<LogFollower> {
    this.#onMessage = onMessage;
    this.#delivered = fromSeq - 1;
    this.#stopped = false;
    this.#follower = await this.inner.follow(fromSeq, (message) => this.#deliver(message));
    return {
      stop: () => {
        this.#stopped = true;
        this.#follower?.stop();
      },
    };
  }

  /**
   * Stops the underlying follower without telling anyone, as a pull request that expired during a
   * long freeze does (tests use it to reproduce that without freezing for 30 s).
   */
  stallForTests(): void {
    this.#follower?.stop();
  }

  /** Waits (at most `timeoutMs`) until everything stored now has been delivered; concurrent calls share one catch-up. */
  catchUp(timeoutMs: number): Promise<CatchUpResult> {
    this.#running ??= this.#catchUp(timeoutMs).finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #catchUp(timeoutMs: number): Promise<CatchUpResult> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    const result = (ok: boolean, extra: Partial<CatchUpResult> = {}): CatchUpResult => ({ ok, missed: 0, restarted: false, ...extra, ms: Date.now() - started });
    let target: number;
    try {
      target = (await withDeadline(this.inner.bounds(), deadline)).last;
    } catch {
      return result(false);
    }
    const missed = Math.max(0, target - this.#delivered);
    if (missed === 0) return result(true, { target });
    const stallMs = this.options.stallMs ?? 250;
    if (await this.#reached(target, Math.min(deadline, Date.now() + stallMs))) return result(true, { target, missed });
    // Nothing (or not enough) arrived: the follower stalled during the freeze. Start a fresh one.
    let restarted = false;
    if (!this.#stopped && this.#onMessage) {
      const from = this.#delivered + 1;
      this.#follower?.stop();
      try {
        this.#follower = await withDeadline(
          this.inner.follow(from, (message) => this.#deliver(message)),
          deadline,
        );
        restarted = true;
      } catch {
        return result(false, { target, missed });
      }
    }
    return result(await this.#reached(target, deadline), { target, missed, restarted });
  }

  #reached(target: number, until: number): Promise<boolean> {
    if (this.#delivered >= target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(this.#delivered >= target);
      }, Math.max(0, until - Date.now()));
      this.#waiters.push(waiter);
    });
  }

  #deliver(message: LogMessage): void {
    if (message.seq <= this.#delivered) return;
    this.#delivered = message.seq;
    this.#onMessage?.(message);
    if (this.#waiters.length === 0) return;
    const done = this.#waiters.filter((w) => w.target <= message.seq);
    this.#waiters = this.#waiters.filter((w) => w.target > message.seq);
    for (const waiter of done) waiter.resolve();
  }
}

/**
 * The snapshot store used when no DynamoDB table is configured: it keeps nothing and reports the
 * log's first retained sequence as its checkpoint, so a cold start replays the whole retained log
 * (24 h by default, longer than a session's timeout) instead of asking a peer that may be frozen.
 */
export class LogReplayStore implements SnapshotStore {
  readonly kind = 'log-replay';
  constructor(private readonly log: ReplicationLog) {}
  async write(items: readonly unknown[]): Promise<SnapshotWriteResult> {
    return { written: items.length, superseded: 0 };
  }
  async writeCheckpoint(): Promise<void> {}
  async readCheckpoint(): Promise<number | undefined> {
    return undefined;
  }
  async load(onPage: (states: SessionState[]) => void, onProgress?: (progress: LoadProgress) => void): Promise<number | undefined> {
    const { first } = await this.log.bounds();
    onPage([]);
    onProgress?.({ sessions: 0, pages: 1 });
    return Math.max(0, first - 1);
  }
}

function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('deadline passed')), Math.max(0, deadline - Date.now()));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error as Error);
      },
    );
  });
}

/** Things tests and the measurement script replace. */
export interface LambdaDeps {
  /** Fetches the NATS settings text (default: Secrets Manager or SSM per the config). */
  readonly fetchNatsSettings?: (config: LambdaConfig) => Promise<string | undefined>;
  /** Opens the NATS connection (default: `connect` from @nats-io/transport-node). */
  readonly connect?: (options: ConnectionOptions) => Promise<NatsConnection>;
  readonly logger?: Logger;
  /** Leave the cluster on SIGTERM (default: only inside Lambda, where AWS_LAMBDA_FUNCTION_NAME is set). */
  readonly handleSigterm?: boolean;
}

/** Counters of one execution environment. */
export interface LambdaRuntimeStats {
  /** Invocations handled. */
  invocations: number;
  /** NATS connections opened (1 for a healthy environment, however many invocations). */
  connections: number;
  /** Milliseconds from `start()` to a ready cluster (the cold start's share). */
  startMs?: number;
  catchUps: number;
  catchUpsRestarted: number;
  catchUpsFailed: number;
  sweeps: number;
}

/** The Lambda handler type: an API Gateway (v1/v2), Function URL or ALB event in, a proxy result out. */
export type LambdaHandler = (event: LambdaEvent, context?: LambdaContext) => Promise<APIGatewayProxyResult>;

/** One execution environment's node. */
export interface LambdaRuntime {
  readonly config: LambdaConfig;
  readonly node: string;
  readonly stats: LambdaRuntimeStats;
  /** Starts (once) the NATS connection and the cluster; a failed start is retried by the next call. */
  start(): Promise<ClusterNode>;
  /** The Lambda handler. */
  readonly handler: LambdaHandler;
  /** The running cluster, once started. */
  readonly sessions: ClusterNode | undefined;
  /** The replication log wrapper, when JetStream is on. */
  readonly log: CatchUpLog | undefined;
  /** Leaves the cluster and closes the connection, within `budgetMs` when given. */
  shutdown(budgetMs?: number): Promise<void>;
}

/** Builds the node of one execution environment. Nothing connects until `start()` or the first invocation. */
export function createLambdaRuntime(config: LambdaConfig, deps: LambdaDeps = {}): LambdaRuntime {
  const node = config.node;
  const logger = (deps.logger ?? lambdaLogger(config.logLevel)).child({ cluster: config.cluster, node });
  const stats: LambdaRuntimeStats = { invocations: 0, connections: 0, catchUps: 0, catchUpsRestarted: 0, catchUpsFailed: 0, sweeps: 0 };
  let sessions: ClusterNode | undefined;
  let log: CatchUpLog | undefined;
  let starting: Promise<ClusterNode> | undefined;
  let lambda: ReturnType<typeof handle> | undefined;
  let lastSweep = Date.now();
  let shuttingDown: Promise<void> | undefined;

  async function boot(): Promise<ClusterNode> {
    const started = Date.now();
    const text = await (deps.fetchNatsSettings ?? fetchNatsSettingsText)(config);
    const settings = text !== undefined ? parseNatsSettings(text, config.natsSecret ?? config.natsParameter ?? 'NATS settings') : {};
    const servers = settings.servers !== undefined ? [settings.servers].flat() : config.nats;
    if (servers.length === 0) throw new ConfigError('no NATS server: set NATS_URL or "servers" in the NATS secret/parameter');
    const connection = await (deps.connect ?? connect)({
      servers,
      name: `sessrep-${config.cluster}-${node}`,
      // A cold start must not outlive Lambda's INIT budget: fail fast, the next invocation retries.
      timeout: 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      ...natsConnectionOptions(settings),
    });
    stats.connections++;
    let cluster: ClusterNode | undefined;
    try {
      const channel = new NatsChannel(connection);
      log = config.jetstream ? new CatchUpLog(jetStreamLogFor(connection, config.cluster)) : undefined;
      const store = !log
        ? undefined
        : config.dynamodbTable !== undefined
          ? new DynamoSnapshotStore({ client: dynamoClient(config), table: config.dynamodbTable, cluster: config.cluster })
          : new LogReplayStore(log);
      cluster = createCluster({
        cluster: config.cluster,
        node,
        channel,
        manager: config.manager,
        sendMode: config.send,
        maxInactiveSeconds: config.maxInactive,
        logger,
        ...(log ? { log } : {}),
        ...(store ? { store } : {}),
        // With the log, expiry runs only after a catch-up (see `invoke`): a sweep timer firing on
        // thaw would expire sessions that were in use elsewhere while this instance was frozen.
        ...(log ? { sweepIntervalMs: NEVER_MS } : {}),
      });
      await cluster.start();
      const outer = new Hono();
      outer.use('*', async (c, next) => {
        const requested = parseSessionId(getCookie(c, COOKIE));
        // A cookie routed here means this instance served the session last: its copy is current.
        if (requested && requested.route !== node && log) {
          const caughtUp = await catchUp();
          if (!caughtUp && config.catchUpFail === 'reject') {
            return c.json({ error: 'replication log unreachable: this instance may hold a stale copy of the session', code: 'CATCH_UP_FAILED' }, 503, { 'Retry-After': '1' });
          }
        }
        await next();
      });
      // No admin token, no drain or cluster view on the (public) Function URL: only the probes.
      outer.route('/', createDemoApp(cluster, { session: { trustProxy: config.trustProxy }, ...(config.adminToken !== undefined ? { admin: { token: config.adminToken } } : {}) }));
      lambda = handle(outer);
      sessions = cluster;
      stats.startMs = Date.now() - started;
      return cluster;
    } catch (error) {
      await cluster?.stop().catch(() => undefined);
      await connection.close().catch(() => undefined);
      log = undefined;
      throw error;
    }
  }

  async function catchUp(): Promise<boolean> {
    if (!log) return true;
    const result = await log.catchUp(config.catchUpTimeoutMs);
    stats.catchUps++;
    if (result.restarted) stats.catchUpsRestarted++;
    if (!result.ok) {
      stats.catchUpsFailed++;
      logger.warn({ target: result.target, delivered: log.delivered, ms: result.ms }, 'log catch-up timed out: this instance may be behind the cluster');
    } else if (result.missed > 0) {
      logger.info({ missed: result.missed, restarted: result.restarted, ms: result.ms }, 'caught up with the replication log');
    }
    if (result.ok) sweepIfDue();
    return result.ok;
  }

  function sweepIfDue(): void {
    const now = Date.now();
    if (!sessions || now - lastSweep < config.sweepEveryMs) return;
    lastSweep = now;
    stats.sweeps++;
    sessions.manager.sweep(now);
  }

  function start(): Promise<ClusterNode> {
    starting ??= boot().catch((error: unknown) => {
      starting = undefined;
      logger.error({ error }, 'cold start failed: the next invocation retries');
      throw error;
    });
    return starting;
  }

  async function flush(): Promise<void> {
    // Everything published during the invocation must reach NATS before Lambda freezes us. Async
    // deltas leave on the next event-loop turn (one message per turn): let that turn run first.
    if (!sessions) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    await withDeadline(sessions.channel.flush(), Date.now() + 1000).catch((error: unknown) => logger.warn({ error }, 'NATS flush failed before freeze'));
  }

  const handler: LambdaHandler = async (event, context) => {
    stats.invocations++;
    try {
      await start();
    } catch (error) {
      return {
        statusCode: 503,
        headers: { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1' },
        body: JSON.stringify({ error: `node not started: ${(error as Error).message}`, node }),
        isBase64Encoded: false,
      };
    }
    try {
      // An instance that serves only its own sessions still sweeps now and then, after a catch-up.
      if (log && Date.now() - lastSweep >= config.sweepEveryMs) await catchUp();
      else if (!log) sweepIfDue();
      return await lambda!(event, context);
    } finally {
      await flush();
    }
  };

  async function shutdown(budgetMs?: number): Promise<void> {
    shuttingDown ??= (async () => {
      const cluster = sessions ?? (await starting?.catch(() => undefined));
      if (!cluster) return;
      // The node leaves the channel it was given open: close it (and the connection) after leaving.
      const stopping = cluster
        .stop()
        .finally(() => cluster.channel.close())
        .catch((error: unknown) => logger.warn({ error }, 'leaving the cluster failed'));
      if (budgetMs === undefined) await stopping;
      else await withDeadline(stopping, Date.now() + budgetMs).catch(() => logger.warn({ budgetMs }, 'leaving the cluster did not finish within the shutdown budget'));
    })();
    return shuttingDown;
  }

  if (deps.handleSigterm ?? process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined) {
    // Lambda sends SIGTERM before recycling an environment only when the function has an external
    // extension, and then allows the runtime ~300 ms (500 ms with an internal extension).
    process.once('SIGTERM', () => {
      logger.info({}, 'SIGTERM: leaving the cluster');
      void shutdown(250).finally(() => process.exit(0));
    });
  }

  return {
    config,
    node,
    stats,
    start,
    handler,
    shutdown,
    get sessions() {
      return sessions;
    },
    get log() {
      return log;
    },
  };
}

function dynamoClient(config: LambdaConfig): DynamoDBClient {
  const local = config.dynamodbEndpoint !== undefined && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE;
  return new DynamoDBClient({
    region: config.awsRegion,
    maxAttempts: 3,
    ...(config.dynamodbEndpoint !== undefined ? { endpoint: config.dynamodbEndpoint } : {}),
    ...(local ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
  });
}
