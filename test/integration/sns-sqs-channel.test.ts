// Owns: SnsSqsChannel tests: the Channel contract suite plus SNS/SQS specifics (own messages filtered by
// the filter policy, point-to-point, cleanup on close, reclaiming a crashed run's queue, isolated
// clusters, payload limits, delivery receipts). fauxqs in-process, or AWS_ENDPOINT_URL (see test/kit/sns-sqs.ts).
import { ListSubscriptionsByTopicCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChannelMessage, ChannelStatus } from '../../lib/channel/channel.ts';
import { SNS_SQS_FRAGMENT_BYTES, SNS_SQS_MAX_PAYLOAD, SnsSqsChannel } from '../../lib/channel/sns-sqs/index.ts';
import { BrokerSetupError, InvalidOptionsError, MessageTooLargeError } from '../../lib/errors.ts';
import {
  connectChannel,
  deleteCluster,
  freePort,
  snsSqsPerFile,
  TEST_NO_RESPONDERS_MS,
  uniqueCluster,
  waitFor,
} from '../kit/index.ts';
import { describeChannelContract } from '../contracts/channel.ts';

const aws = snsSqsPerFile();

/** Clusters made by the current test, deleted after it (topic and queue-group queues outlive closed channels). */
const clusters: string[] = [];
async function deleteClusters(): Promise<void> {
  await Promise.allSettled(clusters.splice(0).map((cluster) => deleteCluster(aws, cluster)));
}

describeChannelContract(
  'sns-sqs',
  async (count) => {
    const cluster = uniqueCluster('contract');
    clusters.push(cluster);
    return Promise.all(Array.from({ length: count }, (_, i) => connectChannel(aws, cluster, `n${i}`)));
  },
  // SNS standard topics do not promise order; no-responders comes after the discovery window.
  { ordered: false, noRespondersWithinMs: TEST_NO_RESPONDERS_MS + 1500 },
  deleteClusters,
);

const utf8 = new TextEncoder();
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function collector() {
  const got: ChannelMessage[] = [];
  return {
    got,
    handler: (message: ChannelMessage) => void got.push(message),
    texts: () => got.map((m) => text(m.data)),
  };
}

describe('SnsSqsChannel: SNS/SQS specifics', () => {
  const open: SnsSqsChannel[] = [];
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((channel) => channel.close()));
    await deleteClusters();
  });
  async function nodes(cluster: string, ...names: string[]): Promise<SnsSqsChannel[]> {
    if (!clusters.includes(cluster)) clusters.push(cluster);
    const made = await Promise.all(names.map((name) => connectChannel(aws, cluster, name)));
    open.push(...made);
    return made;
  }
  /** Sends a marker from `from` to `to` on `subject` and waits for it: everything `to`'s queue got before is handled by then. */
  async function roundTrip(from: SnsSqsChannel, to: SnsSqsChannel, subject: string): Promise<void> {
    const marker = `marker-${Math.random()}`;
    const seen = collector();
    const subscription = to.subscribe(subject, seen.handler);
    from.publish(subject, utf8.encode(marker));
    await waitFor(`marker on ${to.node}`, () => seen.texts().includes(marker));
    subscription.unsubscribe();
  }

  it("the filter policy keeps a node's own messages out of its queue (SNS drops them, not the channel)", async () => {
    const cluster = uniqueCluster('own');
    const [a, b] = await nodes(cluster, 'a', 'b');
    const onA = collector();
    const onB = collector();
    a!.subscribe('app.x', onA.handler);
    b!.subscribe('app.x', onB.handler);
    for (let i = 0; i < 20; i++) a!.publish('app.x', utf8.encode(`a${i}`));
    await waitFor('20 messages on b', () => onB.got.length === 20);
    // Two markers b -> a: a's own 20 messages, had SNS delivered them, were queued before either.
    await roundTrip(b!, a!, 'app.marker');
    await roundTrip(b!, a!, 'app.marker');
    expect(onA.got).toEqual([]);
    expect(a!.stats.received).toBe(2); // only the markers reached a's queue
    expect(a!.stats.filteredLocally).toBe(0);
    expect(a!.stats.published).toBe(20);
  });

  it("point-to-point: node subjects and replies reach their node only; others' queues never get them", async () => {
    const cluster = uniqueCluster('p2p');
    const [a, b, c] = await nodes(cluster, 'a', 'b', 'c');
    const onB = collector();
    const wildcardOnC = collector();
    b!.subscribe(`sessrep.${cluster}.node.b`, onB.handler);
    // A wildcard is allowed, but SNS gives c only what is addressed to c (or broadcast).
    c!.subscribe(`sessrep.${cluster}.node.*`, wildcardOnC.handler);
    for (let i = 0; i < 5; i++) a!.publish(`sessrep.${cluster}.node.b`, utf8.encode(`to-b-${i}`));
    a!.publish(`sessrep.${cluster}.node.c`, utf8.encode('to-c'));
    await waitFor('5 messages on b', () => onB.got.length === 5);
    await waitFor('1 message on c', () => wildcardOnC.got.length === 1);
    await roundTrip(a!, c!, 'app.marker');
    expect(wildcardOnC.texts()).toEqual(['to-c']);
    expect(c!.stats.received).toBe(2); // to-c and the marker
    expect(c!.stats.filteredLocally).toBe(0);
    // Request/reply: the reply goes to the requester's queue only.
    b!.subscribe(`sessrep.${cluster}.node.b`, (m) => {
      if (m.reply) b!.publish(m.reply, utf8.encode(`pong:${text(m.data)}`));
    });
    expect(text(await a!.request(`sessrep.${cluster}.node.b`, utf8.encode('ping'), { timeoutMs: 5000 }))).toBe(
      'pong:ping',
    );
    await roundTrip(a!, c!, 'app.marker');
    expect(c!.stats.received).toBe(3);
    // A node cannot subscribe to another node's subject: it would never receive it.
    expect(() => a!.subscribe(`sessrep.${cluster}.node.b`, () => undefined)).toThrow(InvalidOptionsError);
  });

  it("close() deletes the node's queue and subscription; the topic stays for the others", async () => {
    const cluster = uniqueCluster('close');
    const [a, b] = await nodes(cluster, 'a', 'b');
    const { sns, sqs } = aws.clients();
    const subscriptions = async () =>
      ((await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: a!.topicArn }))).Subscriptions ?? []).map(
        (s) => s.SubscriptionArn,
      );
    expect(await subscriptions()).toEqual(expect.arrayContaining([a!.subscriptionArn, b!.subscriptionArn]));
    await sqs.send(new GetQueueAttributesCommand({ QueueUrl: a!.queueUrl, AttributeNames: ['QueueArn'] }));
    const statuses: ChannelStatus[] = [];
    a!.onStatus((status) => statuses.push(status));
    await a!.close();
    expect(statuses).toEqual(['closed']); // no cleanup error reported
    expect(await subscriptions()).not.toContain(a!.subscriptionArn);
    expect(await subscriptions()).toContain(b!.subscriptionArn);
    await expect(
      sqs.send(new GetQueueAttributesCommand({ QueueUrl: a!.queueUrl, AttributeNames: ['QueueArn'] })),
    ).rejects.toMatchObject({
      name: expect.stringMatching(/QueueDoesNotExist|NonExistentQueue/),
    });
    // b still works.
    const [c] = await nodes(cluster, 'c');
    const onB = collector();
    b!.subscribe('app.y', onB.handler);
    c!.publish('app.y', utf8.encode('still here'));
    await waitFor('b still receives', () => onB.got.length === 1);
  });

  it('connecting a node id again reclaims the queue an earlier run left behind (crash before close)', async () => {
    const cluster = uniqueCluster('reclaim');
    const [crashed] = await nodes(cluster, 'a');
    const statuses: string[] = [];
    crashed!.onStatus((status, detail) => statuses.push(`${status} ${detail ?? ''}`));
    const { sns, sqs } = aws.clients();
    const [again] = await nodes(cluster, 'a');
    const subscriptions = (
      (await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: again!.topicArn }))).Subscriptions ?? []
    ).map((s) => s.SubscriptionArn);
    expect(subscriptions).toEqual([again!.subscriptionArn]);
    await expect(
      sqs.send(new GetQueueAttributesCommand({ QueueUrl: crashed!.queueUrl, AttributeNames: ['QueueArn'] })),
    ).rejects.toThrow();
    // The old run, were it still alive, reports that its queue is gone.
    await waitFor('the old run reports its queue is gone', () =>
      statuses.some((s) => s.startsWith('error') || s.startsWith('disconnected')),
    );
  });

  it('two clusters on one account are isolated: same subjects, separate topics', async () => {
    const [x1, x2] = await nodes(uniqueCluster('iso-x'), 'n1', 'n2');
    const [y1, y2] = await nodes(uniqueCluster('iso-y'), 'n1', 'n2');
    expect(x1!.topicArn).not.toBe(y1!.topicArn);
    const onX2 = collector();
    const onY2 = collector();
    x2!.subscribe('sessrep.>', onX2.handler);
    y2!.subscribe('sessrep.>', onY2.handler);
    x1!.publish('sessrep.c.delta', utf8.encode('from x'));
    y1!.publish('sessrep.c.delta', utf8.encode('from y'));
    await waitFor('one message on each', () => onX2.got.length === 1 && onY2.got.length === 1);
    await roundTrip(x1!, x2!, 'app.marker');
    await roundTrip(y1!, y2!, 'app.marker');
    expect(onX2.texts()).toEqual(['from x']);
    expect(onY2.texts()).toEqual(['from y']);
  });

  it("carries binary payloads up to maxPayload (1 MiB): base64 bodies, several SNS messages above one message's limit", async () => {
    const [a, b, c] = await nodes(uniqueCluster('big'), 'a', 'b', 'c');
    expect(a!.maxPayload).toBe(SNS_SQS_MAX_PAYLOAD);
    const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
    const onB = collector();
    const onC = collector();
    b!.subscribe('app.big', onB.handler);
    c!.subscribe('app.big', onC.handler);
    const sizes = [SNS_SQS_FRAGMENT_BYTES, SNS_SQS_FRAGMENT_BYTES + 1, 500_000, SNS_SQS_MAX_PAYLOAD];
    for (const size of sizes) a!.publish('app.big', pattern(size));
    await waitFor('4 big messages on b and c', () => onB.got.length === 4 && onC.got.length === 4, {
      timeoutMs: 20_000,
    });
    for (const got of [onB, onC]) {
      const bySize = new Map(got.got.map((m) => [m.data.length, m.data]));
      for (const size of sizes) expect(Buffer.from(bySize.get(size)!).equals(Buffer.from(pattern(size)))).toBe(true);
    }
    expect(a!.stats.fragmented).toBe(3);
    expect(b!.stats.fragmentsDropped).toBe(0);
    // A large reply travels the same way to the requester's queue.
    b!.subscribe('app.get', (m) => b!.publish(m.reply!, pattern(700_000)));
    const reply = await a!.request('app.get', utf8.encode('?'), { timeoutMs: 10_000 });
    expect(Buffer.from(reply).equals(Buffer.from(pattern(700_000)))).toBe(true);
    expect(() => a!.publish('app.big', new Uint8Array(SNS_SQS_MAX_PAYLOAD + 1))).toThrow(MessageTooLargeError);
    await expect(a!.request('app.big', new Uint8Array(SNS_SQS_MAX_PAYLOAD + 1), { timeoutMs: 1000 })).rejects.toThrow(
      MessageTooLargeError,
    );
  });

  it('keeps publishing through an SNS outage: retries with backoff, reports disconnected then connected', async () => {
    const cluster = uniqueCluster('outage');
    const [b] = await nodes(cluster, 'b');
    const { sns, sqs } = aws.clients();
    let down = true;
    let refused = 0;
    // Only `send` is used by the channel: wrap it so publishing fails like an unreachable endpoint.
    const flaky = Object.create(sns) as typeof sns;
    flaky.send = ((command: { constructor: { name: string } }, ...rest: unknown[]) => {
      if (down && command.constructor.name === 'PublishBatchCommand') {
        refused++;
        return Promise.reject(
          Object.assign(new Error('connect ECONNREFUSED'), { name: 'Error', code: 'ECONNREFUSED' }),
        );
      }
      return (sns.send as (...args: unknown[]) => Promise<unknown>)(command, ...rest);
    }) as typeof sns.send;
    const a = await SnsSqsChannel.connect({
      sns: flaky,
      sqs,
      cluster,
      node: 'a',
      noRespondersMs: TEST_NO_RESPONDERS_MS,
    });
    open.push(a);
    const statuses: string[] = [];
    a.onStatus((status) => statuses.push(status));
    const onB = collector();
    b!.subscribe('app.x', onB.handler);
    for (let i = 0; i < 5; i++) a.publish('app.x', utf8.encode(String(i)));
    await waitFor('a few failed attempts', () => refused >= 3);
    expect(statuses).toEqual(['disconnected']);
    expect(onB.got).toEqual([]);
    down = false;
    await a.flush();
    await waitFor('the 5 messages on b', () => onB.got.length === 5);
    expect(onB.texts().sort()).toEqual(['0', '1', '2', '3', '4']);
    expect(statuses).toEqual(['disconnected', 'connected']);
    expect(a.stats.publishFailures).toBe(0);
  });

  it('a subscriber that answers after the no-responders window is waited for (delivery receipt)', async () => {
    const [a, b] = await nodes(uniqueCluster('late'), 'a', 'b');
    b!.subscribe('app.slow', (m) => {
      setTimeout(() => b!.publish(m.reply!, utf8.encode('late answer')), TEST_NO_RESPONDERS_MS + 700); // after the window
    });
    await b!.flush();
    const started = Date.now();
    expect(text(await a!.request('app.slow', utf8.encode('?'), { timeoutMs: 5000 }))).toBe('late answer');
    expect(Date.now() - started).toBeGreaterThanOrEqual(TEST_NO_RESPONDERS_MS + 700);
    expect(b!.stats.receiptsSent).toBe(1);
    // An answer given while handling needs no receipt.
    b!.subscribe('app.fast', (m) => b!.publish(m.reply!, utf8.encode('at once')));
    expect(text(await a!.request('app.fast', utf8.encode('?'), { timeoutMs: 5000 }))).toBe('at once');
    expect(b!.stats.receiptsSent).toBe(1);
  });

  it('a queue group on a wildcard subject gets each matching message once, and nothing else', async () => {
    const [a, b, c] = await nodes(uniqueCluster('grp'), 'a', 'b', 'c');
    const onB = collector();
    const onC = collector();
    b!.subscribe('app.*.work', onB.handler, { queue: 'workers' });
    c!.subscribe('app.*.work', onC.handler, { queue: 'workers' });
    await Promise.all([b!.flush(), c!.flush()]);
    for (let i = 0; i < 10; i++) a!.publish(`app.t${i}.work`, utf8.encode(String(i)));
    a!.publish('app.t0.rest', utf8.encode('no'));
    a!.publish('app.t0.work.more', utf8.encode('no'));
    await waitFor('10 messages to the group', () => onB.got.length + onC.got.length === 10);
    await roundTrip(a!, b!, 'app.marker');
    await roundTrip(a!, c!, 'app.marker');
    expect([...onB.texts(), ...onC.texts()].map(Number).sort((x, y) => x - y)).toEqual([...Array(10).keys()]);
  });

  it('rejects bad options: ids that are no subject token, waitTimeSeconds out of range', async () => {
    const { sns, sqs } = aws.clients();
    await expect(SnsSqsChannel.connect({ sns, sqs, cluster: 'a.b', node: 'n' })).rejects.toThrow(InvalidOptionsError);
    await expect(SnsSqsChannel.connect({ sns, sqs, cluster: 'c', node: '' })).rejects.toThrow(InvalidOptionsError);
    await expect(SnsSqsChannel.connect({ sns, sqs, cluster: 'c', node: 'n', waitTimeSeconds: 21 })).rejects.toThrow(
      InvalidOptionsError,
    );
    await expect(SnsSqsChannel.connect({ sns, sqs, cluster: 'c', node: 'n', maxPayload: 0 })).rejects.toThrow(
      /maxPayload/,
    );
    await expect(SnsSqsChannel.connect({ sns, sqs, cluster: 'c', node: 'n', noRespondersMs: -1 })).rejects.toThrow(
      /noRespondersMs/,
    );
    await expect(SnsSqsChannel.connect({ sns: {} as never, sqs, cluster: 'c', node: 'n' })).rejects.toThrow(
      /sns must be an AWS SDK v3 client/,
    );
  });

  it('rejects with BrokerSetupError, the AWS error as cause, when the endpoint refuses', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const config = {
      endpoint,
      region: 'us-east-1',
      maxAttempts: 1,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    };
    const sns = new SNSClient(config);
    const sqs = new SQSClient(config);
    try {
      const error = await SnsSqsChannel.connect({ sns, sqs, cluster: uniqueCluster('down'), node: 'n' }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(BrokerSetupError);
      expect((error as BrokerSetupError).code).toBe('BROKER_SETUP_FAILED');
      expect((error as BrokerSetupError).message).toMatch(/could not set up cluster/);
      expect((error as BrokerSetupError).cause).toBeInstanceOf(Error);
    } finally {
      sns.destroy();
      sqs.destroy();
    }
  });
});
