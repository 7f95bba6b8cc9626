/** The options, counters and handler type of `createLambdaHandler`. */
import type { NatsConnection } from '@nats-io/nats-core';
import type { APIGatewayProxyResult, LambdaContext, LambdaEvent } from 'hono/aws-lambda';
import type { ReplicationLog } from '../../lib/log/jetstream.ts';
import type { ClusterOptions, createCluster } from '../../lib/cluster/index.ts';
import type { CatchUpLog } from '../../lib/log/catch-up-log.ts';
import type { Logger } from '../../lib/logger.ts';
import type { SnapshotStore } from '../../lib/store/snapshot-store.ts';
import type { LambdaNatsOptions } from './nats-settings.ts';

/** A running cluster node, as `createCluster` returns it. */
export type LambdaClusterNode = ReturnType<typeof createCluster>;

/**
 * How the environment catches up with the replication log. A request catches up only when it needs
 * to: when the client presents a newer version of its session than this environment holds (see
 * `readYourWritesWaitMs`, which bounds that wait). The periodic catch-up before an expiry sweep uses
 * these settings.
 */
export interface LambdaCatchUpOptions {
  /**
   * How long the catch-up before an expiry sweep waits for the log.
   * @default 2000
   */
  readonly timeoutMs?: number;
  /**
   * How long a catch-up waits for the running log follower before it starts a fresh one.
   * @default 250
   */
  readonly stallMs?: number;
}

/** Options of `createLambdaHandler`: the cluster's options plus where NATS is and how to catch up. */
export interface LambdaHandlerOptions extends Omit<ClusterOptions, 'channel' | 'log' | 'store' | 'node' | 'logger'> {
  /** Where the NATS servers and credentials come from. */
  readonly nats: LambdaNatsOptions;
  /**
   * This environment's node id (the cookie's route).
   * @default `lam-` and 8 random characters, new per execution environment
   */
  readonly node?: string;
  /**
   * The replication log a frozen environment catches up from, built on the environment's NATS
   * connection; `false` for none (then nothing guards against serving a stale copy after a thaw).
   * @default the cluster's JetStream stream (`jetStreamLogFor`) with the delta manager, none with the backup manager
   */
  readonly log?: false | ((connection: NatsConnection) => ReplicationLog);
  /**
   * Durable snapshots a cold start loads before replaying the log (such as `DynamoSnapshotStore`).
   * @default a `LogReplayStore`: a cold start replays the whole retained log
   */
  readonly store?: SnapshotStore;
  /**
   * When a session write is answered; `persist` waits until the log stored it, so a write is never
   * lost to a freeze.
   * @default 'persist' with a log, 'async' without
   */
  readonly sendMode?: ClusterOptions['sendMode'];
  /**
   * Minimum time between expiry sweeps. With a log, a sweep runs only right after a successful
   * catch-up; without one, from the cluster's timer and at the start of an invocation.
   * @default 10000
   */
  readonly sweepIntervalMs?: number;
  /** How the environment catches up with the log (see `LambdaCatchUpOptions`). */
  readonly catchUp?: LambdaCatchUpOptions;
  /**
   * How long the end of an invocation waits for what it published to leave.
   * @default 1000
   */
  readonly flushTimeoutMs?: number;
  /**
   * Leave the cluster and exit on SIGTERM (Lambda's shutdown signal).
   * @default true
   */
  readonly leaveOnSigterm?: boolean;
  /**
   * Where the node logs.
   * @default `lambdaLogger('warn')`: raw JSON lines on stdout (CloudWatch metric filters match `$.level`)
   */
  readonly logger?: Logger;
}

/** Counters of one execution environment. */
export interface LambdaHandlerStats {
  /** Invocations handled. */
  invocations: number;
  /** NATS connections opened (1 for a healthy environment, however many invocations). */
  connections: number;
  /** Milliseconds from the start to a ready cluster node (the cold start's share). */
  startMs?: number;
  /**
   * Catch-ups with the log (for a request that presented a newer session version, or before a sweep),
   * those that restarted a stalled follower, and those that did not finish in time.
   */
  catchUps: number;
  catchUpsRestarted: number;
  catchUpsFailed: number;
  /** Expiry sweeps run. */
  sweeps: number;
}

/** The Lambda handler (API Gateway v1/v2, Function URL or ALB events) plus its environment's node. */
export interface LambdaSessionHandler {
  (event: LambdaEvent, context?: LambdaContext): Promise<APIGatewayProxyResult>;
  /** This environment's node id. */
  readonly node: string;
  readonly stats: Readonly<LambdaHandlerStats>;
  /** The running cluster node, once started. */
  readonly clusterNode: LambdaClusterNode | undefined;
  /** The log wrapper the catch-ups use, once started with a log. */
  readonly log: CatchUpLog | undefined;
  /** Connects and joins the cluster (once; a failed start is retried by the next call). Call it at module top level to start during INIT. */
  start(): Promise<LambdaClusterNode>;
  /** Leaves the cluster and closes the connection, within `budgetMs` when given. */
  shutdown(budgetMs?: number): Promise<void>;
}
