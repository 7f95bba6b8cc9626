/**
 * The repository's Lambda function: the demo app on `session-replication/lambda`, configured from
 * the environment by the one configuration reader (`readConfig('lambda', env)`, functions/shared/config.ts). Everything that keeps replication correct on Lambda
 * (connection reuse, catch-up before serving, expiry after catching up, flush before freeze) is the
 * library's; this file only maps settings to options and keeps drain off the public URL.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Hono } from 'hono';
import {
  createLambdaHandler,
  lambdaLogger,
  type LambdaClusterNode,
  type LambdaHandlerOptions,
  type LambdaSessionHandler,
} from 'session-replication/lambda';
import { DynamoSnapshotStore } from 'session-replication/dynamodb';
import { createDemoApp } from '../demo-app.ts';
import type { LambdaEnvConfig } from '../shared/config.ts';

/** The handler options for the function's settings. */
export function lambdaHandlerOptions(config: LambdaEnvConfig): LambdaHandlerOptions {
  const source =
    config.natsSecret !== undefined
      ? { secret: config.natsSecret }
      : config.natsParameter !== undefined
        ? { parameter: config.natsParameter }
        : {};
  return {
    cluster: config.cluster,
    node: config.node,
    manager: config.manager,
    sendMode: config.send,
    maxInactiveSeconds: config.maxInactive,
    sweepIntervalMs: config.sweepEveryMs,
    nats: { servers: config.nats, region: config.awsRegion, ...source },
    ...(config.jetstream ? {} : { log: false as const }),
    ...(config.dynamodbTable !== undefined
      ? {
          store: new DynamoSnapshotStore({
            client: dynamoClient(config),
            table: config.dynamodbTable,
            cluster: config.cluster,
          }),
        }
      : {}),
    ...(config.clusterKeys.length > 0 ? { clusterKeys: config.clusterKeys, protection: config.protection } : {}),
    catchUp: { timeoutMs: config.catchUpTimeoutMs },
    readYourWritesWaitMs: config.catchUpTimeoutMs,
    logger: lambdaLogger(config.logLevel),
  };
}

/** The demo app's handler for the function's settings; `overrides` replace options (tests). */
export function createDemoLambdaHandler(
  config: LambdaEnvConfig,
  overrides: Partial<LambdaHandlerOptions> = {},
): LambdaSessionHandler {
  return createLambdaHandler((node) => publicDemoApp(node, config), { ...lambdaHandlerOptions(config), ...overrides });
}

/**
 * The demo app as a Function URL serves it: the probes, and the admin views only with an admin
 * token (SESSREP_ADMIN_TOKEN). Drain is never routed from the public URL, token or not: there is no
 * one instance to drain behind it, and an environment leaves the cluster on SIGTERM instead.
 */
function publicDemoApp(node: LambdaClusterNode, config: LambdaEnvConfig): Hono {
  const app = new Hono();
  app.post('/cluster/drain', (c) => c.json({ error: 'not found', code: 'NOT_FOUND' }, 404));
  app.route(
    '/',
    createDemoApp(node, {
      session: { trustProxy: config.trustProxy },
      ...(config.adminToken !== undefined ? { admin: { token: config.adminToken } } : {}),
    }),
  );
  return app;
}

function dynamoClient(config: LambdaEnvConfig): DynamoDBClient {
  const local = config.dynamodbEndpoint !== undefined && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE;
  return new DynamoDBClient({
    region: config.awsRegion,
    maxAttempts: 3,
    ...(config.dynamodbEndpoint !== undefined ? { endpoint: config.dynamodbEndpoint } : {}),
    ...(local ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
  });
}
