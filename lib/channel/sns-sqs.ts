/**
 * `SnsSqsChannel`: the `Channel` over AWS-managed pub-sub only (SNS + SQS), for deployments that run
 * no broker of their own. The `SNSClient` and `SQSClient` are made by the caller, so any endpoint
 * works: AWS, LocalStack (`AWS_ENDPOINT_URL`) or the fauxqs emulator. Web-standard apart from the
 * AWS SDK v3 clients (which run on edge runtimes too): no `node:` imports.
 *
 * Layout, per cluster and node:
 * - one SNS topic per cluster, `<namePrefix>-<cluster>` (created, or found since CreateTopic is
 *   idempotent; or given as `topicArn`);
 * - one SQS queue per node (`<namePrefix>-<cluster>-<node>-<random>`), subscribed to the topic with
 *   raw message delivery and the filter policy
 *   `{"sender": [{"anything-but": [node]}], "to": [node, {"exists": false}]}`: a node never receives
 *   its own messages, and gets broadcasts (no `to`) plus point-to-point messages for itself;
 * - one shared SQS queue per queue group (`<namePrefix>-<cluster>-grp-<hash of subject and group>`),
 *   subscribed with `{"subject": [subject or {"prefix": ...}], "to": [{"exists": false}],
 *   "frag": [{"exists": false}]}`. Every member long-polls it and SQS hands each message to one
 *   receiver: queue-group semantics without knowing the members. (Chosen over routing to one known
 *   member, which would need membership inside the channel.) Members may receive their own message
 *   there; it stays until the cluster is deleted (empty, 60 s retention).
 *
 * Each message carries its subject, sender, target (`to`), reply subject and control flags as SNS
 * message attributes; the payload is base64 in the body (SNS takes strings). The channel matches
 * subjects with the same wildcard rules as the memory channel (`subjectMatches`), and filters again
 * what the filter policy should have dropped (counted in `stats.filteredLocally`; 0 on fauxqs).
 * Payloads above {@link SNS_SQS_FRAGMENT_BYTES} (one 256 KiB SNS message in base64) travel in
 * fragments reassembled by the receiver in any order, up to `maxPayload` (default 1 MiB, as NATS);
 * queue groups get whole messages only.
 *
 * Point-to-point subjects: `<subjectPrefix>.<cluster>.node.<n>` (ClusterBus's node subjects) and reply
 * inboxes `_INBOX.<n>.…` carry `to = n`. The node id must therefore be the cluster node's id: pass
 * the same `node` to `createCluster` (`node: channel.node`); subscribing to another node's subject
 * throws `InvalidOptionsError`.
 *
 * Request/reply: the reply subject is an inbox of this node, so replies arrive on its own queue. SNS
 * cannot tell whether anybody subscribes, so `no-responders` is inferred: a receiver that has a
 * matching subscription and whose reply does not leave at once in one piece sends a small delivery
 * receipt ahead of its queue; a request that hears nothing (no reply, fragment or receipt) within
 * `noRespondersMs` after SNS accepted it rejects with `no-responders`, otherwise with `timeout` at
 * `timeoutMs`. Set `noRespondersMs` above the round trip's p99 (a slow answer is otherwise taken
 * for no answer); with `timeoutMs <= noRespondersMs` only `timeout` is possible.
 *
 * Delivery: publishes go out in PublishBatch calls of up to 10, one call at a time. While SNS is
 * unreachable they are kept (up to 8 MiB) and retried with backoff, and the status goes
 * `disconnected` then `connected`; refusals (4xx) are dropped and reported as `error`. SQS keeps what
 * arrives while a receiver is away (retention 5 min), so a reconnect loses nothing.
 *
 * Limits (see README "Choosing NATS or SNS"): SNS standard topics neither order nor deduplicate
 * (SQS standard is at-least-once); filter policy changes take up to 15 minutes on AWS (this channel
 * never changes one); by default a topic takes 200 filter policies, i.e. about 200 nodes per
 * cluster; SQS queue names are at most 80 characters (longer ids are shortened with a hash).
 */
import {
  CreateTopicCommand,
  DeleteTopicCommand,
  ListSubscriptionsByTopicCommand,
  ListTopicsCommand,
  PublishBatchCommand,
  SubscribeCommand,
  UnsubscribeCommand,
  type MessageAttributeValue,
  type SNSClient,
} from '@aws-sdk/client-sns';
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SetQueueAttributesCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { ChannelRequestError, InvalidOptionsError } from '../errors.ts';
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from './channel.ts';
import { subjectMatches } from './memory.ts';

/** SNS's limit for one message, body and attributes together (and for one PublishBatch). */
const SNS_MAX_BYTES = 256 * 1024;
/** Room kept for the message attributes (subject, sender, target, reply subject, fragment). */
const ATTRIBUTE_ROOM = 4096;
/** The largest payload one SNS message carries (base64 turns 3 bytes into 4); larger ones are sent in fragments. */
export const SNS_SQS_FRAGMENT_BYTES: number = Math.floor((SNS_MAX_BYTES - ATTRIBUTE_ROOM) / 4) * 3;
/** The default largest payload (NATS's default max_payload): 1 MiB, at most 6 fragments. */
export const SNS_SQS_MAX_PAYLOAD = 1024 * 1024;
/** Fragments of a message that do not all arrive within this time are dropped. */
const FRAGMENT_TTL_MS = 60_000;
/** Bytes of incomplete messages kept at most; the oldest go first. */
const MAX_PARTIAL_BYTES = 64 * 1024 * 1024;
/** Bytes waiting to be published at most while SNS is unreachable (like NATS's reconnect buffer); the oldest go first. */
const MAX_OUTBOX_BYTES = 8 * 1024 * 1024;
/** SQS queue names: at most 80 characters of A-Z a-z 0-9 _ -. */
const MAX_QUEUE_NAME = 80;
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
/** The body of an empty payload: SNS rejects empty messages, and `-` is no base64. */
const EMPTY_BODY = '-';
const EMPTY = new Uint8Array(0);

/** Options of {@link SnsSqsChannel.connect}. */
export interface SnsSqsChannelOptions {
  /** SNS client made by the caller (region, credentials, endpoint). */
  readonly sns: SNSClient;
  /** SQS client made by the caller; same account and region as the topic. */
  readonly sqs: SQSClient;
  /** The cluster: one SNS topic per cluster. A-Z a-z 0-9 _ -, at most 64. */
  readonly cluster: string;
  /** This node's id; must equal `createCluster`'s `node`. A-Z a-z 0-9 _ -, at most 64. */
  readonly node: string;
  /** Prefix of the topic and queue names (default `sessrep`). */
  readonly namePrefix?: string;
  /** Use this existing topic instead of creating (or finding) `<namePrefix>-<cluster>`. */
  readonly topicArn?: string;
  /** `createCluster`'s `subjectPrefix` (default `sessrep`): its node subjects are point-to-point. */
  readonly subjectPrefix?: string;
  /** Which node a subject is addressed to (point-to-point), or undefined for a broadcast. Replaces the default rule. */
  readonly pointToPoint?: (subject: string) => string | undefined;
  /** Long-poll wait, 1-20 s (default 20). Shorter only costs more empty receives. */
  readonly waitTimeSeconds?: number;
  /** A request that hears no reply and no delivery receipt this long after SNS accepted it rejects with `no-responders` (default 2000 ms). */
  readonly noRespondersMs?: number;
  /** Delete the queues left behind by earlier runs of this node id (crashed before `close`) while connecting (default true). */
  readonly reclaimStaleQueues?: boolean;
  /** The largest payload (default 1 MiB); above {@link SNS_SQS_FRAGMENT_BYTES} a message travels in several SNS messages. */
  readonly maxPayload?: number;
}

/** Counters for tests and metrics. */
export interface SnsSqsStats {
  /** Messages accepted by SNS. */
  published: number;
  /** Messages SNS refused or that could not be sent. */
  publishFailures: number;
  /** Messages received from SQS (node and group queues). */
  received: number;
  /** Received messages the filter policy should have dropped (own messages, or for another node). */
  filteredLocally: number;
  /** Delivery receipts sent for requests that were not answered while being handled. */
  receiptsSent: number;
  /** Messages sent in several fragments. */
  fragmented: number;
  /** Incomplete fragmented messages dropped (expired or over the memory bound). */
  fragmentsDropped: number;
}

interface Outgoing {
  readonly subject: string;
  /** Part of a fragmented message: `<id>.<index>.<count>`. */
  readonly frag?: string;
  /** A delivery receipt: sent ahead of the queue, in a batch of its own kind. */
  readonly urgent?: boolean;
  readonly body: string;
  readonly attributes: Record<string, MessageAttributeValue>;
  readonly bytes: number;
  /** Called once SNS accepted the message. */
  readonly sent?: () => void;
}

interface Subscriber {
  readonly tokens: string[];
  readonly handler: (message: ChannelMessage) => void;
}

/** A queue this channel long-polls. */
interface Poller {
  readonly url: string;
  readonly abort: AbortController;
  readonly maxMessages: number;
  /** Handles one message: delete it, or release it for another receiver. */
  readonly handle: (message: Message) => 'delete' | 'release';
  done?: Promise<void>;
}

/** One queue group on one subject: a shared queue and this channel's members of it. */
interface Group {
  readonly subject: string;
  readonly tokens: string[];
  readonly members: Set<Subscriber>;
  readonly ready: Promise<void>;
  poller?: Poller;
}

/** A fragmented message being put together. */
interface Partial {
  readonly parts: Array<Uint8Array | undefined>;
  got: number;
  bytes: number;
  readonly since: number;
}

interface PendingRequest {
  heard: boolean;
  settle(outcome: { data: Uint8Array } | { error: ChannelRequestError }): void;
  /** Starts the no-responders window once SNS accepted the request. */
  sent(): void;
}

/** The default point-to-point rule: reply inboxes `_INBOX.<n>.…` and `<subjectPrefix>.<cluster>.node.<n>`. */
export function clusterPointToPoint(subjectPrefix = 'sessrep'): (subject: string) => string | undefined {
  const prefix = subjectPrefix.split('.');
  return (subject) => {
    const tokens = subject.split('.');
    if (tokens[0] === '_INBOX') return tokens.length >= 3 ? tokens[1] : undefined;
    if (tokens.length !== prefix.length + 3 || tokens[prefix.length + 1] !== 'node') return undefined;
    for (let i = 0; i < prefix.length; i++) if (tokens[i] !== prefix[i]) return undefined;
    return tokens[prefix.length + 2];
  };
}

/**
 * A `Channel` over one SNS topic per cluster and SQS queues. Make one with
 * {@link SnsSqsChannel.connect}, which creates (or finds) the topic, creates this node's queue,
 * subscribes it and starts long polling. `close()` deletes this node's queue and subscription.
 */
export class SnsSqsChannel implements Channel {
  readonly kind = 'sns-sqs';
  readonly maxPayload: number;
  readonly stats: SnsSqsStats = { published: 0, publishFailures: 0, received: 0, filteredLocally: 0, receiptsSent: 0, fragmented: 0, fragmentsDropped: 0 };
  readonly node: string;
  readonly cluster: string;

  readonly #sns: SNSClient;
  readonly #sqs: SQSClient;
  readonly #namePrefix: string;
  readonly #waitTimeSeconds: number;
  readonly #noRespondersMs: number;
  readonly #route: (subject: string) => string | undefined;
  readonly #inboxPrefix: string;
  #inboxCounter = 0;

  #topicArn = '';
  #queueUrl = '';
  #queueArn = '';
  #subscriptionArn = '';
  #nodePoller?: Poller;

  readonly #subscribers = new Set<Subscriber>();
  readonly #groups = new Map<string, Group>();
  readonly #requests = new Map<string, PendingRequest>();
  readonly #outbox: Outgoing[] = [];
  #outboxBytes = 0;
  #pumping?: Promise<void>;
  /** Aborted by close(): ends backoff waits. */
  readonly #stop = new AbortController();
  readonly #partials = new Map<string, Partial>();
  #partialBytes = 0;
  readonly #background = new Set<Promise<unknown>>();
  readonly #listeners: Array<(status: ChannelStatus, detail?: string) => void> = [];
  #healthy = true;
  #closed = false;
  #closing?: Promise<void>;
  /** The message being handled, to tell whether its handler replied at once (then no receipt is needed). */
  #handling?: { reply: string; replied: boolean };

  private constructor(options: SnsSqsChannelOptions) {
    for (const [what, value] of [
      ['cluster', options.cluster],
      ['node', options.node],
      ['namePrefix', options.namePrefix ?? 'sessrep'],
    ] as const) {
      if (!TOKEN.test(value)) throw new InvalidOptionsError(`SnsSqsChannel: ${what} must be 1-64 characters of A-Z a-z 0-9 _ -`);
    }
    const wait = options.waitTimeSeconds ?? 20;
    if (!Number.isInteger(wait) || wait < 1 || wait > 20) throw new InvalidOptionsError('SnsSqsChannel: waitTimeSeconds must be an integer from 1 to 20');
    const noResponders = options.noRespondersMs ?? 2000;
    if (!(noResponders > 0)) throw new InvalidOptionsError('SnsSqsChannel: noRespondersMs must be positive');
    const maxPayload = options.maxPayload ?? SNS_SQS_MAX_PAYLOAD;
    if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > 16 * 1024 * 1024) throw new InvalidOptionsError('SnsSqsChannel: maxPayload must be an integer from 1 to 16 MiB');
    this.maxPayload = maxPayload;
    this.#sns = options.sns;
    this.#sqs = options.sqs;
    this.cluster = options.cluster;
    this.node = options.node;
    this.#namePrefix = options.namePrefix ?? 'sessrep';
    this.#waitTimeSeconds = wait;
    this.#noRespondersMs = noResponders;
    this.#route = options.pointToPoint ?? clusterPointToPoint(options.subjectPrefix);
    this.#inboxPrefix = `_INBOX.${this.node}.${randomToken(8)}.`;
  }

  /**
   * Creates (or finds) the cluster's topic, creates this node's queue with its filter policy and
   * starts long polling. Rejects when AWS refuses (credentials, permissions, endpoint).
   */
  static async connect(options: SnsSqsChannelOptions): Promise<SnsSqsChannel> {
    const channel = new SnsSqsChannel(options);
    await channel.#setUp(options);
    return channel;
  }

  /**
   * Deletes everything of one cluster: the topic, every queue subscribed to it (nodes that crashed,
   * queue groups) and their subscriptions. For tests, and for tearing a cluster down for good.
   */
  static async deleteClusterResources(options: { sns: SNSClient; sqs: SQSClient; cluster: string; namePrefix?: string; topicArn?: string }): Promise<void> {
    const topicArn = options.topicArn ?? (await findTopic(options.sns, topicName(options.namePrefix ?? 'sessrep', options.cluster)));
    if (!topicArn) return;
    for (const subscription of await listSubscriptions(options.sns, topicArn)) {
      await options.sns.send(new UnsubscribeCommand({ SubscriptionArn: subscription.arn })).catch(() => undefined);
      if (subscription.protocol === 'sqs') await deleteQueueByArn(options.sqs, subscription.endpoint);
    }
    await options.sns.send(new DeleteTopicCommand({ TopicArn: topicArn }));
  }

  /** The cluster's topic. */
  get topicArn(): string {
    return this.#topicArn;
  }

  /** This node's queue. */
  get queueUrl(): string {
    return this.#queueUrl;
  }

  /** This node's subscription to the topic. */
  get subscriptionArn(): string {
    return this.#subscriptionArn;
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    this.#assertOpen(subject);
    // A reply sent while handling a request makes a receipt unnecessary, if it leaves with the next batch in one piece.
    if (this.#handling && subject === this.#handling.reply) this.#handling.replied = data.byteLength <= SNS_SQS_FRAGMENT_BYTES && this.#outbox.length < 10;
    this.#enqueue(subject, data, options?.reply !== undefined ? { reply: options.reply } : {});
  }

  subscribe(subject: string, handler: (message: ChannelMessage) => void, options?: { queue?: string }): ChannelSubscription {
    this.#assertOpen(subject);
    const target = hasWildcard(subject) ? undefined : this.#route(subject);
    if (target !== undefined && target !== this.node) {
      throw new InvalidOptionsError(
        `SnsSqsChannel of node "${this.node}" cannot receive "${subject}", which is addressed to node "${target}": give createCluster the channel's node id (node: channel.node)`,
      );
    }
    const subscriber: Subscriber = { tokens: subject.split('.'), handler };
    if (options?.queue === undefined) {
      this.#subscribers.add(subscriber);
      return { unsubscribe: () => void this.#subscribers.delete(subscriber) };
    }
    const group = this.#joinGroup(subject, options.queue);
    group.members.add(subscriber);
    return {
      unsubscribe: () => {
        group.members.delete(subscriber);
        if (group.members.size === 0) this.#leaveGroup(subject, options.queue!, group);
      },
    };
  }

  /** Async so that a closed channel rejects, as the `Channel` contract says, instead of throwing. */
  async request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    this.#assertOpen(subject);
    const inbox = `${this.#inboxPrefix}${++this.#inboxCounter}`;
    return new Promise<Uint8Array>((resolve, reject) => {
      let window: ReturnType<typeof setTimeout> | undefined;
      const timer = setTimeout(() => pending.settle({ error: new ChannelRequestError('timeout', subject) }), options.timeoutMs);
      const pending: PendingRequest = {
        heard: false,
        settle: (outcome) => {
          if (this.#requests.get(inbox) !== pending) return;
          this.#requests.delete(inbox);
          clearTimeout(timer);
          clearTimeout(window);
          if ('data' in outcome) resolve(outcome.data);
          else reject(outcome.error);
        },
        sent: () => {
          // No window when it would end after the timeout: then nobody could tell the two apart.
          if (this.#noRespondersMs >= options.timeoutMs || !this.#requests.has(inbox)) return;
          window = setTimeout(() => {
            if (!pending.heard) pending.settle({ error: new ChannelRequestError('no-responders', subject) });
          }, this.#noRespondersMs);
        },
      };
      this.#requests.set(inbox, pending);
      try {
        this.#enqueue(subject, data, { reply: inbox, rq: '1' }, () => pending.sent());
      } catch (error) {
        this.#requests.delete(inbox);
        clearTimeout(timer);
        reject(error);
      }
    });
  }

  /** Resolves once SNS accepted everything published so far, and queue-group subscriptions are in place. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#pumping) {
        await this.#pumping;
        continue;
      }
      await Promise.all([...this.#groups.values()].map((group) => group.ready.catch(() => undefined)));
      if (!this.#pumping) return;
    }
  }

  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Sends what is queued, stops polling, then deletes this node's subscription and queue (the node
   * leaves). Queue-group queues stay: other members may still use them (`deleteClusterResources`
   * removes them). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    for (const pending of [...this.#requests.values()]) pending.settle({ error: new ChannelRequestError('closed', 'request') });
    while (this.#pumping) await this.#pumping;
    const pollers = [this.#nodePoller, ...[...this.#groups.values()].map((group) => group.poller)].filter((p): p is Poller => p !== undefined);
    for (const poller of pollers) poller.abort.abort();
    await Promise.allSettled([...pollers.map((p) => p.done), ...[...this.#groups.values()].map((g) => g.ready)]);
    this.#groups.clear();
    this.#subscribers.clear();
    this.#partials.clear();
    await Promise.allSettled([...this.#background]);
    const failures: string[] = [];
    await this.#sns.send(new UnsubscribeCommand({ SubscriptionArn: this.#subscriptionArn })).catch((error: unknown) => failures.push(`unsubscribe: ${describe(error)}`));
    await this.#sqs.send(new DeleteQueueCommand({ QueueUrl: this.#queueUrl })).catch((error: unknown) => failures.push(`delete queue: ${describe(error)}`));
    if (failures.length > 0) this.#emit('error', `SnsSqsChannel could not clean up: ${failures.join('; ')}`);
    this.#emit('closed');
  }

  // ---- setup ----

  async #setUp(options: SnsSqsChannelOptions): Promise<void> {
    this.#topicArn = options.topicArn ?? (await this.#sns.send(new CreateTopicCommand({ Name: topicName(this.#namePrefix, this.cluster) }))).TopicArn!;
    const base = fitName(`${this.#namePrefix}-${this.cluster}-${this.node}`, 7);
    if (options.reclaimStaleQueues ?? true) await this.#reclaim(base);
    const queue = await this.#createQueue(`${base}-${randomToken(6)}`, { MessageRetentionPeriod: '300', VisibilityTimeout: '30' });
    this.#queueUrl = queue.url;
    this.#queueArn = queue.arn;
    const policy = { sender: [{ 'anything-but': [this.node] }], to: [this.node, { exists: false }] };
    try {
      this.#subscriptionArn = await this.#subscribeQueue(this.#queueArn, policy);
    } catch (error) {
      await this.#sqs.send(new DeleteQueueCommand({ QueueUrl: this.#queueUrl })).catch(() => undefined);
      throw error;
    }
    this.#nodePoller = this.#startPoller(this.#queueUrl, 10, (message) => this.#onNodeMessage(message));
  }

  /** Deletes queues (and their subscriptions) of earlier runs of this node id: they crashed before `close`. */
  async #reclaim(base: string): Promise<void> {
    for (const subscription of await listSubscriptions(this.#sns, this.#topicArn)) {
      const name = subscription.endpoint.slice(subscription.endpoint.lastIndexOf(':') + 1);
      if (subscription.protocol !== 'sqs' || name.length !== base.length + 7 || !name.startsWith(`${base}-`)) continue;
      await this.#sns.send(new UnsubscribeCommand({ SubscriptionArn: subscription.arn })).catch(() => undefined);
      await deleteQueueByArn(this.#sqs, subscription.endpoint);
    }
  }

  async #createQueue(name: string, attributes: Record<string, string>): Promise<{ url: string; arn: string }> {
    const url = (await this.#sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { ...attributes, ReceiveMessageWaitTimeSeconds: String(this.#waitTimeSeconds) } }))).QueueUrl!;
    const found = await this.#sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
    const arn = found.Attributes?.QueueArn;
    if (!arn) throw new Error(`SnsSqsChannel: no ARN for queue ${name}`);
    // Lets the topic (and only it) deliver to the queue; AWS requires this, emulators ignore it.
    const policy = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: 'sns.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: arn, Condition: { ArnEquals: { 'aws:SourceArn': this.#topicArn } } }],
    };
    await this.#sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { Policy: JSON.stringify(policy) } }));
    return { url, arn };
  }

  async #subscribeQueue(queueArn: string, filterPolicy: Record<string, unknown>): Promise<string> {
    const out = await this.#sns.send(
      new SubscribeCommand({
        TopicArn: this.#topicArn,
        Protocol: 'sqs',
        Endpoint: queueArn,
        ReturnSubscriptionArn: true,
        Attributes: { RawMessageDelivery: 'true', FilterPolicyScope: 'MessageAttributes', FilterPolicy: JSON.stringify(filterPolicy) },
      }),
    );
    return out.SubscriptionArn!;
  }

  // ---- queue groups ----

  #joinGroup(subject: string, queue: string): Group {
    const key = `${subject} ${queue}`;
    const existing = this.#groups.get(key);
    if (existing) return existing;
    const group: Group = {
      subject,
      tokens: subject.split('.'),
      members: new Set(),
      ready: this.#setUpGroup(subject, queue).then((url) => {
        if (this.#closed || this.#groups.get(key) !== group) return;
        group.poller = this.#startPoller(url, 1, (message) => this.#onGroupMessage(group, message));
      }),
    };
    group.ready.catch((error: unknown) => this.#fail(error, `queue group ${queue} on ${subject}`));
    this.#groups.set(key, group);
    return group;
  }

  /** Creates (or finds) the shared queue of a queue group and subscribes it to the subject's messages. */
  async #setUpGroup(subject: string, queue: string): Promise<string> {
    const name = `${fitName(`${this.#namePrefix}-${this.cluster}-grp`, 17)}-${hash64(`${subject} ${queue}`)}`;
    // Short retention and visibility: a request is useless after a minute, and a member that dies
    // holding one frees it for another member after 10 s.
    const { url, arn } = await this.#createQueue(name, { MessageRetentionPeriod: '60', VisibilityTimeout: '10' });
    const tokens = subject.split('.');
    const literal = tokens.findIndex((token) => token === '*' || token === '>');
    // Fragments of one message could land on different members: a queue group gets whole messages only.
    const policy: Record<string, unknown> = { to: [{ exists: false }], frag: [{ exists: false }] };
    if (literal === -1) policy.subject = [subject];
    else if (literal > 0) policy.subject = [{ prefix: `${tokens.slice(0, literal).join('.')}.` }];
    await this.#subscribeQueue(arn, policy);
    return url;
  }

  #leaveGroup(subject: string, queue: string, group: Group): void {
    const key = `${subject} ${queue}`;
    if (this.#groups.get(key) !== group) return;
    this.#groups.delete(key);
    group.poller?.abort.abort();
  }

  // ---- receiving ----

  #startPoller(url: string, maxMessages: number, handle: Poller['handle']): Poller {
    const poller: Poller = { url, abort: new AbortController(), maxMessages, handle };
    poller.done = this.#poll(poller);
    return poller;
  }

  async #poll(poller: Poller): Promise<void> {
    const signal = poller.abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      let messages: Message[];
      try {
        const out = await this.#sqs.send(
          new ReceiveMessageCommand({ QueueUrl: poller.url, MaxNumberOfMessages: poller.maxMessages, WaitTimeSeconds: this.#waitTimeSeconds, MessageAttributeNames: ['All'] }),
          { abortSignal: signal },
        );
        messages = out.Messages ?? [];
        failures = 0;
        this.#up();
      } catch (error) {
        if (signal.aborted) break;
        this.#fail(error, 'receive');
        failures++;
        await sleep(Math.min(5000, 50 * 2 ** Math.min(failures, 7)), signal);
        continue;
      }
      const remove: string[] = [];
      const release: string[] = [];
      for (const message of messages) {
        this.stats.received++;
        let verdict: 'delete' | 'release' = 'delete';
        try {
          verdict = poller.handle(message);
        } catch {
          // Never let one message stop the loop.
        }
        if (message.ReceiptHandle) (verdict === 'delete' ? remove : release).push(message.ReceiptHandle);
      }
      if (remove.length > 0) {
        this.#track(
          this.#sqs.send(new DeleteMessageBatchCommand({ QueueUrl: poller.url, Entries: remove.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle })) })).catch((error: unknown) => this.#fail(error, 'delete')),
        );
      }
      if (release.length > 0) {
        this.#track(
          this.#sqs
            .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: poller.url, Entries: release.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle, VisibilityTimeout: 0 })) }))
            .catch((error: unknown) => this.#fail(error, 'release')),
        );
      }
    }
  }

  #onNodeMessage(message: Message): 'delete' {
    const a = readAttributes(message);
    if (a.sender === this.node || (a.to !== undefined && a.to !== this.node)) {
      this.stats.filteredLocally++;
      return 'delete';
    }
    if (a.subject === undefined) return 'delete';
    // The first fragment of a large reply tells the requester somebody answers.
    if (a.frag !== undefined && a.subject.startsWith(this.#inboxPrefix)) {
      const pending = this.#requests.get(a.subject);
      if (pending) pending.heard = true;
    }
    const data = a.frag !== undefined ? this.#reassemble(a.sender ?? '', a.frag, message.Body) : decodeBody(message.Body);
    if (data === undefined) return 'delete'; // More fragments to come.
    if (a.subject.startsWith(this.#inboxPrefix)) {
      const pending = this.#requests.get(a.subject);
      if (!pending) return 'delete'; // A late reply or receipt.
      if (a.ctl === 'receipt') pending.heard = true;
      else pending.settle({ data });
      return 'delete';
    }
    if (a.ctl !== undefined) return 'delete';
    const subject = a.subject.split('.');
    const matched = [...this.#subscribers].filter((s) => subjectMatches(s.tokens, subject));
    if (matched.length > 0) this.#dispatch(matched, a, data);
    return 'delete';
  }

  /** Adds one fragment (`<id>.<index>.<count>`); returns the whole payload once every fragment arrived, in any order. */
  #reassemble(sender: string, frag: string, body: string | undefined): Uint8Array | undefined {
    const [id, indexText, countText] = frag.split('.');
    const index = Number(indexText);
    const count = Number(countText);
    if (!id || !Number.isInteger(index) || !Number.isInteger(count) || index < 0 || index >= count || count > 1024) return undefined;
    const now = Date.now();
    for (const [key, partial] of this.#partials) {
      if (now - partial.since <= FRAGMENT_TTL_MS && this.#partialBytes <= MAX_PARTIAL_BYTES) break; // Oldest first.
      this.#dropPartial(key, partial);
    }
    const key = `${sender} ${id}`;
    let partial = this.#partials.get(key);
    if (!partial) {
      partial = { parts: new Array<Uint8Array | undefined>(count), got: 0, bytes: 0, since: now };
      this.#partials.set(key, partial);
    }
    if (partial.parts.length !== count || partial.parts[index] !== undefined) return undefined; // A duplicate.
    const part = decodeBody(body);
    partial.parts[index] = part;
    partial.got++;
    partial.bytes += part.byteLength;
    this.#partialBytes += part.byteLength;
    if (partial.got < count) return undefined;
    this.#partials.delete(key);
    this.#partialBytes -= partial.bytes;
    const whole = new Uint8Array(partial.bytes);
    let offset = 0;
    for (const piece of partial.parts) {
      whole.set(piece!, offset);
      offset += piece!.byteLength;
    }
    return whole;
  }

  #dropPartial(key: string, partial: Partial): void {
    this.#partials.delete(key);
    this.#partialBytes -= partial.bytes;
    this.stats.fragmentsDropped++;
  }

  #onGroupMessage(group: Group, message: Message): 'delete' | 'release' {
    const a = readAttributes(message);
    if (a.subject === undefined || a.to !== undefined || a.ctl !== undefined || a.frag !== undefined) return 'delete';
    // The filter policy matches the literal prefix only; the rest of the pattern is checked here.
    if (!subjectMatches(group.tokens, a.subject.split('.'))) return 'delete';
    const members = [...group.members];
    if (members.length === 0) return 'release'; // Left the group meanwhile: another member takes it.
    this.#dispatch([members[Math.floor(Math.random() * members.length)]!], a, decodeBody(message.Body));
    return 'delete';
  }

  #dispatch(subscribers: Subscriber[], a: Attributes, data: Uint8Array): void {
    const delivered: ChannelMessage = { subject: a.subject!, data, ...(a.reply !== undefined ? { reply: a.reply } : {}) };
    const handling = a.rq !== undefined && a.reply !== undefined ? { reply: a.reply, replied: false } : undefined;
    this.#handling = handling;
    try {
      for (const subscriber of subscribers) {
        try {
          subscriber.handler(delivered);
        } catch {
          // A handler error must never break delivery to others.
        }
      }
    } finally {
      this.#handling = undefined;
    }
    // Tells the requester somebody is there, unless the reply already went out.
    if (handling && !handling.replied && !this.#closed) {
      this.stats.receiptsSent++;
      this.#enqueue(handling.reply, EMPTY, { ctl: 'receipt' }, undefined, true);
    }
  }

  // ---- sending ----

  /** Queues a message (in fragments above one SNS message); `first` puts a one-piece message ahead of the queue (receipts). */
  #enqueue(subject: string, data: Uint8Array, extra: { reply?: string; rq?: string; ctl?: string }, sent?: () => void, first = false): void {
    if (data.byteLength > this.maxPayload) {
      throw new RangeError(`message on ${subject} is ${data.byteLength} bytes, over the channel's maxPayload of ${this.maxPayload}`);
    }
    const attributes: Record<string, MessageAttributeValue> = { subject: text(subject), sender: text(this.node) };
    const target = this.#route(subject);
    if (target !== undefined) attributes.to = text(target);
    if (extra.reply !== undefined) attributes.reply = text(extra.reply);
    if (extra.rq !== undefined) attributes.rq = text(extra.rq);
    if (extra.ctl !== undefined) attributes.ctl = text(extra.ctl);
    let attributeBytes = 0;
    for (const [name, value] of Object.entries(attributes)) attributeBytes += name.length + 6 + utf8Length(value.StringValue!);
    if (attributeBytes > ATTRIBUTE_ROOM - 64) throw new RangeError(`message on ${subject}: subject and reply subject take ${attributeBytes} bytes, over ${ATTRIBUTE_ROOM - 64}`);
    const count = Math.max(1, Math.ceil(data.byteLength / SNS_SQS_FRAGMENT_BYTES));
    const id = count > 1 ? randomToken(12) : '';
    if (count > 1) this.stats.fragmented++;
    for (let i = 0; i < count; i++) {
      const part = count > 1 ? data.subarray(i * SNS_SQS_FRAGMENT_BYTES, (i + 1) * SNS_SQS_FRAGMENT_BYTES) : data;
      const frag = count > 1 ? `${id}.${i}.${count}` : undefined;
      const body = part.byteLength === 0 ? EMPTY_BODY : toBase64(part);
      const bytes = body.length + attributeBytes + (frag !== undefined ? 4 + 6 + frag.length : 0);
      const last = i === count - 1;
      const entry: Outgoing = {
        subject,
        body,
        attributes: frag !== undefined ? { ...attributes, frag: text(frag) } : attributes,
        bytes,
        ...(frag !== undefined ? { frag } : {}),
        ...(last && sent ? { sent } : {}),
      };
      if (first && count === 1) this.#outbox.unshift({ ...entry, urgent: true });
      else this.#outbox.push(entry);
      this.#outboxBytes += bytes;
    }
    // SNS unreachable for long: drop the oldest rather than grow without bound.
    while (this.#outboxBytes > MAX_OUTBOX_BYTES && this.#outbox.length > count) {
      const dropped = this.#outbox.shift()!;
      this.#outboxBytes -= dropped.bytes;
      this.stats.publishFailures++;
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#pumping) return;
    // Starts on the next microtask: what one handler publishes shares batches, and its receipt goes first.
    this.#pumping = Promise.resolve()
      .then(() => this.#pump())
      .finally(() => {
        this.#pumping = undefined;
        // Something queued between the pump's last look and now: keep going.
        if (this.#outbox.length > 0) this.#kick();
      });
  }

  /**
   * Sends the outbox in order, up to 10 messages (and 256 KiB) per PublishBatch, one batch at a
   * time. While SNS is unreachable (network, 5xx, throttling) the batch is retried with backoff,
   * like NATS's reconnect buffer; a refusal (4xx) drops it and reports `error`.
   */
  async #pump(): Promise<void> {
    let failures = 0;
    while (this.#outbox.length > 0) {
      const batch: Outgoing[] = [];
      let bytes = 0;
      const urgent = this.#outbox[0]!.urgent === true;
      while (batch.length < 10 && this.#outbox.length > 0 && bytes + this.#outbox[0]!.bytes <= SNS_MAX_BYTES && (this.#outbox[0]!.urgent === true) === urgent) {
        const next = this.#outbox.shift()!;
        batch.push(next);
        bytes += next.bytes;
      }
      this.#outboxBytes -= bytes;
      try {
        const out = await this.#sns.send(
          new PublishBatchCommand({
            TopicArn: this.#topicArn,
            PublishBatchRequestEntries: batch.map((entry, i) => ({ Id: String(i), Message: entry.body, MessageAttributes: entry.attributes })),
          }),
        );
        failures = 0;
        this.#up();
        const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
        batch.forEach((entry, i) => {
          if (failed.has(String(i))) return;
          this.stats.published++;
          entry.sent?.();
        });
        if (failed.size > 0) {
          this.stats.publishFailures += failed.size;
          const first = [...failed.values()][0]!;
          this.#emit('error', `SNS refused ${failed.size} message(s), e.g. on ${batch[Number(first.Id)]?.subject}: ${first.Code} ${first.Message ?? ''}`.trim());
        }
      } catch (error) {
        this.#fail(error, `publish on ${batch[0]!.subject}`);
        if (isTransient(error) && !this.#closed) {
          this.#outbox.unshift(...batch);
          this.#outboxBytes += bytes;
          failures++;
          await sleep(Math.min(5000, 50 * 2 ** Math.min(failures, 7)), this.#stop.signal);
          continue;
        }
        this.stats.publishFailures += batch.length;
        if (this.#closed) {
          // Closing while SNS is unreachable: give up on the rest too.
          this.stats.publishFailures += this.#outbox.length;
          this.#outbox.length = 0;
          this.#outboxBytes = 0;
        }
      }
    }
  }

  // ---- status ----

  #fail(error: unknown, what: string): void {
    if (this.#closed && isAbort(error)) return;
    const detail = `${what}: ${describe(error)}`;
    if (!isTransient(error)) {
      this.#emit('error', detail);
    } else if (this.#healthy) {
      this.#healthy = false;
      this.#emit('disconnected', detail);
    }
  }

  #up(): void {
    if (this.#healthy) return;
    this.#healthy = true;
    this.#emit('connected');
  }

  #emit(status: ChannelStatus, detail?: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(status, detail);
      } catch {
        // A listener error must not break the channel.
      }
    }
  }

  #track(promise: Promise<unknown>): void {
    this.#background.add(promise);
    void promise.finally(() => this.#background.delete(promise));
  }

  #assertOpen(subject: string): void {
    if (this.#closed) throw new ChannelRequestError('closed', subject);
  }
}

// ---- helpers ----

interface Attributes {
  frag?: string;
  subject?: string;
  sender?: string;
  to?: string;
  reply?: string;
  rq?: string;
  ctl?: string;
}

function readAttributes(message: Message): Attributes {
  const raw = message.MessageAttributes ?? {};
  const out: Attributes = {};
  for (const name of ['subject', 'sender', 'to', 'reply', 'rq', 'ctl', 'frag'] as const) {
    const value = raw[name]?.StringValue;
    if (value !== undefined) out[name] = value;
  }
  return out;
}

const text = (value: string): MessageAttributeValue => ({ DataType: 'String', StringValue: value });

function hasWildcard(subject: string): boolean {
  return subject.split('.').some((token) => token === '*' || token === '>');
}

function topicName(namePrefix: string, cluster: string): string {
  return `${namePrefix}-${cluster}`;
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

function randomToken(length: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  for (const byte of bytes) out += alphabet[byte % alphabet.length];
  return out;
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function decodeBody(body: string | undefined): Uint8Array {
  if (body === undefined || body === EMPTY_BODY || body === '') return new Uint8Array(0);
  const binary = atob(body);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function utf8Length(value: string): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** Network errors, 5xx and throttling: worth retrying. A 4xx refusal (permissions, validation, missing queue) is not. */
function isTransient(error: unknown): boolean {
  const e = error as { $metadata?: { httpStatusCode?: number }; name?: string } | undefined;
  const status = e?.$metadata?.httpStatusCode;
  if (/Throttl/i.test(e?.name ?? '')) return true;
  return status === undefined || status >= 500 || status === 429;
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || /abort/i.test(error.message));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
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

async function listSubscriptions(sns: SNSClient, topicArn: string): Promise<Array<{ arn: string; protocol: string; endpoint: string }>> {
  const out: Array<{ arn: string; protocol: string; endpoint: string }> = [];
  let token: string | undefined;
  do {
    const page = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, ...(token ? { NextToken: token } : {}) }));
    for (const s of page.Subscriptions ?? []) {
      if (s.SubscriptionArn && s.SubscriptionArn.startsWith('arn:')) out.push({ arn: s.SubscriptionArn, protocol: s.Protocol ?? '', endpoint: s.Endpoint ?? '' });
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
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: name, ...(parts[4] ? { QueueOwnerAWSAccountId: parts[4] } : {}) }));
    if (QueueUrl) await sqs.send(new DeleteQueueCommand({ QueueUrl }));
  } catch {
    // Already gone.
  }
}
