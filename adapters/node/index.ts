/** `session-replication/node`: serve your Hono app as a cluster member node on Node.js. */
export {
  serveNode,
  type FetchApp,
  type NodeAdminOptions,
  type NodeServer,
  type ServeNodeOptions,
} from './serve-node.ts';
export { processMetrics } from './process-metrics.ts';
