// Owns: names no other test uses, so every test can share one nats-server, one DynamoDB Local and one SNS/SQS endpoint.

/**
 * `<prefix>-<pid>-<random>`, at most 64 characters: a valid cluster name (a NATS subject token), and
 * so also a valid stream, topic and DynamoDB table name.
 */
export function uniqueCluster(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 64);
}
