/**
 * `createLambdaHandler`: the user's Hono app as an AWS Lambda handler whose execution environment is
 * a member of a session-replication cluster.
 *
 * - One NATS connection and one cluster node per execution environment, created by the first
 *   `start()` or invocation and reused by every later one; a failed start is retried by the next.
 * - A frozen environment hears nothing. Read-your-writes does the catch-up: every response tells the
 *   client its session's version (a cookie), and a request whose version is newer than this
 *   environment's copy makes the node catch up with the replication log (restarting its follower if
 *   it stalled during the freeze) and ask the members, within `readYourWritesWaitMs`, or answers 503
 *   with Retry-After; it never serves the older copy. A request whose copy here is current needs no
 *   round trip to NATS.
 * - Expiry sweeps run only right after a catch-up (one runs before a sweep at most every
 *   `sweepIntervalMs`), never from a timer that fires on thaw.
 * - Everything the invocation published leaves before the response is returned (Lambda may freeze
 *   the environment the moment it has the response).
 * - A recycled environment leaves the cluster on SIGTERM, which Lambda sends only when the function
 *   has an external extension; otherwise the other members drop it after missing its heartbeats.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { Env, Hono, Schema } from 'hono';
import { handle, type APIGatewayProxyResult, type LambdaContext, type LambdaEvent } from 'hono/aws-lambda';
// The NATS entries by their public names: the build keeps them separate modules (each guards its optional peers).
import { jetStreamLogFor, type ReplicationLog } from '../../lib/log/jetstream.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { createCluster } from '../../lib/cluster/index.ts';
import { InvalidOptionsError } from '../../lib/errors.ts';
import { CatchUpLog, type CatchUpResult } from '../../lib/log/catch-up-log.ts';
import { LogReplayStore } from '../../lib/store/log-replay.ts';
import { lambdaLogger } from './logger.ts';
import { checkNatsOptions, connectNats } from './nats-settings.ts';
import type { LambdaClusterNode, LambdaHandlerOptions, LambdaHandlerStats, LambdaSessionHandler } from './options.ts';

/** setInterval's largest delay: the cluster's own sweep timer is effectively off when a log is used. */
const NEVER_MS = 2_147_483_647;

/** `lam-` and 8 random base-36 characters: a node id (and cookie route) per execution environment. */
export function lambdaNodeId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `lam-${[...bytes].map((b) => (b % 36).toString(36)).join('')}`;
}

/**
 * Builds the Lambda handler for the app that `app` returns. `app` is called once per execution
 * environment with the started cluster node; its `middleware()` catches up with the log when a client
 * presents a newer session version than the environment holds. Nothing connects until `start()` or the
 * first invocation.
 *
 * @example
 * export const handler = createLambdaHandler((node) => new Hono().use(node.middleware()).get('/', (c) => c.text('hi')), {
 *   cluster: 'shop',
 *   nats: { secret: 'shop/nats' },
 * });
 * await handler.start(); // during INIT
 */
export function createLambdaHandler<E extends Env, S extends Schema, B extends string>(
  app: (node: LambdaClusterNode) => Hono<E, S, B>,
  options: LambdaHandlerOptions,
): LambdaSessionHandler {
  const {
    nats,
    log: _log,
    store: storeOption,
    catchUp: catchUpOptions = {},
    flushTimeoutMs = 1000,
    leaveOnSigterm = true,
    sweepIntervalMs = 10_000,
    ...clusterOptions
  } = options;
  checkNatsOptions(nats);
  const node = options.node ?? lambdaNodeId();
  const baseLogger = options.logger ?? lambdaLogger();
  const logger = baseLogger.child({ cluster: options.cluster, node });
  const makeLog = logFactory(options);
  const { timeoutMs = 2000, stallMs = 250 } = catchUpOptions;
  const stats: LambdaHandlerStats = {
    invocations: 0,
    connections: 0,
    catchUps: 0,
    catchUpsRestarted: 0,
    catchUpsFailed: 0,
    sweeps: 0,
  };
  let running:
    | { clusterNode: LambdaClusterNode; connection: NatsConnection; log?: CatchUpLog; serve: ReturnType<typeof handle> }
    | undefined;
  let starting: Promise<LambdaClusterNode> | undefined;
  let lastSweep = Date.now();
  let shuttingDown: Promise<void> | undefined;

  async function boot(): Promise<LambdaClusterNode> {
    const started = Date.now();
    const connection = await connectNats(nats, `sessrep-${options.cluster}-${node}`);
    stats.connections++;
    let clusterNode: LambdaClusterNode | undefined;
    try {
      const log = makeLog ? new CatchUpLog(makeLog(connection), { stallMs, onCatchUp: counted }) : undefined;
      clusterNode = createCluster({
        sendMode: log ? 'persist' : 'async',
        ...clusterOptions,
        node,
        channel: new NatsChannel(connection),
        logger: baseLogger,
        ...(log
          ? { log, store: storeOption ?? new LogReplayStore(log), sweepIntervalMs: NEVER_MS }
          : { sweepIntervalMs, ...(storeOption ? { store: storeOption } : {}) }),
      });
      await clusterNode.start();
      const serve = handle(app(clusterNode));
      running = { clusterNode, connection, ...(log ? { log } : {}), serve };
      stats.startMs = Date.now() - started;
      return clusterNode;
    } catch (error) {
      await clusterNode?.stop().catch(() => undefined);
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  function start(): Promise<LambdaClusterNode> {
    starting ??= boot().catch((error: unknown) => {
      starting = undefined;
      logger.error({ error }, 'cold start failed: the next invocation retries');
      throw error;
    });
    return starting;
  }

  /** Counts and logs every catch-up, whether a request (read-your-writes) or a sweep asked for it. */
  function counted(result: CatchUpResult): void {
    stats.catchUps++;
    if (result.restarted) stats.catchUpsRestarted++;
    if (!result.ok) {
      stats.catchUpsFailed++;
      logger.warn(
        { target: result.target, delivered: running?.log?.delivered, ms: result.ms },
        'log catch-up timed out: this instance may be behind the cluster',
      );
    } else if (result.missed > 0) {
      logger.info(
        { missed: result.missed, restarted: result.restarted, ms: result.ms },
        'caught up with the replication log',
      );
    }
  }

  /** Before a sweep: catches up with the log, and sweeps when that worked. */
  async function catchUpAndSweep(): Promise<void> {
    const log = running?.log;
    if (log && (await log.catchUp(timeoutMs)).ok) sweepIfDue();
  }

  function sweepIfDue(): void {
    const now = Date.now();
    if (!running || now - lastSweep < sweepIntervalMs) return;
    lastSweep = now;
    stats.sweeps++;
    running.clusterNode.manager.sweep(now);
  }

  /** Lets what the invocation published leave before Lambda may freeze the environment. */
  async function flush(): Promise<void> {
    if (!running) return;
    // Async deltas are sent on the next event-loop turn: let that turn run first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await withTimeout(running.clusterNode.flush(), flushTimeoutMs).catch((error: unknown) =>
      logger.warn({ error }, 'NATS flush failed before freeze'),
    );
  }

  async function invoke(event: LambdaEvent, context?: LambdaContext): Promise<APIGatewayProxyResult> {
    stats.invocations++;
    try {
      await start();
    } catch (error) {
      // Bad options or settings stay bad: fail the invocation so Lambda reports it.
      if (error instanceof InvalidOptionsError) throw error;
      return {
        statusCode: 503,
        headers: { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1' },
        body: JSON.stringify({
          error: 'this instance has not joined the session cluster yet',
          code: 'NOT_STARTED',
          node,
        }),
        isBase64Encoded: false,
      };
    }
    try {
      // An environment that serves only requests without a session still sweeps now and then, after a catch-up.
      if (running!.log && Date.now() - lastSweep >= sweepIntervalMs) await catchUpAndSweep();
      else if (!running!.log) sweepIfDue();
      return await running!.serve(event, context);
    } finally {
      await flush();
    }
  }

  async function shutdown(budgetMs?: number): Promise<void> {
    shuttingDown ??= (async () => {
      await starting?.catch(() => undefined);
      if (!running) return;
      const { clusterNode, connection } = running;
      const leaving = clusterNode
        .stop()
        .catch((error: unknown) => logger.warn({ error }, 'leaving the cluster failed'))
        .finally(() => connection.close().catch(() => undefined));
      if (budgetMs === undefined) await leaving;
      else
        await withTimeout(leaving, budgetMs).catch(() =>
          logger.warn({ budgetMs }, 'leaving the cluster did not finish within the shutdown budget'),
        );
    })();
    return shuttingDown;
  }

  if (leaveOnSigterm) {
    // Lambda allows the runtime ~300 ms after SIGTERM (500 ms with an internal extension).
    process.once('SIGTERM', () => {
      logger.info({}, 'SIGTERM: leaving the cluster');
      void shutdown(250).finally(() => process.exit(0));
    });
  }

  return Object.defineProperties(invoke, {
    node: { value: node, enumerable: true },
    stats: { value: stats, enumerable: true },
    clusterNode: { get: () => running?.clusterNode, enumerable: true },
    log: { get: () => running?.log, enumerable: true },
    start: { value: start },
    shutdown: { value: shutdown },
  }) as LambdaSessionHandler;
}

/** What builds the log a frozen environment catches up from (see `LambdaHandlerOptions.log`), or undefined for none. */
function logFactory(options: LambdaHandlerOptions): ((connection: NatsConnection) => ReplicationLog) | undefined {
  if (options.log !== undefined) return options.log === false ? undefined : options.log;
  if ((options.manager ?? 'delta') !== 'delta') return undefined;
  const subjects = options.subjectPrefix !== undefined ? { subjectPrefix: options.subjectPrefix } : {};
  return (connection) => jetStreamLogFor(connection, options.cluster, subjects);
}

/** Settles like `promise`, or rejects after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
