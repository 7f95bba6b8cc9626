/**
 * The launcher: free ports, process groups with cleanup, and the servers a local cluster or a test
 * needs (nats-server, DynamoDB Local, HAProxy), on loopback. Node-only. The `cluster` command and the
 * test kit (`test/kit`) both start everything through it.
 */
export * from './dynamodb-local.ts';
export * from './haproxy.ts';
export * from './nats-server.ts';
export * from './ports.ts';
export * from './processes.ts';
export * from './repo.ts';
export * from './wait.ts';
export * from './watchdog.ts';
