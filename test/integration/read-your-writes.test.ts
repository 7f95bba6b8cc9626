// Owns: integration tests of read-your-writes on any node (the session version cookie) over a real nats-server: a node
// whose copy is older than the version the client presents fetches the newer state, or answers 503, never 200 with the older copy.
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { ClusterOptions } from '../../lib/index.ts';
import { SessionVersions } from '../../lib/middleware/session-version.ts';
import { latestStamp } from '../../lib/session/state.ts';
import {
  CookieClient,
  createNatsNode,
  type HoldingChannel,
  holdingChannel,
  startForwarder,
  type TcpForwarder,
  type TestNode,
  uniqueCluster,
  waitFor,
  waitForMembership,
} from '../kit/index.ts';

const nodes: TestNode[] = [];
const forwarders: TcpForwarder[] = [];
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map((node) => node.stop()));
  await Promise.allSettled(forwarders.splice(0).map((forwarder) => forwarder.close()));
});

/** Starts nodes one after the other, each on its own connection (to `urls[i]` when given) with its channel wrapped. */
async function startCluster(
  names: string[],
  options: Partial<ClusterOptions>,
  { holds = [], urls = [] }: { holds?: string[]; urls?: (string | undefined)[] } = {},
): Promise<{ nodes: TestNode[]; channels: HoldingChannel[] }> {
  const cluster = uniqueCluster('it-ryw');
  const channels: HoldingChannel[] = [];
  const started: TestNode[] = [];
  for (const [i, name] of names.entries()) {
    const node = await createNatsNode(urls[i] ?? inject('natsUrl'), cluster, name, options, (inner) => {
      const channel = holdingChannel(
        inner,
        holds.map((subject) => `sessrep.${cluster}.${subject}`),
      );
      channels.push(channel);
      return channel;
    });
    nodes.push(node);
    started.push(node);
    await node.sessions.start();
  }
  await waitForMembership(started);
  return { nodes: started, channels };
}

const counterOf = (reply: { json: { counter?: number; attributes?: { counter?: number } } }) =>
  reply.json.counter ?? reply.json.attributes?.counter;

describe.each(['delta', 'backup'] as const)('%s manager, async mode', (manager) => {
  it('every broadcast held back: each increment read on another node shows it (fetched from the writer), a node without any copy included', async () => {
    // Delta: the deltas never arrive; backup: the ownership broadcasts never arrive (copies to the backup still do).
    const holds = manager === 'delta' ? ['delta'] : ['map'];
    const {
      nodes: [a, b, c],
      channels,
    } = await startCluster(
      ['a', 'b', 'c'],
      {
        manager,
        sendMode: 'async',
        readYourWritesWaitMs: 3000,
      },
      { holds },
    );
    const ring = [a!, b!, c!];
    for (const channel of channels) channel.hold();
    const client = new CookieClient();
    for (let i = 0; i < 9; i++) {
      const writer = ring[i % 3]!;
      const reader = ring[(i + 1) % 3]!;
      const wrote = await client.request(writer, 'POST', '/counter');
      expect(wrote.status, `write ${i + 1} on ${writer.name}`).toBe(200);
      expect(wrote.json.counter).toBe(i + 1);
      const read = await client.request(reader, 'GET', '/session');
      expect(read.status, `read ${i + 1} on ${reader.name}`).toBe(200);
      // The first read (i = 0) is on a node that has no copy at all: it fetches, it does not start a new session.
      expect(read.json, `read ${i + 1} on ${reader.name}`).toMatchObject({
        isNew: false,
        attributes: { counter: i + 1 },
      });
    }
    const waits = ring.reduce((sum, node) => sum + node.sessions.stats.versionWaits, 0);
    expect(waits).toBeGreaterThanOrEqual(1);
    expect(ring.every((node) => node.sessions.stats.versionRefusals === 0)).toBe(true);
    for (const channel of channels) channel.release();
  });

  it('a version cookie copied from another session or altered is ignored and counted', async () => {
    const {
      nodes: [a, b],
      channels,
    } = await startCluster(
      ['a', 'b'],
      { manager, readYourWritesWaitMs: 3000 },
      {
        holds: [manager === 'delta' ? 'delta' : 'map'],
      },
    );
    const victim = new CookieClient();
    await victim.request(a!, 'POST', '/counter');
    const attacker = new CookieClient();
    await attacker.request(a!, 'POST', '/counter');
    await waitFor('b to hold both sessions', () =>
      manager === 'delta' ? b!.sessions.manager.sessionCounts().total === 2 : true,
    );
    for (const channel of channels) channel.hold();
    await victim.request(a!, 'POST', '/counter');
    const altered = new CookieClient({ cookie: attacker.cookie! });
    altered.version = victim.version!;
    const rejected = b!.sessions.stats.versionsRejected;
    expect((await altered.request(b!, 'GET', '/session')).status).toBe(200);
    // The MAC's last two characters changed (to AA, or QA when they were AA: 1 version in 256 ends so).
    const altering = attacker.version!.endsWith('AA') ? 'QA' : 'AA';
    altered.version = `${attacker.version!.slice(0, -2)}${altering}`;
    expect((await altered.request(b!, 'GET', '/session')).status).toBe(200);
    expect(b!.sessions.stats.versionsRejected).toBe(rejected + 2);
    expect(b!.sessions.stats.versionWaits).toBe(0);
    for (const channel of channels) channel.release();
  });
});

describe.each([
  ['delta', 'async'],
  ['delta', 'ack'],
  ['backup', 'async'],
  ['backup', 'ack'],
] as const)('%s manager, %s mode, a node cut off by a silent partition', (manager, sendMode) => {
  it('answers 503 with Retry-After while it cannot get the newer state, never 200 with its older copy; the newest value after the heal', async () => {
    const natsUrl = inject('natsUrl');
    const link = await startForwarder(Number(new URL(natsUrl).port));
    forwarders.push(link);
    const {
      nodes: [a, b, c],
    } = await startCluster(
      ['a', 'b', 'c'],
      { manager, sendMode, readYourWritesWaitMs: 500, fetchTimeoutMs: 500, ackTimeoutMs: 2000 },
      { urls: [undefined, undefined, link.url] },
    );
    const client = new CookieClient();
    for (let i = 0; i < 3; i++) expect((await client.request(a!, 'POST', '/counter')).status).toBe(200);
    // c serves the session once, with counter 3: it holds a copy (the backup manager makes it the primary).
    expect(counterOf(await client.request(c!, 'GET', '/session'))).toBe(3);
    link.blackhole();
    // a and b stop waiting for c (ack mode) once they dropped it.
    await waitFor('a and b to drop c', () => !a!.sessions.membership.has('c') && !b!.sessions.membership.has('c'), {
      timeoutMs: 10_000,
    });
    let last = 3;
    for (let i = 0; i < 3; i++) {
      const wrote = await client.request(a!, 'POST', '/counter');
      expect(wrote.status).toBe(200);
      last = wrote.json.counter as number;
    }
    expect(last).toBeGreaterThanOrEqual(4);
    const stale = await client.request(c!, 'GET', '/session');
    expect(stale.status).toBe(503);
    expect(stale.headers.get('retry-after')).toBe('1');
    expect(stale.json.code).toMatch(/^(SESSION_BEHIND|NODE_CATCHING_UP)$/);
    await link.heal();
    // What a client behind a load balancer does with 503 + Retry-After: it asks again.
    const fresh = await waitFor(
      'c to serve the newest value after the heal',
      async () => {
        const reply = await client.request(c!, 'GET', '/session');
        if (reply.status === 503) return undefined;
        return reply;
      },
      { timeoutMs: 15_000 },
    );
    expect(fresh.status).toBe(200);
    expect(counterOf(fresh)).toBe(last);
  });
});

/** `node` answers `client`'s read at once with counter 1 as it holds it, counting the presented version as lost (no 503). */
async function expectServedAsLost(client: CookieClient, node: TestNode): Promise<void> {
  const started = Date.now();
  const reply = await client.request(node, 'GET', '/session');
  expect(reply.status).toBe(200);
  expect(reply.json).toMatchObject({ isNew: false, attributes: { counter: 1 } });
  expect(Date.now() - started).toBeLessThan(2500);
  expect(node.sessions.stats.versionsLost).toBe(1);
  expect(node.sessions.stats.versionRefusals).toBe(0);
}

describe('a version lost with its only holder', () => {
  it('is not waited for: once the writer is gone and every member answered without it, the node serves what the cluster has', async () => {
    const {
      nodes: [a, b],
      channels,
    } = await startCluster(['a', 'b'], { manager: 'delta', readYourWritesWaitMs: 5000 }, { holds: ['delta'] });
    const client = new CookieClient();
    await client.request(a!, 'POST', '/counter');
    await waitFor('b to hold the session', () => b!.sessions.manager.sessionCounts().total === 1);
    for (const channel of channels) channel.hold();
    await client.request(a!, 'POST', '/counter'); // only a has counter 2
    await a!.stop(); // gone: nobody answers on its subject any more
    await expectServedAsLost(client, b!);
  });
});

describe('a cluster without keys', () => {
  it("a version forged by the session's own holder (far in the future, a writer that does not exist) only holds back its own requests: no data, no clock moved", async () => {
    const {
      nodes: [a, b],
    } = await startCluster(['a', 'b'], { manager: 'delta', readYourWritesWaitMs: 3000 });
    const client = new CookieClient();
    await client.request(a!, 'POST', '/counter');
    const bystander = new CookieClient();
    await bystander.request(a!, 'POST', '/counter');
    await waitFor('b to hold both sessions', () => b!.sessions.manager.sessionCounts().total === 2);
    // Without keys the MAC key is public: whoever holds the session key can sign any version of it.
    const future = Date.now() + 365 * 24 * 3600 * 1000;
    client.version = await new SessionVersions(undefined, a!.sessions.cluster).encode(client.key, [future, 0, 'ghost']);
    await expectServedAsLost(client, b!);
    // Its write is stamped by b's own clock, not the forged one, and replicates as any other.
    const wrote = await client.request(b!, 'POST', '/counter');
    expect(wrote.json.counter).toBe(2);
    for (const node of [a!, b!]) {
      expect(latestStamp(node.sessions.manager.inspect(bystander.key)!)[0]).toBeLessThan(Date.now() + 60_000);
      await waitFor(
        'the write on both nodes',
        async () =>
          (await new CookieClient({ cookie: client.cookie! }).request(node, 'GET', '/session')).json.attributes
            .counter === 2,
      );
      expect(latestStamp(node.sessions.manager.inspect(client.key)!)[0]).toBeLessThan(Date.now() + 60_000);
    }
    // The bystander's requests never waited.
    const waits = b!.sessions.stats.versionWaits;
    expect((await bystander.request(b!, 'GET', '/session')).json.attributes.counter).toBe(1);
    expect(b!.sessions.stats.versionWaits).toBe(waits);
  });
});

describe('ended stays ended', () => {
  it.each(['delta', 'backup'] as const)(
    '%s: an invalidated session presented with its old cookies starts fresh, at once',
    async (manager) => {
      const {
        nodes: [a, b],
      } = await startCluster(['a', 'b'], { manager, readYourWritesWaitMs: 3000 });
      const client = new CookieClient();
      await client.request(a!, 'POST', '/counter');
      await client.request(a!, 'POST', '/counter');
      const replay = new CookieClient({ cookie: client.cookie! });
      replay.version = client.version!;
      expect((await client.request(a!, 'POST', '/session/invalidate')).status).toBe(204);
      expect(client.version).toBeUndefined();
      await waitFor('b to know the end', () =>
        manager === 'delta' ? b!.sessions.manager.inspect(replay.cookie!.split('.')[0]!)?.ended !== undefined : true,
      );
      const started = Date.now();
      const reply = await replay.request(b!, 'GET', '/session');
      expect(reply.status).toBe(200);
      expect(reply.json).toMatchObject({ isNew: true, attributes: {} });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(b!.sessions.stats.versionRefusals).toBe(0);
    },
  );
});
