/**
 * `SnsSqsChannel`: the `Channel` over AWS-managed pub-sub only (one SNS topic per cluster, an SQS
 * queue per node and per queue group), for deployments that run no broker of their own. The AWS
 * clients are made by the caller, so any endpoint works (AWS, LocalStack, fauxqs). How it maps the
 * channel onto SNS and SQS, and its limits: `README.md` in this folder.
 * Over 400 lines on purpose: the parts with a seam live beside it (attributes, fragments, health,
 * outbox, options, poller, resources); what stays is the one class that ties them to the `Channel`
 * contract (subscriptions, groups, request/reply, dispatch), whose private state they all share.
 */
import { UnsubscribeCommand } from '@aws-sdk/client-sns';
import { DeleteQueueCommand, type Message } from '@aws-sdk/client-sqs';
import { BrokerSetupError, ChannelRequestError, InvalidOptionsError, MessageTooLargeError } from '../../errors.ts';
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from '../channel.ts';
import type { MessageHandler, SubscribeOptions } from '../channel.ts';
import { assertPublishSubject, clusterPointToPoint, hasWildcard, subjectMatches } from '../subjects.ts';
import {
  attributeBytes,
  decodeBody,
  encodeBody,
  readAttributes,
  toMessageAttributes,
  type Attributes,
} from './attributes.ts';
import { formatFragmentLabel, Reassembler, splitPayload } from './fragments.ts';
import { ChannelHealth, describeError } from './health.ts';
import { Outbox, SNS_MAX_BYTES, type Outgoing } from './outbox.ts';
import { resolveOptions, type ResolvedSnsSqsOptions, type SnsSqsChannelOptions } from './options.ts';
import { Poller, type Verdict } from './poller.ts';
import {
  createQueue,
  deleteClusterResources,
  ensureTopic,
  groupFilterPolicy,
  groupQueueName,
  nodeFilterPolicy,
  nodeQueueBase,
  nodeQueueName,
  randomToken,
  reclaimNodeQueues,
  subscribeQueue,
  type DeleteClusterOptions,
} from './resources.ts';

export { clusterPointToPoint } from '../subjects.ts';
export { SNS_SQS_MAX_PAYLOAD, type SnsSqsChannelOptions } from './options.ts';
export type { DeleteClusterOptions } from './resources.ts';

/** Room kept for the message attributes (subject, sender, target, reply subject, fragment). */
const ATTRIBUTE_ROOM = 4096;
/** The largest payload one SNS message carries (base64 turns 3 bytes into 4); larger ones are sent in fragments. */
export const SNS_SQS_FRAGMENT_BYTES: number = Math.floor((SNS_MAX_BYTES - ATTRIBUTE_ROOM) / 4) * 3;
/** Fragments of a message that do not all arrive within this time are dropped. */
const FRAGMENT_TTL_MS = 60_000;
/** Bytes of incomplete messages kept at most; the oldest go first. */
const MAX_PARTIAL_BYTES = 64 * 1024 * 1024;
/** Bytes waiting to be published at most while SNS is unreachable (like NATS's reconnect buffer); the oldest go first. */
const MAX_OUTBOX_BYTES = 8 * 1024 * 1024;

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

interface Subscriber {
  readonly tokens: string[];
  readonly handler: MessageHandler;
}

/** One queue group on one subject: a shared queue and this channel's members of it. */
interface Group {
  readonly tokens: string[];
  readonly members: Set<Subscriber>;
  readonly ready: Promise<void>;
  poller?: Poller;
}

interface PendingRequest {
  heard: boolean;
  settle(outcome: { data: Uint8Array } | { error: ChannelRequestError }): void;
  /** Starts the no-responders window once SNS accepted the request. */
  sent(): void;
}

/**
 * A `Channel` over one SNS topic per cluster and SQS queues. Make one with
 * {@link SnsSqsChannel.connect}, which creates (or finds) the topic, creates this node's queue,
 * subscribes it and starts long polling. `close()` deletes this node's queue and subscription.
 */
export class SnsSqsChannel implements Channel {
  readonly kind = 'sns-sqs';
  readonly maxPayload: number;
  readonly stats: SnsSqsStats = {
    published: 0,
    publishFailures: 0,
    received: 0,
    filteredLocally: 0,
    receiptsSent: 0,
    fragmented: 0,
    fragmentsDropped: 0,
  };
  readonly node: string;
  readonly cluster: string;

  readonly #options: ResolvedSnsSqsOptions;
  readonly #route: (subject: string) => string | undefined;
  readonly #inboxPrefix: string;
  #inboxCounter = 0;

  #topicArn = '';
  #queueUrl = '';
  #subscriptionArn = '';
  #nodePoller?: Poller;
  #outbox?: Outbox;

  readonly #subscribers = new Set<Subscriber>();
  readonly #groups = new Map<string, Group>();
  readonly #requests = new Map<string, PendingRequest>();
  readonly #reassembler = new Reassembler({
    ttlMs: FRAGMENT_TTL_MS,
    maxBytes: MAX_PARTIAL_BYTES,
    onDrop: () => this.stats.fragmentsDropped++,
  });
  readonly #health = new ChannelHealth();
  /** Aborted by close(): ends the outbox's retries. */
  readonly #stop = new AbortController();
  readonly #background = new Set<Promise<unknown>>();
  #closed = false;
  #closing?: Promise<void>;
  /** The message being handled, to tell whether its handler replied at once (then no receipt is needed). */
  #handling?: { reply: string; replied: boolean };

  private constructor(options: ResolvedSnsSqsOptions) {
    this.#options = options;
    this.maxPayload = options.maxPayload;
    this.cluster = options.cluster;
    this.node = options.node;
    this.#route = options.pointToPoint ?? clusterPointToPoint(options.subjectPrefix);
    this.#inboxPrefix = `_INBOX.${this.node}.${randomToken(8)}.`;
  }

  /**
   * Creates (or finds) the cluster's topic, creates this node's queue with its filter policy and
   * starts long polling. Throws `InvalidOptionsError` for bad options; rejects with
   * `BrokerSetupError` (the AWS error as `cause`) when AWS refuses (credentials, permissions, endpoint).
   */
  static async connect(options: SnsSqsChannelOptions): Promise<SnsSqsChannel> {
    const channel = new SnsSqsChannel(resolveOptions(options));
    try {
      await channel.#setUp();
    } catch (error) {
      if (error instanceof BrokerSetupError) throw error;
      throw new BrokerSetupError(
        `SnsSqsChannel of node "${channel.node}" could not set up cluster "${channel.cluster}": ${describeError(error)}`,
        { cause: error },
      );
    }
    return channel;
  }

  /**
   * Deletes everything of one cluster: the topic, every queue subscribed to it (nodes that crashed,
   * queue groups) and their subscriptions. For tests, and for tearing a cluster down for good.
   */
  static deleteClusterResources(options: DeleteClusterOptions): Promise<void> {
    return deleteClusterResources(options);
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
    if (this.#handling && subject === this.#handling.reply)
      this.#handling.replied = data.byteLength <= SNS_SQS_FRAGMENT_BYTES && this.#outbox!.length < 10;
    this.#enqueue(subject, data, options?.reply !== undefined ? { reply: options.reply } : {});
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription {
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
    const queue = options.queue;
    const group = this.#joinGroup(subject, queue);
    group.members.add(subscriber);
    return {
      unsubscribe: () => {
        group.members.delete(subscriber);
        if (group.members.size === 0) this.#leaveGroup(subject, queue, group);
      },
    };
  }

  /** Async so that a closed channel rejects, as the `Channel` contract says, instead of throwing. */
  async request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    this.#assertOpen(subject);
    const inbox = `${this.#inboxPrefix}${++this.#inboxCounter}`;
    const noRespondersMs = this.#options.noRespondersMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      let window: ReturnType<typeof setTimeout> | undefined;
      const timer = setTimeout(
        () => pending.settle({ error: new ChannelRequestError('timeout', subject) }),
        options.timeoutMs,
      );
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
          if (noRespondersMs >= options.timeoutMs || !this.#requests.has(inbox)) return;
          window = setTimeout(() => {
            if (!pending.heard) pending.settle({ error: new ChannelRequestError('no-responders', subject) });
          }, noRespondersMs);
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
      const pumping = this.#outbox?.pumping;
      if (pumping) {
        await pumping;
        continue;
      }
      await Promise.all([...this.#groups.values()].map((group) => group.ready.catch(() => undefined)));
      if (!this.#outbox?.pumping) return;
    }
  }

  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#health.listen(listener);
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
    this.#health.closing();
    this.#stop.abort();
    for (const pending of [...this.#requests.values()])
      pending.settle({ error: new ChannelRequestError('closed', 'request') });
    while (this.#outbox?.pumping) await this.#outbox.pumping;
    const pollers = [this.#nodePoller, ...[...this.#groups.values()].map((group) => group.poller)].filter(
      (p): p is Poller => p !== undefined,
    );
    for (const poller of pollers) poller.stop();
    await Promise.allSettled([...pollers.map((p) => p.done), ...[...this.#groups.values()].map((g) => g.ready)]);
    this.#groups.clear();
    this.#subscribers.clear();
    this.#reassembler.clear();
    await Promise.allSettled([...this.#background]);
    const { sns, sqs } = this.#options;
    const failures: string[] = [];
    await sns
      .send(new UnsubscribeCommand({ SubscriptionArn: this.#subscriptionArn }))
      .catch((error: unknown) => failures.push(`unsubscribe: ${describeError(error)}`));
    await sqs
      .send(new DeleteQueueCommand({ QueueUrl: this.#queueUrl }))
      .catch((error: unknown) => failures.push(`delete queue: ${describeError(error)}`));
    if (failures.length > 0) this.#health.emit('error', `SnsSqsChannel could not clean up: ${failures.join('; ')}`);
    this.#health.emit('closed');
  }

  // ---- setup ----

  async #setUp(): Promise<void> {
    const { sns, sqs, topicArn, reclaimStaleQueues, waitTimeSeconds } = this.#options;
    const names = this.#options;
    this.#topicArn = topicArn ?? (await ensureTopic(sns, names));
    this.#outbox = new Outbox({
      sns,
      topicArn: this.#topicArn,
      stats: this.stats,
      health: this.#health,
      signal: this.#stop.signal,
      maxBytes: MAX_OUTBOX_BYTES,
    });
    const base = nodeQueueBase(names, this.node);
    if (reclaimStaleQueues) await reclaimNodeQueues(sns, sqs, this.#topicArn, base);
    const queue = await createQueue(
      sqs,
      this.#topicArn,
      nodeQueueName(base),
      { MessageRetentionPeriod: '300', VisibilityTimeout: '30' },
      waitTimeSeconds,
    );
    this.#queueUrl = queue.url;
    try {
      this.#subscriptionArn = await subscribeQueue(sns, this.#topicArn, queue.arn, nodeFilterPolicy(this.node));
    } catch (error) {
      await sqs.send(new DeleteQueueCommand({ QueueUrl: this.#queueUrl })).catch(() => undefined);
      throw error;
    }
    this.#nodePoller = this.#poll(this.#queueUrl, 10, (message) => this.#onNodeMessage(message));
  }

  #poll(url: string, maxMessages: number, handle: (message: Message) => Verdict): Poller {
    const { sqs, waitTimeSeconds } = this.#options;
    return new Poller({
      sqs,
      url,
      maxMessages,
      waitTimeSeconds,
      health: this.#health,
      handle,
      onReceived: () => this.stats.received++,
      track: (call) => this.#track(call),
    });
  }

  // ---- queue groups ----

  #joinGroup(subject: string, queue: string): Group {
    const key = `${subject} ${queue}`;
    const existing = this.#groups.get(key);
    if (existing) return existing;
    const group: Group = {
      tokens: subject.split('.'),
      members: new Set(),
      ready: this.#setUpGroup(subject, queue).then((url) => {
        if (this.#closed || this.#groups.get(key) !== group) return;
        group.poller = this.#poll(url, 1, (message) => this.#onGroupMessage(group, message));
      }),
    };
    group.ready.catch((error: unknown) => this.#health.fail(error, `queue group ${queue} on ${subject}`));
    this.#groups.set(key, group);
    return group;
  }

  /** Creates (or finds) the shared queue of a queue group and subscribes it to the subject's messages. */
  async #setUpGroup(subject: string, queue: string): Promise<string> {
    const { sns, sqs, waitTimeSeconds } = this.#options;
    // Short retention and visibility: a request is useless after a minute, and a member that dies
    // holding one frees it for another member after 10 s.
    const { url, arn } = await createQueue(
      sqs,
      this.#topicArn,
      groupQueueName(this.#options, subject, queue),
      { MessageRetentionPeriod: '60', VisibilityTimeout: '10' },
      waitTimeSeconds,
    );
    await subscribeQueue(sns, this.#topicArn, arn, groupFilterPolicy(subject));
    return url;
  }

  #leaveGroup(subject: string, queue: string, group: Group): void {
    const key = `${subject} ${queue}`;
    if (this.#groups.get(key) !== group) return;
    this.#groups.delete(key);
    group.poller?.stop();
  }

  // ---- receiving ----

  #onNodeMessage(message: Message): Verdict {
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
    const data =
      a.frag !== undefined
        ? this.#reassembler.add(a.sender ?? '', a.frag, decodeBody(message.Body), Date.now())
        : decodeBody(message.Body);
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

  #onGroupMessage(group: Group, message: Message): Verdict {
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
    const delivered: ChannelMessage = {
      subject: a.subject!,
      data,
      ...(a.reply !== undefined ? { reply: a.reply } : {}),
    };
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
      this.#enqueue(handling.reply, new Uint8Array(0), { ctl: 'receipt' }, undefined, true);
    }
  }

  // ---- sending ----

  /**
   * Queues a message, in fragments above one SNS message; `urgent` puts a one-piece message ahead
   * of the queue (receipts). Throws `MessageTooLargeError` over `maxPayload` or when the subjects
   * leave no room, `InvalidOptionsError` for a subject that cannot be published to.
   */
  #enqueue(
    subject: string,
    data: Uint8Array,
    extra: Pick<Attributes, 'reply' | 'rq' | 'ctl'>,
    sent?: () => void,
    urgent = false,
  ): void {
    assertPublishSubject(subject);
    if (data.byteLength > this.maxPayload) throw new MessageTooLargeError(subject, data.byteLength, this.maxPayload);
    const attributes: Attributes = { subject, sender: this.node, to: this.#route(subject), ...extra };
    const bytes = attributeBytes(attributes);
    if (bytes > ATTRIBUTE_ROOM - 64)
      throw new MessageTooLargeError(subject, bytes, ATTRIBUTE_ROOM - 64, 'subject and reply subject');
    const pieces = splitPayload(data, SNS_SQS_FRAGMENT_BYTES);
    const id = pieces.length > 1 ? randomToken(12) : '';
    if (pieces.length > 1) this.stats.fragmented++;
    const messages = pieces.map((piece, index): Outgoing => {
      const withLabel =
        pieces.length > 1
          ? { ...attributes, frag: formatFragmentLabel({ id, index, count: pieces.length }) }
          : attributes;
      const body = encodeBody(piece);
      const last = index === pieces.length - 1;
      return {
        subject,
        body,
        attributes: toMessageAttributes(withLabel),
        bytes: body.length + attributeBytes(withLabel),
        ...(last && sent ? { sent } : {}),
      };
    });
    this.#outbox!.add(messages, urgent);
  }

  // ---- helpers ----

  #track(promise: Promise<unknown>): void {
    this.#background.add(promise);
    void promise.finally(() => this.#background.delete(promise));
  }

  #assertOpen(subject: string): void {
    if (this.#closed) throw new ChannelRequestError('closed', subject);
  }
}
