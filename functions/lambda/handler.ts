/**
 * AWS Lambda entry point: the demo app behind an API Gateway HTTP API, a Function URL or an ALB,
 * configured from the environment (`readConfig('lambda', env)`: SESSREP_CLUSTER, NATS_URL,
 * SESSREP_NATS_SECRET or SESSREP_NATS_PARAMETER, SESSREP_DYNAMODB_TABLE, SESSREP_SEND, ...).
 *
 * The node starts during INIT (top-level await): the NATS settings are fetched, the connection is
 * opened and the cluster joins (snapshot load plus log replay) once per execution environment, and
 * every invocation reuses them. A failed start is logged and retried by the next invocation, which
 * answers 503 until a start succeeds.
 */
import { readConfig } from '../shared/config.ts';
import { createDemoLambdaHandler } from './runtime.ts';

/** The Lambda handler (`handler` in the bundle's `index.mjs`); inside Lambda it leaves the cluster on SIGTERM. */
export const handler = createDemoLambdaHandler(readConfig('lambda', process.env), {
  leaveOnSigterm: process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined,
});

await handler.start().catch(() => undefined);
