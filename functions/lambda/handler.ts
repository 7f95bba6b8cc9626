/**
 * AWS Lambda entry point: the demo app behind an API Gateway HTTP API, a Function URL or an ALB,
 * configured from the environment (see `lambdaConfigFromEnv`).
 *
 * The node starts during INIT (top-level await): the NATS settings are fetched, the connection is
 * opened and the cluster joins (snapshot load plus log replay) once per execution environment, and
 * every invocation reuses them. A failed start is logged and retried by the next invocation, which
 * answers 503 until a start succeeds.
 */
import { lambdaConfigFromEnv } from './config.ts';
import { createDemoLambdaHandler } from './runtime.ts';

/** The Lambda handler (`handler` in the bundle's `index.mjs`). */
export const handler = createDemoLambdaHandler(lambdaConfigFromEnv());

await handler.start().catch(() => undefined);
