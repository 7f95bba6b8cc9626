/**
 * `session-replication/lambda`: the user's Hono app as an AWS Lambda handler whose execution
 * environments are members of one session-replication cluster over NATS (Node.js runtimes only).
 */
export {
  createLambdaHandler,
  lambdaNodeId,
  type LambdaCatchUpOptions,
  type LambdaClusterNode,
  type LambdaHandlerOptions,
  type LambdaHandlerStats,
  type LambdaSessionHandler,
} from './handler.ts';
export { lambdaLogger } from './logger.ts';
export { parseNatsSettings, type LambdaNatsOptions, type NatsSettings } from './nats-settings.ts';
