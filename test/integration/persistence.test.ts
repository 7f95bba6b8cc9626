// Owns: integration tests of join by DynamoDB snapshot + JetStream replay (in-process nodes, shared
// nats-server with JetStream, shared DynamoDB Local): no bulk state transfer from peers, fallback to a
// peer when DynamoDB is unreachable, and send mode persist answering after JetStream stored the write.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeEnvelope } from '../../lib/codec/envelope.ts';
import type { ReplicationLog } from '../../lib/log/jetstream.ts';
import type { ClusterOptions } from '../../lib/index.ts';
import { DynamoSnapshotStore } from '../../lib/store/dynamodb.ts';
import {
  CookieClient,
  ddbClient,
  deleteStreams,
  freePort,
  inBatches,
  laggingLog,
  persistentNode,
  canonical,
  throwawayTable,
  uniqueCluster,
  waitFor,
  type PersistentNode,
} from '../kit/index.ts';

const natsUrl = () => inject('natsUrl');

let client: DynamoDBClient;
let table: { table: string; drop(): Promise<void> };
const nodes: PersistentNode[] = [];
const clusters: string[] = [];
const clients: DynamoDBClient[] = [];

beforeAll(async () => {
  client = ddbClient(inject('ddbEndpoint'));
  table = await throwawayTable(client, 'sessrep-it-persist');
});
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map((n) => n.stop()));
});
afterAll(async () => {
  await deleteStreams(natsUrl(), clusters);
  await table?.drop();
  for (const c of clients.splice(0)) c.destroy();
  client?.destroy();
});

function newCluster(prefix: string): string {
  const cluster = uniqueCluster(prefix);
  clusters.push(cluster);
  return cluster;
}

/** A node of `cluster` with the JetStream log, plus the DynamoDB store unless `store: false`. */
async function node(
  cluster: string,
  name: string,
  {
    store = true,
    endpoint,
    options = {},
    wrapLog,
  }: {
    store?: boolean;
    endpoint?: string;
    options?: Partial<ClusterOptions>;
    wrapLog?: (log: ReplicationLog) => ReplicationLog;
  } = {},
) {
  let storeClient = client;
  if (endpoint) {
    storeClient = ddbClient(endpoint, { maxAttempts: 1, connectionTimeout: 500 });
    clients.push(storeClient);
  }
  const n = await persistentNode(natsUrl(), cluster, name, {
    ...(store ? { store: new DynamoSnapshotStore({ client: storeClient, table: table.table, cluster }) } : {}),
    options,
    ...(wrapLog ? { wrapLog } : {}),
  });
  nodes.push(n);
  return n;
}

/** Creates `count` sessions through the demo app, client i on node i % nodes (sticky), with varied content. */
async function populate(on: PersistentNode[], count: number): Promise<CookieClient[]> {
  const all = Array.from({ length: count }, () => new CookieClient());
  await inBatches(all, 200, async (c, i) => {
    const target = on[i % on.length]!;
    const reply = await c.request(target, 'PUT', '/session/attributes/n', String(i));
    expect(reply.status).toBe(200);
    if (i % 10 === 0)
      await c.request(target, 'PUT', '/session/attributes/profile', {
        name: `user ${i}`,
        tags: ['a', i],
        nested: { deep: [i, null] },
      });
    if (i % 25 === 0) await c.request(target, 'PUT', '/session/max-inactive-interval', '7200');
  });
  return all;
}

/** Received/sent count of a message kind on a node. */
const received = (n: PersistentNode, kind: string) =>
  (n.sessions.stats.received as Record<string, number | undefined>)[kind] ?? 0;
const sent = (n: PersistentNode, kind: string) =>
  (n.sessions.stats.sent as Record<string, number | undefined>)[kind] ?? 0;

/**
 * Waits until every node holds the same state for every key (each node's own writes are applied at
 * commit, the others' arrive only through the log: agreement means every write is in the stream), then
 * until every node applied the stream up to its last sequence; resolves with that sequence.
 */
async function settled(
  on: PersistentNode[],
  keys: string[],
  { access = true, timeoutMs = 60_000 } = {},
): Promise<number> {
  // Cheap first (counts), then the full comparison, which costs real CPU for 10,000 sessions: not too often.
  await waitFor(
    `nodes ${on.map((n) => n.name).join(',')} to hold ${keys.length} sessions`,
    () => on.every((n) => (n.manager.sessionCounts().total ?? 0) >= keys.length),
    {
      timeoutMs,
      intervalMs: 100,
    },
  );
  await waitFor(
    `nodes ${on.map((n) => n.name).join(',')} to agree on ${keys.length} sessions`,
    () => {
      for (const key of keys) {
        const views = on.map((n) => comparable(n.manager.inspect(key), access));
        if (views[0] === undefined || views.some((v) => v !== views[0]))
          throw new Error(`${key} differs: ${views.join(' | ').slice(0, 1600)}`);
      }
      return true;
    },
    { timeoutMs, intervalMs: 500 },
  );
  const { last } = await on[0]!.log.bounds();
  await waitFor(`nodes to apply the log up to ${last}`, () => on.every((n) => n.appliedSeq() >= last), { timeoutMs });
  return last;
}

/** A comparable state; without `access`, the last-access fields (replicated as in-flight touches) are left out. */
function comparable(state: Parameters<typeof canonical>[0], access: boolean): string {
  return JSON.stringify(canonical(state, { access, bytes: true }));
}

/** Asserts `joiner` holds exactly the state `reference` holds for every key of `keys`. */
function expectSameSessions(
  joiner: PersistentNode,
  reference: PersistentNode,
  keys: string[],
  { access = true } = {},
): void {
  let differing = 0;
  let first = '';
  for (const key of keys) {
    const mine = comparable(joiner.manager.inspect(key), access);
    const theirs = comparable(reference.manager.inspect(key), access);
    if (mine !== theirs || mine === undefined) {
      differing++;
      first ||= `${key}: ${mine} vs ${theirs}`;
    }
  }
  expect(differing, `sessions differing from ${reference.name}; first: ${first.slice(0, 500)}`).toBe(0);
}

describe('join from the DynamoDB snapshot plus the JetStream log', () => {
  it('a third node joins a cluster of 10,000 sessions from DynamoDB + JetStream: identical sessions, no bulk state transfer from peers', async () => {
    const cluster = newCluster('it-snap');
    const a = await node(cluster, 'a');
    const b = await node(cluster, 'b');
    await waitFor(
      'a and b to see each other',
      () => a.sessions.membership.readyMembers().length === 1 && b.sessions.membership.readyMembers().length === 1,
    );

    const createStarted = Date.now();
    const users = await populate([a, b], 10_000);
    const createMs = Date.now() - createStarted;
    const keys = users.map((u) => u.key);
    expect(new Set(keys).size).toBe(10_000);
    const last = await settled([a, b], keys);
    await waitFor(
      "the leader's checkpoint to cover the log",
      () => {
        if ((a.snapshot()?.checkpoint ?? 0) >= last) return true;
        throw new Error(`log at ${last}; a: ${JSON.stringify(a.snapshot())}; b: ${JSON.stringify(b.snapshot())}`);
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    // A few more writes after the checkpoint: the joiner must take them from the log replay.
    await inBatches(
      users.slice(0, 100),
      50,
      async (u, i) => void (await u.request(i % 2 ? b : a, 'PUT', '/session/attributes/late', String(i))),
    );
    const lastBeforeJoin = await settled([a, b], keys);

    const stateReqsBefore = [received(a, 'state-req'), received(b, 'state-req')];
    const joinStarted = Date.now();
    const c = await node(cluster, 'c');
    const joinMs = Date.now() - joinStarted;

    // Ready means: snapshot loaded and the log replayed up to the stream's last sequence at start.
    expect(c.sessions.ready).toBe(true);
    expect(c.appliedSeq()).toBeGreaterThanOrEqual(lastBeforeJoin);
    const transfer = c.sessions.status().stateTransfer;
    expect(transfer).toMatchObject({ state: 'done', source: 'snapshot' });
    expect(transfer.detail).toBeUndefined();
    expect(transfer.sessionsReceived).toBe(10_000);
    expect(transfer.pages).toBeGreaterThanOrEqual(16); // one or more Query pages per shard
    expect(c.sessions.status().sessions).toMatchObject({ total: 10_000 });
    expectSameSessions(c, a, keys);
    expectSameSessions(c, b, keys);
    // No bulk transfer: neither peer was asked for state, and the joiner asked nobody.
    expect([received(a, 'state-req'), received(b, 'state-req')]).toEqual(stateReqsBefore);
    expect(sent(c, 'state-req')).toBe(0);
    expect(received(c, 'state-page')).toBe(0);
    // It serves what it loaded, including the replayed late writes.
    for (let i = 0; i < 10_000; i += 97) {
      const reply = await users[i]!.request(c, 'GET', '/session');
      expect(reply.json, `session ${i}`).toMatchObject({ isNew: false, attributes: { n: i } });
    }
    for (let i = 0; i < 100; i += 9)
      expect((await users[i]!.request(c, 'GET', '/session')).json.attributes.late).toBe(i);

    // Same data, joined from a peer instead (log, no store): for the comparison of join times.
    const peerStarted = Date.now();
    const d = await node(cluster, 'd', { store: false });
    const peerMs = Date.now() - peerStarted;
    const viaPeer = d.sessions.status().stateTransfer;
    expect(viaPeer).toMatchObject({ state: 'done', source: 'peer' });
    expect(viaPeer.sessionsReceived).toBe(10_000);
    expect(d.sessions.status().sessions).toMatchObject({ total: 10_000 });
    // The reads on c above moved last-access times, which replicate lazily (a touch at most once per touch
    // interval; the donor may even be c, whose own later reads stay local): compare everything else.
    expectSameSessions(d, a, keys, { access: false });
    expectSameSessions(d, b, keys, { access: false });
    console.info(
      `[figure] join with 10,000 sessions: via DynamoDB snapshot + JetStream ${joinMs} ms (${transfer.pages} pages, replayed to seq ${c.appliedSeq()}), ` +
        `via peer state transfer ${peerMs} ms (${viaPeer.pages} pages from ${viaPeer.donor}); created in ${createMs} ms; ` +
        `leader wrote ${a.snapshot()?.itemsWritten} items in ${a.snapshot()?.flushes} flushes`,
    );
  }, 180_000);

  it('DynamoDB unreachable at join: falls back to a peer, says so on /cluster, and serves every session', async () => {
    const cluster = newCluster('it-snapdown');
    const a = await node(cluster, 'a');
    const b = await node(cluster, 'b');
    await waitFor('a and b to see each other', () => b.sessions.membership.readyMembers().length === 1);
    const users = await populate([a, b], 300);
    await settled(
      [a, b],
      users.map((u) => u.key),
    );

    const closedPort = await freePort();
    const c = await node(cluster, 'c', { endpoint: `http://127.0.0.1:${closedPort}` });
    expect(c.sessions.ready).toBe(true);
    const transfer = c.sessions.status().stateTransfer;
    expect(transfer).toMatchObject({ state: 'done', source: 'peer', sessionsReceived: 300 });
    expect(['a', 'b']).toContain(transfer.donor);
    expect(transfer.detail).toMatch(/snapshot store unreachable/);
    expect(transfer.detail).toMatch(/peer state transfer/);
    expect(transfer.detail!.match(/snapshot store unreachable/g), transfer.detail).toHaveLength(1); // said once
    expect(c.logs.some((l) => l.level === 'warn' && /snapshot store unreachable/.test(l.message))).toBe(true);
    expect(sent(c, 'state-req')).toBeGreaterThan(0);
    expectSameSessions(
      c,
      a,
      users.map((u) => u.key),
    );
    for (const [i, u] of users.entries())
      expect((await u.request(c, 'GET', '/session')).json, `session ${i}`).toMatchObject({
        isNew: false,
        attributes: { n: i },
      });
    // It keeps following the log: a write on a reaches c.
    await users[0]!.request(a, 'PUT', '/session/attributes/after', '1');
    await waitFor('c to apply a write made after it joined', () =>
      c.manager.inspect(users[0]!.key)?.attributes.has('after'),
    );
  }, 60_000);

  it('a node joining from a peer (log, no store) while writes are in flight misses none of them', async () => {
    const cluster = newCluster('it-peerlive');
    const a = await node(cluster, 'a', { store: false });
    const b = await node(cluster, 'b', { store: false });
    await waitFor('a and b to see each other', () => b.sessions.membership.readyMembers().length === 1);
    const users = await populate([a, b], 200);
    await settled(
      [a, b],
      users.map((u) => u.key),
    );
    // Every write sets a new attribute, so a write the joiner misses stays missing (no later write covers it).
    let writing = true;
    let writes = 0;
    // 20 writers at once on each node, so the joiner's donor always has log messages it has not applied yet.
    const writer = Promise.all(
      Array.from({ length: 40 }, async (_, w) => {
        while (writing) {
          const n = writes++;
          // CookieClient w only ever uses sessions w, w+40, ... on one node (sticky), so writers never race one session.
          await users[(w + 40 * (n % 5)) % 200]!.request(w % 2 ? b : a, 'PUT', `/session/attributes/w${n}`, String(n));
        }
      }),
    );
    let c: PersistentNode | undefined;
    try {
      await waitFor('some writes before the join', () => writes > 200);
      c = await node(cluster, 'c', { store: false });
      const joinedAt = writes;
      await waitFor('more writes after the join', () => writes > joinedAt + 400);
    } finally {
      writing = false;
      await writer;
    }
    expect(c!.sessions.status().stateTransfer).toMatchObject({ state: 'done', source: 'peer' });
    await settled(
      [a, b, c!],
      users.map((u) => u.key),
      { access: false, timeoutMs: 20_000 },
    );
  }, 60_000);

  it('a donor whose log consumer lags applies the log to its end before answering, so the joiner misses nothing', async () => {
    const cluster = newCluster('it-lagdonor');
    // a sees every log message 1.5 s late; b writes, then leaves, so a is the only donor when c joins.
    const a = await node(cluster, 'a', { store: false, wrapLog: (log) => laggingLog(log, 1500) });
    const b = await node(cluster, 'b', { store: false });
    await waitFor(
      'a and b to see each other',
      () => a.sessions.membership.readyMembers().length === 1 && b.sessions.membership.readyMembers().length === 1,
    );
    const users = await populate([b], 50);
    await settled(
      [a, b],
      users.map((u) => u.key),
    );
    await inBatches(users, 50, async (u) => void (await u.request(b, 'PUT', '/session/attributes/round', '2')));
    await b.stop(); // graceful: its last writes are flushed to the stream first
    await waitFor("b's writes to be in the stream", async () => (await a.log.bounds()).last > a.appliedSeq());
    const c = await node(cluster, 'c', { store: false });
    expect(c.sessions.status().stateTransfer).toMatchObject({ state: 'done', source: 'peer', donor: 'a' });
    // Without the donor catching up first, c would follow the log only after the writes a had not applied yet.
    for (const [i, u] of users.entries())
      expect(c.manager.inspect(u.key)?.attributes.get('round')?.value, `session ${i}`).toBe('[2]');
  }, 60_000);

  it('send mode persist answers only after JetStream stored the message', async () => {
    const cluster = newCluster('it-persist');
    const a = await node(cluster, 'a', { store: false, options: { sendMode: 'persist' } });
    const b = await node(cluster, 'b', { store: false, options: { sendMode: 'persist' } });
    const jsm = await jetstreamManager(a.nc);
    const user = new CookieClient();
    let { last } = await a.log.bounds();
    for (let i = 1; i <= 20; i++) {
      const reply = await user.request(i % 2 ? a : b, 'PUT', '/session/attributes/v', String(i));
      expect(reply.status).toBe(200);
      // Read right after the response, without waiting: the write is already in the stream.
      const after = (await a.log.bounds()).last;
      expect(after, `write ${i}`).toBe(last + 1);
      last = after;
      const stored = await jsm.streams.getMessage(a.log.name, { seq: after });
      const message = decodeEnvelope(stored!.data, cluster);
      expect(message.kind).toBe('delta');
      const state = (message.body as { s: { key: string; attributes: Map<string, { value?: string }> }[] }).s[0]!;
      expect(state.key).toBe(user.key);
      expect(state.attributes.get('v')?.value).toBe(`[${i}]`);
      // Sticky clients alternate nodes here on purpose: persist means the other node can replay it at once.
      await waitFor(`the other node to apply write ${i}`, () => (i % 2 ? b : a).appliedSeq() >= after);
    }
    expect(a.sessions.stats.replicationErrors + b.sessions.stats.replicationErrors).toBe(0);
  });
  it("send mode persist answers 503, not 200, when someone stored another message under the node's next message id", async () => {
    const cluster = newCluster('it-msgid');
    const a = await node(cluster, 'a', { store: false, options: { sendMode: 'persist' } });
    const b = await node(cluster, 'b', { store: false, options: { sendMode: 'persist' } });
    const jsm = await jetstreamManager(a.nc);
    const user = new CookieClient();
    expect((await user.request(a, 'PUT', '/session/attributes/v', '1')).status).toBe(200);
    // A's message id, as anyone reading the stream (or subscribed to the delta subject) sees it.
    const { last } = await a.log.bounds();
    const stored = await jsm.streams.getMessage(a.log.name, { seq: last });
    const id = stored!.header!.get('Nats-Msg-Id');
    expect(id).toMatch(/\d+$/);
    // Someone with publish rights on the subject (no cluster key needed) takes A's next id.
    const subject = (await jsm.streams.info(a.log.name)).config.subjects[0]!;
    const h = headers();
    h.set(
      'Nats-Msg-Id',
      id.replace(/\d+$/, (n) => String(Number(n) + 1)),
    );
    await jetstream(a.nc).publish(subject, new TextEncoder().encode('impostor'), { headers: h });
    // The write was not stored: the node must not answer as if it were.
    const reply = await user.request(a, 'PUT', '/session/attributes/v', '2');
    expect(reply.status).toBe(503);
    expect(a.sessions.stats.replicationErrors).toBe(1);
    expect(
      a.logs.some(
        (line) =>
          /replication failed/.test(line.message) && /already names another message/.test(String(line.fields.error)),
      ),
    ).toBe(true);
    // A retry goes through under a fresh id, and b applies it.
    expect((await user.request(a, 'PUT', '/session/attributes/v', '3')).status).toBe(200);
    const end = (await a.log.bounds()).last;
    await waitFor('b to apply the retried write', () => b.appliedSeq() >= end);
    expect(b.manager.inspect(user.key)?.attributes.get('v')?.value).toBe('[3]');
  });
});
