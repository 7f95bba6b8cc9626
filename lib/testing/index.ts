/**
 * `session-replication/testing`: an in-process test cluster serving your app on several nodes, and
 * a fault injector (drop, duplicate, reorder, delay, partition, freeze, heal) for your own tests.
 */
export {
  CookieJar,
  createTestCluster,
  type TestApp,
  type TestClient,
  type TestCluster,
  type TestClusterOptions,
} from './test-cluster.ts';
export { FaultInjector, faultyChannel, type FaultCounts, type FaultScope } from './faults.ts';
