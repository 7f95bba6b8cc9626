// Owns: createCluster over SnsSqsChannel end to end (in-process nodes, fauxqs or AWS_ENDPOINT_URL):
// replication A -> B, state transfer to a late joiner through the queue group, a lone first node
// starting at once (no-responders), a leaving node's queue removed.
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../functions/demo-app.ts';
import type { SnsSqsChannel } from '../../lib/channel/sns-sqs/index.ts';
import {
  createCluster,
  type ClusterOptions,
  type Logger,
  type ClusterNode,
  type SessionVariables,
} from '../../lib/index.ts';
import { connectChannel, CookieClient, deleteCluster, snsSqsPerFile, uniqueCluster, waitFor } from '../kit/index.ts';

const aws = snsSqsPerFile();

/** Timings for SNS/SQS: a loopback hop is milliseconds, but a loaded machine has 100+ ms spikes. */
const TIMINGS: Partial<ClusterOptions> = {
  heartbeatIntervalMs: 200,
  memberDropMs: 2000,
  pingTimeoutMs: 1000,
  sweepIntervalMs: 200,
};

/** A logger that drops everything: tests assert on behaviour, not logs. */
const silent: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

interface SnsNode {
  readonly name: string;
  readonly sessions: ClusterNode;
  readonly channel: SnsSqsChannel;
  readonly app: Hono<{ Variables: SessionVariables }>;
}

let cluster = '';
const running: SnsNode[] = [];
afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((node) => node.sessions.stop().finally(() => node.channel.close())));
  await deleteCluster(aws, cluster).catch(() => undefined);
});

async function startNode(name: string): Promise<SnsNode> {
  const channel = await connectChannel(aws, cluster, name);
  const sessions = createCluster({ ...TIMINGS, logger: silent, cluster, node: channel.node, channel });
  const node = { name, sessions, channel, app: createDemoApp(sessions) };
  running.push(node);
  await sessions.start();
  return node;
}

const readyPeers = (node: SnsNode) =>
  node.sessions.membership
    .readyMembers()
    .map((m) => m.node)
    .sort();

describe('createCluster over SnsSqsChannel', () => {
  it('a session set on A is read on B; a late joiner C gets it by state transfer', async () => {
    cluster = uniqueCluster('it-sns');
    const started = Date.now();
    const a = await startNode('a');
    // Nobody else: the state request hears no receipt within the discovery window, so A starts empty at once.
    expect(a.sessions.status().stateTransfer.state).toBe('skipped');
    expect(Date.now() - started).toBeLessThan(10_000);
    const b = await startNode('b');
    await waitFor('a and b see each other', () => readyPeers(a).join() === 'b' && readyPeers(b).join() === 'a');

    const client = new CookieClient();
    expect(
      (
        await client.request(
          a.app,
          'PUT',
          '/session/attributes/user',
          JSON.stringify({ name: 'ada', roles: ['admin'] }),
        )
      ).status,
    ).toBe(200);
    const onB = await waitFor('the session on b', () => b.sessions.manager.inspect(client.key));
    expect(onB.key).toBe(client.key);
    const read = await client.request(b.app, 'GET', '/session');
    expect(read.json).toMatchObject({
      node: 'b',
      isNew: false,
      attributes: { user: { name: 'ada', roles: ['admin'] } },
    });

    // A write on B reaches A too.
    expect((await client.request(b.app, 'POST', '/counter')).json).toEqual({ counter: 1, node: 'b' });
    await waitFor(
      'the counter on a',
      async () => (await client.request(a.app, 'GET', '/session')).json?.attributes?.counter === 1,
    );

    // C joins later: a member of the `donors` queue group answers its state request.
    const c = await startNode('c');
    expect(c.sessions.status().stateTransfer).toMatchObject({ state: 'done' });
    expect(['a', 'b']).toContain(c.sessions.status().stateTransfer.donor);
    expect((await client.request(c.app, 'GET', '/session')).json).toMatchObject({
      node: 'c',
      attributes: { user: { name: 'ada', roles: ['admin'] }, counter: 1 },
    });
    expect(a.channel.stats.filteredLocally + b.channel.stats.filteredLocally + c.channel.stats.filteredLocally).toBe(0);
  });

  it('state transfer of more session data than one SNS message holds: the page travels in fragments', async () => {
    cluster = uniqueCluster('it-sns-pages');
    const a = await startNode('a');
    const clients = Array.from({ length: 4 }, () => new CookieClient());
    for (const [i, client] of clients.entries()) {
      expect(
        (await client.request(a.app, 'PUT', '/session/attributes/blob', JSON.stringify(String(i).repeat(100_000))))
          .status,
      ).toBe(200);
    }
    const c = await startNode('c');
    expect(c.sessions.status().stateTransfer).toMatchObject({ state: 'done', sessionsReceived: 4 });
    // One 512 KiB page of the state transfer is larger than an SNS message (256 KiB with base64): fragments.
    expect(a.channel.stats.fragmented).toBeGreaterThanOrEqual(1);
    expect(c.channel.stats.fragmentsDropped).toBe(0);
    for (const client of clients) expect(c.sessions.manager.inspect(client.key)).toBeDefined();
  });

  it('a node that stops leaves the membership, and closing its channel deletes its queue', async () => {
    cluster = uniqueCluster('it-sns-leave');
    const a = await startNode('a');
    const b = await startNode('b');
    await waitFor('a sees b', () => readyPeers(a).join() === 'b');
    const queueUrl = b.channel.queueUrl;
    await b.sessions.stop();
    await b.channel.close();
    running.splice(running.indexOf(b), 1);
    // The graceful leave removes b at once (well before memberDropMs would).
    await waitFor('a no longer lists b', () => readyPeers(a).length === 0, { timeoutMs: 1500 });
    const { sqs } = aws.clients();
    await expect(
      sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] })),
    ).rejects.toThrow();
  });
});
