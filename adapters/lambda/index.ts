/**
 * `session-replication/lambda`: the user's Hono app as an AWS Lambda handler whose execution
 * environments are members of one session-replication cluster over NATS (Node.js runtimes only).
 */
export { createLambdaHandler, lambdaNodeId } from './handler.ts';
export type {
  LambdaCatchUpOptions,
  LambdaClusterNode,
  LambdaHandlerOptions,
  LambdaHandlerStats,
  LambdaSessionHandler,
} from './options.ts';
export { lambdaLogger } from './logger.ts';
export { parseNatsSettings, type LambdaNatsOptions, type NatsSettings } from './nats-settings.ts';
