// Owns: the servers shared by a whole vitest run: one nats-server (JetStream + WebSocket) and one DynamoDB Local.
import type { TestProject } from "vitest/node";
import { startDynamoDbLocal, type DynamoDbLocalHandle } from "./kit/dynamodb-local.ts";
import { startNatsServer } from "./kit/nats-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** nats://127.0.0.1:PORT of the shared server. */
    natsUrl: string;
    /** ws://127.0.0.1:PORT of the shared server. */
    natsWsUrl: string;
    /** DynamoDB endpoint for snapshot-store tests: the shared DynamoDB Local, or env DYNAMODB_ENDPOINT. */
    ddbEndpoint: string;
  }
}

/**
 * Starts the shared servers in parallel (the JVM is the slow one), provides their URLs to tests
 * (inject("natsUrl"), inject("ddbEndpoint")), and stops them on teardown.
 *
 * DynamoDB: when env DYNAMODB_ENDPOINT is set (e.g. http://127.0.0.1:4566 for LocalStack, or
 * https://dynamodb.us-east-1.amazonaws.com for AWS), no DynamoDB Local is started and the same suite
 * runs against that endpoint. Tests create their own uniquely named tables there and delete them
 * afterwards; against AWS, set real credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and AWS_REGION.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.DYNAMODB_ENDPOINT;
  // Test workers inherit this: the SDK's notice about its Node 22 requirement in 2027 is noise here (as in bin/).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const [nats, ddb] = await Promise.allSettled([
    startNatsServer({ jetstream: true, websocket: true }),
    external ? Promise.resolve(undefined) : startDynamoDbLocal(),
  ]);
  if (nats.status === "rejected" || ddb.status === "rejected") {
    await Promise.allSettled([nats.status === "fulfilled" ? nats.value.stop() : undefined, ddb.status === "fulfilled" ? ddb.value?.stop() : undefined]);
    throw nats.status === "rejected" ? nats.reason : (ddb as PromiseRejectedResult).reason;
  }
  const server = nats.value;
  const dynamodb: DynamoDbLocalHandle | undefined = ddb.value;
  project.provide("natsUrl", server.url);
  project.provide("natsWsUrl", server.wsUrl!);
  project.provide("ddbEndpoint", external ?? dynamodb!.endpoint);
  return async () => {
    await Promise.allSettled([server.stop(), dynamodb?.stop()]);
  };
}
