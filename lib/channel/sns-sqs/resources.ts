/**
 * The AWS resources of an SNS/SQS cluster: its topic, a queue per node and per queue group, their
 * subscriptions and filter policies, reclaiming what crashed nodes left, and deleting it all.
 * Names are `<namePrefix>-<cluster>…`, fitted into SQS's 80 characters with a hash.
 */
import {
  CreateTopicCommand,
  DeleteTopicCommand,
  ListSubscriptionsByTopicCommand,
  ListTopicsCommand,
  SubscribeCommand,
  UnsubscribeCommand,
  type SNSClient,
} from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SetQueueAttributesCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { BrokerSetupError } from '../../errors.ts';

/** SQS queue names: at most 80 characters of A-Z a-z 0-9 _ -. */
const MAX_QUEUE_NAME = 80;
/** Length of the random suffix of a node queue name (`-` plus 6 characters). */
const NODE_SUFFIX = 7;

/** What identifies a cluster's resources. */
export interface ClusterNames {
  readonly namePrefix: string;
  readonly cluster: string;
}

/** The topic name of a cluster: `<namePrefix>-<cluster>`. */
export function topicName({ namePrefix, cluster }: ClusterNames): string {
  return `${namePrefix}-${cluster}`;
}

/** Creates the cluster's topic, or finds it (CreateTopic is idempotent); returns its ARN. */
export async function ensureTopic(sns: SNSClient, names: ClusterNames): Promise<string> {
  const { TopicArn } = await sns.send(new CreateTopicCommand({ Name: topicName(names) }));
  if (!TopicArn) throw new BrokerSetupError(`SNS returned no ARN for topic ${topicName(names)}`);
  return TopicArn;
}

/** The name of a node's queue without its random suffix: what `reclaimNodeQueues` looks for. */
export function nodeQueueBase(names: ClusterNames, node: string): string {
  return fitName(`${names.namePrefix}-${names.cluster}-${node}`, NODE_SUFFIX);
}

/** A fresh name for a node's queue: the base plus a random suffix (a restarted node never reuses one). */
export function nodeQueueName(base: string): string {
  return `${base}-${randomToken(NODE_SUFFIX - 1)}`;
}

/** The shared queue of a queue group on a subject: one per cluster, subject and group. */
export function groupQueueName(names: ClusterNames, subject: string, queue: string): string {
  return `${fitName(`${names.namePrefix}-${names.cluster}-grp`, 17)}-${hash64(`${subject} ${queue}`)}`;
}

/**
 * A node's filter policy: never its own messages; broadcasts (no `to`) and point-to-point messages
 * for itself.
 */
export function nodeFilterPolicy(node: string): Record<string, unknown> {
  return { sender: [{ 'anything-but': [node] }], to: [node, { exists: false }] };
}

/**
 * A queue group's filter policy: broadcasts on the subject (its literal prefix for a wildcard
 * subject; the channel checks the rest), whole messages only, since fragments of one message could
 * land on different members.
 */
export function groupFilterPolicy(subject: string): Record<string, unknown> {
  const tokens = subject.split('.');
  const literal = tokens.findIndex((token) => token === '*' || token === '>');
  const policy: Record<string, unknown> = { to: [{ exists: false }], frag: [{ exists: false }] };
  if (literal === -1) policy.subject = [subject];
  else if (literal > 0) policy.subject = [{ prefix: `${tokens.slice(0, literal).join('.')}.` }];
  return policy;
}

/**
 * Creates a queue (or finds it: CreateQueue is idempotent for the same attributes) that only the
 * topic may send to, with long polling of `waitTimeSeconds`; returns its URL and ARN.
 */
export async function createQueue(
  sqs: SQSClient,
  topicArn: string,
  name: string,
  attributes: Record<string, string>,
  waitTimeSeconds: number,
): Promise<{ url: string; arn: string }> {
  const { QueueUrl: url } = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: { ...attributes, ReceiveMessageWaitTimeSeconds: String(waitTimeSeconds) },
    }),
  );
  if (!url) throw new BrokerSetupError(`SQS returned no URL for queue ${name}`);
  const found = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  const arn = found.Attributes?.QueueArn;
  if (!arn) throw new BrokerSetupError(`SQS returned no ARN for queue ${name}`);
  // Lets the topic (and only it) deliver to the queue; AWS requires this, emulators ignore it.
  const policy = {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Service: 'sns.amazonaws.com' },
        Action: 'sqs:SendMessage',
        Resource: arn,
        Condition: { ArnEquals: { 'aws:SourceArn': topicArn } },
      },
    ],
  };
  await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { Policy: JSON.stringify(policy) } }));
  return { url, arn };
}

/** Subscribes a queue to the topic with raw delivery and a filter policy on message attributes; returns the subscription ARN. */
export async function subscribeQueue(
  sns: SNSClient,
  topicArn: string,
  queueArn: string,
  filterPolicy: Record<string, unknown>,
): Promise<string> {
  const { SubscriptionArn } = await sns.send(
    new SubscribeCommand({
      TopicArn: topicArn,
      Protocol: 'sqs',
      Endpoint: queueArn,
      ReturnSubscriptionArn: true,
      Attributes: {
        RawMessageDelivery: 'true',
        FilterPolicyScope: 'MessageAttributes',
        FilterPolicy: JSON.stringify(filterPolicy),
      },
    }),
  );
  if (!SubscriptionArn) throw new BrokerSetupError(`SNS returned no subscription ARN for queue ${queueArn}`);
  return SubscriptionArn;
}

/** Deletes the queues (and their subscriptions) that earlier runs of a node left: they crashed before `close`. */
export async function reclaimNodeQueues(sns: SNSClient, sqs: SQSClient, topicArn: string, base: string): Promise<void> {
  for (const subscription of await listSubscriptions(sns, topicArn)) {
    const name = subscription.endpoint.slice(subscription.endpoint.lastIndexOf(':') + 1);
    if (subscription.protocol !== 'sqs' || name.length !== base.length + NODE_SUFFIX || !name.startsWith(`${base}-`))
      continue;
    await sns.send(new UnsubscribeCommand({ SubscriptionArn: subscription.arn })).catch(() => undefined);
    await deleteQueueByArn(sqs, subscription.endpoint);
  }
}

/** What {@link deleteClusterResources} needs. */
export interface DeleteClusterOptions {
  readonly sns: SNSClient;
  readonly sqs: SQSClient;
  readonly cluster: string;
  /** @default 'sessrep' */
  readonly namePrefix?: string;
  /** The topic, when it is not `<namePrefix>-<cluster>`. */
  readonly topicArn?: string;
}

/** Deletes the topic, every queue subscribed to it (crashed nodes, queue groups) and their subscriptions. */
export async function deleteClusterResources(options: DeleteClusterOptions): Promise<void> {
  const topicArn =
    options.topicArn ??
    (await findTopic(
      options.sns,
      topicName({ namePrefix: options.namePrefix ?? 'sessrep', cluster: options.cluster }),
    ));
  if (!topicArn) return;
  for (const subscription of await listSubscriptions(options.sns, topicArn)) {
    await options.sns.send(new UnsubscribeCommand({ SubscriptionArn: subscription.arn })).catch(() => undefined);
    if (subscription.protocol === 'sqs') await deleteQueueByArn(options.sqs, subscription.endpoint);
  }
  await options.sns.send(new DeleteTopicCommand({ TopicArn: topicArn }));
}

async function findTopic(sns: SNSClient, name: string): Promise<string | undefined> {
  let token: string | undefined;
  do {
    const page = await sns.send(new ListTopicsCommand(token ? { NextToken: token } : {}));
    const found = page.Topics?.find((topic) => topic.TopicArn?.endsWith(`:${name}`));
    if (found?.TopicArn) return found.TopicArn;
    token = page.NextToken;
  } while (token);
  return undefined;
}

async function listSubscriptions(
  sns: SNSClient,
  topicArn: string,
): Promise<Array<{ arn: string; protocol: string; endpoint: string }>> {
  const out: Array<{ arn: string; protocol: string; endpoint: string }> = [];
  let token: string | undefined;
  do {
    const page = await sns.send(
      new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, ...(token ? { NextToken: token } : {}) }),
    );
    for (const s of page.Subscriptions ?? []) {
      if (s.SubscriptionArn?.startsWith('arn:'))
        out.push({ arn: s.SubscriptionArn, protocol: s.Protocol ?? '', endpoint: s.Endpoint ?? '' });
    }
    token = page.NextToken;
  } while (token);
  return out;
}

/** Deletes a queue given its ARN (`arn:aws:sqs:<region>:<account>:<name>`); a missing queue is fine. */
async function deleteQueueByArn(sqs: SQSClient, arn: string): Promise<void> {
  const parts = arn.split(':');
  const name = parts[5];
  if (!name) return;
  try {
    const { QueueUrl } = await sqs.send(
      new GetQueueUrlCommand({ QueueName: name, ...(parts[4] ? { QueueOwnerAWSAccountId: parts[4] } : {}) }),
    );
    if (QueueUrl) await sqs.send(new DeleteQueueCommand({ QueueUrl }));
  } catch {
    // Already gone.
  }
}

/** Keeps `base` plus `reserve` more characters within SQS's 80; long names keep a hash of the whole. */
function fitName(base: string, reserve: number): string {
  if (base.length + reserve <= MAX_QUEUE_NAME) return base;
  return `${base.slice(0, MAX_QUEUE_NAME - reserve - 9)}-${hash32(base, 0x811c9dc5)}`;
}

/** FNV-1a, 32 bits, as 8 hex digits. */
function hash32(value: string, seed: number): string {
  let h = seed >>> 0;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** Two FNV-1a hashes with different seeds: 16 hex digits. */
function hash64(value: string): string {
  return hash32(value, 0x811c9dc5) + hash32(value, 0x050c5d1f);
}

/** `length` random characters of a-z 0-9. */
export function randomToken(length: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  for (const byte of bytes) out += alphabet[byte % alphabet.length];
  return out;
}
