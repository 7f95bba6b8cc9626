/**
 * AWS Lambda entry point: the demo app through `hono/aws-lambda`, behind an API Gateway HTTP API,
 * a Function URL or an ALB. Configuration comes from the environment (see `lambdaConfigFromEnv`):
 * SESSREP_CLUSTER, NATS_URL, SESSREP_NATS_SECRET or SESSREP_NATS_PARAMETER, SESSREP_DYNAMODB_TABLE,
 * AWS_REGION, SESSREP_SEND, SESSREP_MANAGER, LOG_LEVEL.
 *
 * The node starts during INIT (top-level await): the NATS settings are fetched, the connection is
 * opened and the cluster joins (snapshot load plus log replay) once per execution environment, and
 * every invocation reuses them. A failed start is logged and retried by the next invocation, which
 * answers 503 until a start succeeds.
 */
import { createLambdaRuntime, lambdaConfigFromEnv } from './runtime.ts';

/** This execution environment's node. */
export const runtime = createLambdaRuntime(lambdaConfigFromEnv());

await runtime.start().catch(() => undefined);

/** The Lambda handler (`handler` in the bundle's `index.mjs`). */
export const handler = runtime.handler;
