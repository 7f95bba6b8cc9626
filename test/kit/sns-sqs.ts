// Owns: the SNS/SQS endpoint for SnsSqsChannel tests: fauxqs started in-process, or an external one.
//
// By default each test file starts its own fauxqs 1.9.2 emulator in-process on a random port
// (`startFauxqs({ port: 0, logger: false })`; 2.x needs Node 22). To run the same tests against
// LocalStack (or AWS), set AWS_ENDPOINT_URL, e.g.
//   AWS_ENDPOINT_URL=http://127.0.0.1:4566 npx vitest run test/integration/sns-sqs
// Then no emulator starts; region comes from AWS_REGION (default us-east-1) and credentials from the
// usual AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (default "test"/"test", which LocalStack accepts).
// Every test uses its own randomly named cluster (topic and queues) and deletes it afterwards.
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SnsSqsChannel, type SnsSqsChannelOptions } from '../../lib/channel/sns-sqs/index.ts';
import { startedPerFile } from './suite.ts';

/** Where SNS and SQS answer, and how to make clients for it. */
export interface SnsSqsEndpoint {
  /** http://127.0.0.1:PORT of fauxqs, or AWS_ENDPOINT_URL. */
  readonly endpoint: string;
  /** `fauxqs` or `external`. */
  readonly kind: 'fauxqs' | 'external';
  /** A fresh pair of clients (one per node, as separate processes would have). */
  clients(): { sns: SNSClient; sqs: SQSClient };
  /** Stops fauxqs (nothing for an external endpoint). */
  stop(): Promise<void>;
}

/** The SNS/SQS endpoint of the whole test file: started before its first test, stopped after its last. */
export function snsSqsPerFile(): SnsSqsEndpoint {
  const current = startedPerFile('SNS/SQS endpoint', startSnsSqs);
  return {
    get endpoint() {
      return current().endpoint;
    },
    get kind() {
      return current().kind;
    },
    clients: () => current().clients(),
    stop: () => current().stop(),
  };
}

/** Starts fauxqs in this process, or uses AWS_ENDPOINT_URL when it is set. */
export async function startSnsSqs(): Promise<SnsSqsEndpoint> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const external = process.env.AWS_ENDPOINT_URL;
  let endpoint: string;
  let stop: () => Promise<void>;
  if (external) {
    endpoint = external;
    stop = async () => undefined;
  } else {
    const { startFauxqs } = await import('fauxqs');
    const server = await startFauxqs({ port: 0, logger: false });
    endpoint = server.address;
    stop = () => server.stop();
  }
  const made: Array<{ destroy(): void }> = [];
  const config = () => ({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    },
  });
  return {
    endpoint,
    kind: external ? 'external' : 'fauxqs',
    clients() {
      const pair = { sns: new SNSClient(config()), sqs: new SQSClient(config()) };
      made.push(pair.sns, pair.sqs);
      return pair;
    },
    async stop() {
      for (const client of made.splice(0)) client.destroy();
      await stop();
    },
  };
}

/**
 * The no-responders window in tests: shorter than the 2 s default (loopback is fast), but long enough
 * that a loaded test machine (100+ ms hops) does not turn a slow answer into a false no-responders.
 */
export const TEST_NO_RESPONDERS_MS = 1500;

/** Connects a channel of `cluster` as `node`, with the test no-responders window. */
export function connectChannel(
  aws: SnsSqsEndpoint,
  cluster: string,
  node: string,
  options: Partial<SnsSqsChannelOptions> = {},
): Promise<SnsSqsChannel> {
  return SnsSqsChannel.connect({ ...aws.clients(), cluster, node, noRespondersMs: TEST_NO_RESPONDERS_MS, ...options });
}

/** Deletes a cluster's topic, queues and subscriptions (what closed channels leave: the topic and queue-group queues). */
export async function deleteCluster(aws: SnsSqsEndpoint, cluster: string): Promise<void> {
  const { sns, sqs } = aws.clients();
  await SnsSqsChannel.deleteClusterResources({ sns, sqs, cluster });
}
