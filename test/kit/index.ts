// Owns: the public surface of the test kit (re-exports only).
export * from "./ports.ts";
export * from "./wait.ts";
export * from "./processes.ts";
export * from "./nats-server.ts";
export * from "./node-process.ts";
export * from "./http-client.ts";
export * from "./dynamodb-local.ts";
export * from "./nats-fixtures.ts";
