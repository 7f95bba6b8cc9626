// Owns: the public surface of the test kit: the launcher (servers, processes, ports, waiting) plus test-only helpers.
export * from '../../functions/launch/index.ts';
export * from './concurrency.ts';
export * from './cookie-client.ts';
export * from './haproxy.ts';
export * from './logger.ts';
export * from './memory-nodes.ts';
export * from './names.ts';
export * from './nats-fixtures.ts';
export * from './nats-nodes.ts';
export * from './node-process.ts';
export * from './persistent-nodes.ts';
export * from './snapshots.ts';
export * from './sns-sqs.ts';
export * from './timings.ts';
export * from './faults.ts';
export * from './holding-channel.ts';
export * from './suite.ts';
