// Owns: integration tests of hostile and foreign traffic (garbage, other clusters), cluster isolation and oversized sessions.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { encodeEnvelope, WIRE_VERSION } from '../../lib/codec/envelope.ts';
import type { SessionState } from '../../lib/session/state.ts';
import {
  canonical,
  CookieClient,
  Harness,
  sessionAttributes,
  uniqueCluster,
  waitFor,
  waitForConvergence,
  waitForMembership,
  type TestNode,
} from '../kit/index.ts';

const harnesses: Harness[] = [];
let raw: NatsConnection | undefined;
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.stopAll()));
  await raw?.close();
  raw = undefined;
});

async function cluster(prefix: string, names: string[], options = {}): Promise<TestNode[]> {
  const harness = new Harness(inject('natsUrl'), uniqueCluster(prefix), options);
  harnesses.push(harness);
  return harness.start(...names);
}

/** A separate NATS connection that publishes raw bytes, as an attacker or a broken client would. */
async function rawConnection(): Promise<NatsConnection> {
  raw = await connect({ servers: inject('natsUrl'), name: 'it-raw-publisher' });
  return raw;
}

function droppedTotal(node: TestNode): number {
  return Object.values(node.sessions.stats.dropped).reduce((sum: number, n) => sum + (n ?? 0), 0);
}

const utf8 = new TextEncoder();

/** A well-formed delta that would create a session `key` with attribute `x`. */
function deltaFor(clusterName: string, key: string, node = 'intruder'): Uint8Array {
  const stamp = [Date.now(), 0, node] as const;
  const state: SessionState = {
    key,
    createdAt: stamp[0],
    lastAccessedAt: stamp[0],
    lastAccessedBy: node,
    maxInactive: { seconds: 1800, stamp },
    attributes: new Map([['x', { stamp, value: '[1]', bytes: 3 }]]),
  };
  return encodeEnvelope({
    cluster: clusterName,
    node,
    incarnation: `inc-${node}`,
    kind: 'delta',
    body: { id: 'm-1', s: [state] },
  } as never);
}

describe('garbage and foreign messages', () => {
  it('garbage on .delta, .hb, .state and .node.<n> changes nothing, is counted as dropped, and replication keeps working', async () => {
    const nodes = await cluster('it-garbage', ['a', 'b']);
    const [a, b] = nodes;
    const name = a!.sessions.cluster;
    const client = new CookieClient();
    await client.request(a!, 'PUT', '/session/attributes/keep', JSON.stringify('me'));
    const before = await waitForConvergence(nodes, [client.key]);
    const beforeDropped = nodes.map(droppedTotal);
    const beforeMembers = nodes.map((n) => n.sessions.membership.members().map((m) => `${m.node}/${m.incarnation}`));

    const garbage: Uint8Array[] = [
      new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0xc3]), // not UTF-8
      new Uint8Array(0), // empty
      utf8.encode('not json {'),
      utf8.encode('[1,2,3]'),
      utf8.encode('null'),
      utf8.encode(JSON.stringify({ v: WIRE_VERSION + 98, c: name, n: 'x', i: 'y', k: 'delta', b: {} })), // unsupported version
      utf8.encode(
        JSON.stringify({ v: WIRE_VERSION, c: name, n: 'x', i: 'y', k: 'delta', b: { id: '1', s: [{ k: '' }] } }),
      ), // bad body
      utf8.encode(JSON.stringify({ v: WIRE_VERSION, c: name, n: 'x', i: 'y', k: 'no-such-kind', b: {} })), // unknown kind
      utf8.encode(
        JSON.stringify({
          v: WIRE_VERSION,
          c: name,
          n: 'bad subject.token',
          i: 'y',
          k: 'hb',
          b: { started: 1, ready: true },
        }),
      ), // bad node id
      crypto.getRandomValues(new Uint8Array(60_000)), // a lot of noise
    ];
    const nc = await rawConnection();
    const subjects = {
      delta: `sessrep.${name}.delta`,
      hb: `sessrep.${name}.hb`,
      state: `sessrep.${name}.state`,
      nodeA: `sessrep.${name}.node.a`,
    };
    for (const subject of Object.values(subjects)) for (const data of garbage) nc.publish(subject, data);
    await nc.flush();

    // .delta and .hb reach both nodes, .state one donor (queue group), .node.a only a.
    const n = garbage.length;
    const expectedTotal = 2 * n + 2 * n + n + n;
    await waitFor(
      'every garbage message to be dropped',
      () => droppedTotal(a!) + droppedTotal(b!) - beforeDropped[0]! - beforeDropped[1]! >= expectedTotal,
    );
    expect(droppedTotal(a!) + droppedTotal(b!) - beforeDropped[0]! - beforeDropped[1]!).toBe(expectedTotal);
    expect(droppedTotal(a!) - beforeDropped[0]!).toBeGreaterThanOrEqual(3 * n);
    expect(droppedTotal(b!) - beforeDropped[1]!).toBeGreaterThanOrEqual(2 * n);
    for (const node of nodes) {
      expect(node.sessions.stats.dropped['unsupported-version']).toBeGreaterThanOrEqual(2);
      expect(node.sessions.stats.dropped.malformed).toBeGreaterThanOrEqual(2 * (n - 1));
    }

    // Nothing changed: same sessions, same members, nobody called "x" joined.
    for (const node of nodes) {
      expect(canonical(node.sessions.manager.inspect(client.key))).toEqual(before.get(client.key));
      expect(node.sessions.status().sessions.total).toBe(1);
      expect(node.sessions.membership.members().map((m) => m.node)).not.toContain('x');
    }
    expect(nodes.map((n) => n.sessions.membership.members().map((m) => `${m.node}/${m.incarnation}`))).toEqual(
      beforeMembers,
    );

    // Replication, state transfer and membership still work afterwards.
    await client.request(b!, 'PUT', '/session/attributes/after', JSON.stringify('garbage'));
    await waitForConvergence(nodes, [client.key]);
    expect(await sessionAttributes(client, a!)).toEqual({ keep: 'me', after: 'garbage' });
    const harness = harnesses[0]!;
    const c = await harness.add('c');
    expect(c.sessions.status().stateTransfer.state).toBe('done');
    expect(c.sessions.manager.find(client.key)).toBeDefined();
    await waitForMembership([a!, b!, c]);
  });

  it("a well-formed message naming another cluster, published on this cluster's subject, is dropped as foreign-cluster", async () => {
    const nodes = await cluster('it-foreign', ['a', 'b']);
    const [a, b] = nodes;
    const name = a!.sessions.cluster;
    const nc = await rawConnection();
    const foreignKey = 'F'.repeat(24);
    const ownKey = 'O'.repeat(24);
    nc.publish(`sessrep.${name}.delta`, deltaFor(`${name}-other`, foreignKey));
    nc.publish(
      `sessrep.${name}.hb`,
      encodeEnvelope({
        cluster: 'elsewhere',
        node: 'ghost',
        incarnation: 'g-1',
        kind: 'hb',
        body: { started: Date.now(), ready: true },
      } as never),
    );
    // Control: the same delta naming this cluster is accepted, so the foreign one was refused for its cluster only.
    nc.publish(`sessrep.${name}.delta`, deltaFor(name, ownKey));
    await nc.flush();

    await waitFor('the control delta to arrive', () =>
      nodes.every((n) => n.sessions.manager.inspect(ownKey) !== undefined),
    );
    for (const node of nodes) {
      expect(node.sessions.stats.dropped['foreign-cluster']).toBe(2);
      expect(node.sessions.manager.inspect(foreignKey)).toBeUndefined();
      expect(node.sessions.membership.has('ghost')).toBe(false);
    }
    expect(b!.sessions.manager.inspect(ownKey)?.attributes.get('x')?.value).toBe('[1]');
  });
});

describe('cluster isolation', () => {
  it("two clusters on one NATS (same node names) never see each other's members, sessions or messages", async () => {
    const [xa, xb] = await cluster('it-iso-x', ['a', 'b']);
    const [ya, yb] = await cluster('it-iso-y', ['a', 'b']);
    const x = [xa!, xb!];
    const y = [ya!, yb!];
    const clients = Array.from({ length: 10 }, () => new CookieClient());
    for (const [i, client] of clients.entries()) await client.request(x[i % 2]!, 'POST', '/counter');
    await waitForConvergence(x, undefined);
    const yClient = new CookieClient();
    await yClient.request(ya!, 'PUT', '/session/attributes/only', JSON.stringify('y'));
    await waitForConvergence(y, [yClient.key]);

    for (const node of x) expect(node.sessions.status().sessions.total).toBe(10);
    for (const node of y) {
      expect(node.sessions.status().sessions.total).toBe(1);
      expect(
        node.sessions
          .status()
          .members.map((m) => m.node)
          .sort(),
      ).toEqual(['a', 'b']);
      // Only its own peer's single write arrived; no message of cluster x was even delivered.
      expect(node.sessions.stats.dropped).toEqual({});
    }
    expect(yb!.sessions.stats.received.delta).toBe(1);
    expect(ya!.sessions.stats.received.delta ?? 0).toBe(0);
    for (const client of clients)
      for (const node of y) expect(node.sessions.manager.inspect(client.key)).toBeUndefined();
    for (const node of x) {
      expect(node.sessions.manager.inspect(yClient.key)).toBeUndefined();
      expect(node.sessions.stats.dropped).toEqual({});
      // The other node's 5 creations arrived (several may share one message: deltas of one event-loop turn are batched).
      expect(node.sessions.stats.received.delta).toBeGreaterThanOrEqual(1);
      expect(node.sessions.stats.received.delta).toBeLessThanOrEqual(5);
    }
    // Members are matched by incarnation: x's "b" is not y's "b".
    const xbIncarnation = xa!.sessions.membership.members()[0]!.incarnation;
    const ybIncarnation = ya!.sessions.membership.members()[0]!.incarnation;
    expect(xbIncarnation).not.toBe(ybIncarnation);
    // A cookie of cluster x means nothing to cluster y.
    expect((await clients[0]!.request(yb!, 'GET', '/session')).json).toMatchObject({ isNew: true, attributes: {} });
  });
});

describe('oversized sessions', () => {
  it('a request that would exceed maxSessionBytes gets 413 and the other node never sees anything of it', async () => {
    const nodes = await cluster('it-oversize', ['a', 'b'], { maxSessionBytes: 4096 });
    const [a, b] = nodes;
    const client = new CookieClient();
    await client.request(a!, 'PUT', '/session/attributes/small', JSON.stringify('ok'));
    const before = await waitForConvergence(nodes, [client.key]);
    const deltasBefore = b!.sessions.stats.received.delta ?? 0;

    const big = await client.request(a!, 'PUT', '/session/attributes/big', JSON.stringify('x'.repeat(5000)));
    expect(big.status).toBe(413);
    expect(big.json).toEqual({
      error: expect.stringContaining('over the limit of 4096 bytes'),
      code: 'SESSION_TOO_LARGE',
    });
    // A brand-new session that is too large is not created at all.
    const stranger = new CookieClient();
    const refused = await stranger.request(a!, 'PUT', '/session/attributes/big', JSON.stringify('y'.repeat(5000)));
    expect(refused.status).toBe(413);
    expect(stranger.cookie).toBeUndefined();
    expect(a!.sessions.stats.oversizedRejected).toBe(2);

    // A later write from A arrives on B: everything A sent before it has arrived too.
    await client.request(a!, 'PUT', '/session/attributes/marker', JSON.stringify('after'));
    await waitFor('the marker on b', () => b!.sessions.manager.find(client.key)?.attributes.get('marker'));
    expect(b!.sessions.stats.received.delta).toBe(deltasBefore + 1);
    for (const node of nodes) {
      const state = node.sessions.manager.inspect(client.key)!;
      expect(state.attributes.has('big')).toBe(false);
      const small = (canonical(state) as { attributes: unknown[][] }).attributes.find(([name]) => name === 'small');
      expect(small).toEqual(
        (before.get(client.key) as { attributes: unknown[][] }).attributes.find(([name]) => name === 'small'),
      );
      expect(node.sessions.status().sessions.total).toBe(1);
    }
    expect(await sessionAttributes(client, b!)).toEqual({ small: 'ok', marker: 'after' });
  });
});
