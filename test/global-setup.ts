// Owns: the servers shared by the integration and e2e projects: one nats-server (JetStream + WebSocket) and one DynamoDB Local.
import type { TestProject } from 'vitest/node';
import {
  startDynamoDbLocal,
  startNatsServer,
  type DynamoDbLocalHandle,
  type NatsServerHandle,
} from '../functions/launch/index.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** nats://127.0.0.1:PORT of the shared server. */
    natsUrl: string;
    /** ws://127.0.0.1:PORT of the shared server. */
    natsWsUrl: string;
    /** DynamoDB endpoint for snapshot-store tests: the shared DynamoDB Local, or env DYNAMODB_ENDPOINT. */
    ddbEndpoint: string;
  }
}

interface SharedServers {
  nats: NatsServerHandle;
  dynamodb: DynamoDbLocalHandle | undefined;
  ddbEndpoint: string;
  users: number;
}

// Global setup runs in the main vitest process once per project: the projects of one run share one set of servers.
const SHARED = Symbol.for('session-replication.test.shared-servers');
const holder = globalThis as { [SHARED]?: Promise<SharedServers> };

async function startServers(): Promise<SharedServers> {
  const external = process.env.DYNAMODB_ENDPOINT;
  // Test workers inherit this: the SDK's notice about its Node 22 requirement in 2027 is noise here (as in bin/).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const [nats, ddb] = await Promise.allSettled([
    startNatsServer({ jetstream: true, websocket: true }),
    external ? Promise.resolve(undefined) : startDynamoDbLocal(),
  ]);
  if (nats.status === 'rejected' || ddb.status === 'rejected') {
    await Promise.allSettled([
      nats.status === 'fulfilled' ? nats.value.stop() : undefined,
      ddb.status === 'fulfilled' ? ddb.value?.stop() : undefined,
    ]);
    throw nats.status === 'rejected' ? nats.reason : (ddb as PromiseRejectedResult).reason;
  }
  return { nats: nats.value, dynamodb: ddb.value, ddbEndpoint: external ?? ddb.value!.endpoint, users: 0 };
}

/**
 * Starts the shared servers (in parallel: the JVM is the slow one) for the first project that needs
 * them, provides their URLs to tests (inject("natsUrl"), inject("ddbEndpoint")), and stops them when
 * the last project is done.
 *
 * DynamoDB: when env DYNAMODB_ENDPOINT is set (e.g. http://127.0.0.1:4566 for LocalStack, or
 * https://dynamodb.us-east-1.amazonaws.com for AWS), no DynamoDB Local is started and the same suite
 * runs against that endpoint. Tests create their own uniquely named tables there and delete them
 * afterwards; against AWS, set real credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and AWS_REGION.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  holder[SHARED] ??= startServers();
  const servers = await holder[SHARED].catch((error: unknown) => {
    delete holder[SHARED];
    throw error;
  });
  servers.users++;
  project.provide('natsUrl', servers.nats.url);
  project.provide('natsWsUrl', servers.nats.wsUrl!);
  project.provide('ddbEndpoint', servers.ddbEndpoint);
  return async () => {
    if (--servers.users > 0) return;
    delete holder[SHARED];
    await Promise.allSettled([servers.nats.stop(), servers.dynamodb?.stop()]);
  };
}
