// Owns: unit tests of lib/testing: each fault of FaultInjector on raw channels (drop, duplicate,
// reorder, delay, partition, freeze, heal, scopes, seeded probability), and createTestCluster:
// cookies kept across nodes, clients apart, and replication converging after each fault heals.
import { afterEach, describe, expect, it } from 'vitest';
import { ChannelRequestError, MemoryBus, MemoryChannel, type Channel, type ChannelStatus } from '../../../lib/index.ts';
import { createTestCluster, FaultInjector, faultyChannel, type TestCluster } from '../../../lib/testing/index.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { counterApp } from '../../kit/memory-nodes.ts';

const text = (data: Uint8Array) => new TextDecoder().decode(data);
const bytes = (s: string) => new TextEncoder().encode(s);

/** Two faulty channels n1 and n2 on one bus, each recording what it receives on `t.>`. */
function pair(faults = new FaultInjector()) {
  const bus = new MemoryBus();
  const make = (node: string) => {
    const channel = faultyChannel(new MemoryChannel(bus), node, faults);
    const got: string[] = [];
    const statuses: ChannelStatus[] = [];
    channel.subscribe('t.>', (m) => got.push(`${m.subject}:${text(m.data)}`));
    channel.onStatus((status) => statuses.push(status));
    return { channel, got, statuses };
  };
  return { faults, n1: make('n1'), n2: make('n2') };
}

/** Lets every queued in-process delivery run. */
const settle = (channel: Channel) => channel.flush();

describe('FaultInjector on raw channels', () => {
  it('drop: matching messages never arrive; scopes narrow by publisher and subject', async () => {
    const { faults, n1, n2 } = pair();
    faults.drop({ from: 'n1', subject: 't.a' });
    n1.channel.publish('t.a', bytes('1'));
    n1.channel.publish('t.b', bytes('2'));
    n2.channel.publish('t.a', bytes('3'));
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.b:2', 't.a:3']);
    expect(faults.counts.dropped).toBe(1);
  });

  it('duplicate: every matching message arrives twice', async () => {
    const { faults, n1, n2 } = pair();
    faults.duplicate();
    n1.channel.publish('t.a', bytes('1'));
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.a:1', 't.a:1']);
    expect(faults.counts.duplicated).toBe(1);
  });

  it("reorder: a held message arrives after the publisher's next one", async () => {
    const { faults, n1, n2 } = pair();
    faults.reorder();
    for (const n of ['1', '2', '3', '4']) n1.channel.publish('t.a', bytes(n));
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.a:2', 't.a:1', 't.a:4', 't.a:3']);
    expect(faults.counts.reordered).toBe(2);
  });

  it('reorder: a lone held message still arrives (after at most 50 ms)', async () => {
    const { faults, n1, n2 } = pair();
    faults.reorder();
    n1.channel.publish('t.a', bytes('1'));
    await settle(n1.channel);
    expect(n2.got).toEqual([]);
    await waitFor('the held message', () => n2.got.length === 1, { timeoutMs: 2000, intervalMs: 5 });
  });

  it('delay: messages arrive no earlier than the delay', async () => {
    const { faults, n1, n2 } = pair();
    faults.delay(40);
    const sent = Date.now();
    n1.channel.publish('t.a', bytes('1'));
    await settle(n1.channel);
    expect(n2.got).toEqual([]);
    await waitFor('the delayed message', () => n2.got.length === 1, { timeoutMs: 2000, intervalMs: 5 });
    expect(Date.now() - sent).toBeGreaterThanOrEqual(39);
    expect(faults.counts.delayed).toBe(1);
  });

  it('probability: a seeded source decides which messages are hit', async () => {
    const rolls = [0.1, 0.9, 0.4, 0.6];
    const { faults, n1, n2 } = pair(new FaultInjector(() => rolls.shift() ?? 1));
    faults.drop({ probability: 0.5 });
    for (const n of ['1', '2', '3', '4']) n1.channel.publish('t.a', bytes(n));
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.a:2', 't.a:4']);
    expect(() => faults.drop({ probability: 2 })).toThrow(RangeError);
  });

  it('partition: nothing in or out, requests time out, a disconnect, and a reconnect on heal', async () => {
    const { faults, n1, n2 } = pair();
    n2.channel.subscribe('svc', (m) => n2.channel.publish(m.reply!, bytes('pong')));
    faults.partition('n2');
    n1.channel.publish('t.a', bytes('1'));
    n2.channel.publish('t.b', bytes('2'));
    await settle(n1.channel);
    expect(n2.got).toEqual([]);
    expect(n1.got).toEqual(['t.a:1']);
    expect(n2.statuses).toEqual(['connected', 'disconnected']);
    await expect(n1.channel.request('svc', bytes('ping'), { timeoutMs: 50 })).rejects.toBeInstanceOf(
      ChannelRequestError,
    );
    await expect(n2.channel.request('svc', bytes('ping'), { timeoutMs: 50 })).rejects.toMatchObject({
      kind: 'timeout',
    });
    faults.heal();
    expect(n2.statuses).toEqual(['connected', 'disconnected', 'disconnected', 'connected']);
    expect(text(await n1.channel.request('svc', bytes('ping'), { timeoutMs: 1000 }))).toBe('pong');
    n1.channel.publish('t.a', bytes('3'));
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.a:3']);
  });

  it('freeze: what goes to and from the node is held in order and delivered on heal', async () => {
    const { faults, n1, n2 } = pair();
    faults.freeze('n2');
    n1.channel.publish('t.a', bytes('1'));
    n1.channel.publish('t.a', bytes('2'));
    n2.channel.publish('t.b', bytes('3'));
    await settle(n1.channel);
    expect(n2.got).toEqual([]);
    expect(n1.got).toEqual(['t.a:1', 't.a:2']);
    // Held: n2's own publish, and both messages to it.
    expect(faults.counts.held).toBe(3);
    faults.heal();
    await settle(n1.channel);
    expect(n2.got).toEqual(['t.a:1', 't.a:2', 't.b:3']);
    expect(n1.got).toEqual(['t.a:1', 't.a:2', 't.b:3']);
    // Nothing was lost, so no reconnect is reported.
    expect(n2.statuses).toEqual(['connected']);
  });
});

const clusters: TestCluster[] = [];
afterEach(async () => {
  await Promise.all(clusters.splice(0).map((cluster) => cluster.stop()));
});

async function start(nodes: number): Promise<TestCluster> {
  const cluster = await createTestCluster({ nodes, app: counterApp });
  clusters.push(cluster);
  return cluster;
}

/** Waits until every node holds `total` sessions (a read on a node without the session would start a new one). */
async function everywhere(cluster: TestCluster, total: number): Promise<void> {
  await waitFor(`every node to hold ${total} sessions`, () =>
    cluster.nodes.every((node) => node.status().sessions.total === total),
  );
}

/**
 * The counter node `index` holds for the default client's session: asked with the session cookie only,
 * without the version cookie, so the node answers from its own copy instead of fetching the client's version.
 */
async function counterOn(cluster: TestCluster, index: number, session: string): Promise<number> {
  const headers = { cookie: `SESSIONID=${session}` };
  return ((await (await cluster.client().request(index, '/counter', { headers })).json()) as { n: number }).n;
}

/** The session cookie a response sets. */
function sessionCookie(response: Response): string {
  const line = response.headers.getSetCookie().find((l) => l.startsWith('SESSIONID='));
  if (!line) throw new Error('no session cookie set');
  return line.slice('SESSIONID='.length).split(';')[0]!;
}

describe('createTestCluster', () => {
  it('serves the app on every node, keeps the cookie across nodes, and keeps clients apart', async () => {
    const cluster = await start(3);
    expect(cluster.nodes.map((n) => n.node)).toEqual(['n1', 'n2', 'n3']);
    expect(await (await cluster.request(0, '/counter', { method: 'POST' })).json()).toEqual({ n: 1, node: 'n1' });
    expect(cluster.client().cookies.header()).toBeUndefined();
    await everywhere(cluster, 1);
    expect(await (await cluster.request(2, '/counter', { method: 'POST' })).json()).toEqual({ n: 2, node: 'n3' });
    const other = cluster.client();
    expect(await (await other.request(1, '/counter')).json()).toEqual({ n: 0 });
    await expect(cluster.request(7, '/counter')).rejects.toThrow(/no node 7/);
  });

  it('converges after dropped deltas heal (the nodes that lost messages resync)', async () => {
    const cluster = await start(2);
    const session = sessionCookie(await cluster.request(0, '/counter', { method: 'POST' }));
    await everywhere(cluster, 1);
    cluster.faults.drop({ subject: 'sessrep.*.delta' });
    for (let i = 0; i < 3; i++) await cluster.request(0, '/counter', { method: 'POST' });
    await cluster.nodes[0]!.channel.flush();
    // Async deltas sent in one event-loop turn share a message: at least one was dropped.
    expect(cluster.faults.counts.dropped).toBeGreaterThanOrEqual(1);
    expect(await counterOn(cluster, 1, session)).toBe(1);
    cluster.faults.heal();
    await waitFor('n2 to catch up after the heal', async () => (await counterOn(cluster, 1, session)) === 4);
    expect(cluster.nodes[1]!.stats.resyncs).toBeGreaterThanOrEqual(1);
  });

  it('converges after a partition heals: the cut-off node is dropped, rejoins and catches up', async () => {
    const cluster = await start(3);
    const session = sessionCookie(await cluster.request(0, '/counter', { method: 'POST' }));
    await everywhere(cluster, 1);
    cluster.faults.partition('n3');
    await waitFor('n1 to drop n3', () => !cluster.nodes[0]!.status().members.some((m) => m.node === 'n3'));
    for (let i = 0; i < 3; i++) await cluster.request(0, '/counter', { method: 'POST' });
    await waitFor('n2 to hold 4', async () => (await counterOn(cluster, 1, session)) === 4);
    // Cut off longer than memberDropMs, n3 does not serve its stale copy (counter 1): it answers 503 until it caught up.
    expect((await cluster.request(2, '/counter')).status).toBe(503);
    cluster.faults.heal();
    await waitFor('n3 to catch up after the heal', async () => (await counterOn(cluster, 2, session)) === 4);
    await waitFor('n1 to see n3 again', () =>
      cluster.nodes[0]!.status().members.some((m) => m.node === 'n3' && m.ready),
    );
  });

  it('converges after a frozen node thaws, with duplicated and reordered deltas on the way', async () => {
    const cluster = await start(2);
    const session = sessionCookie(await cluster.request(0, '/counter', { method: 'POST' }));
    await everywhere(cluster, 1);
    cluster.faults.freeze('n2');
    for (let i = 0; i < 4; i++) await cluster.request(0, '/counter', { method: 'POST' });
    await cluster.nodes[0]!.channel.flush();
    expect(cluster.faults.counts.held).toBeGreaterThanOrEqual(1);
    expect(await counterOn(cluster, 1, session)).toBe(1);
    cluster.faults.heal();
    await waitFor('n2 to hold 5 after the thaw', async () => (await counterOn(cluster, 1, session)) === 5);
    cluster.faults.duplicate({ from: 'n1' }).reorder({ from: 'n1', subject: 'sessrep.*.delta' });
    for (let i = 0; i < 2; i++) await cluster.request(0, '/counter', { method: 'POST' });
    await cluster.nodes[0]!.channel.flush();
    expect(cluster.faults.counts.duplicated).toBeGreaterThanOrEqual(1);
    expect(cluster.faults.counts.reordered).toBeGreaterThanOrEqual(1);
    await waitFor(
      'n2 to hold 7 despite duplicates and reordering',
      async () => (await counterOn(cluster, 1, session)) === 7,
    );
  });
});
