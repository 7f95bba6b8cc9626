// Owns: integration tests of state transfer: a late joiner holds every session, identical, when start() resolves.
import { isDeepStrictEqual } from 'node:util';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  canonical,
  CookieClient,
  Harness,
  uniqueCluster,
  waitFor,
  waitForConvergence,
  waitForMembership,
  type TestNode,
} from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

/**
 * Creates `count` sessions spread over `nodes`, with varied content; every 50th is invalidated and
 * some get their own timeout. Resolves with the clients and their session keys, by index.
 */
async function populate(nodes: TestNode[], count: number): Promise<{ clients: CookieClient[]; keys: string[] }> {
  const clients: CookieClient[] = [];
  const keys: string[] = [];
  const padding = 'x'.repeat(400);
  for (let i = 0; i < count; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
        const n = i + j;
        const node = nodes[n % nodes.length]!;
        const client = new CookieClient();
        await client.request(node, 'PUT', '/session/attributes/n', String(n));
        await client.request(node, 'PUT', '/session/attributes/blob', JSON.stringify({ n, padding }));
        if (n % 10 === 3) await client.request(node, 'DELETE', '/session/attributes/blob');
        if (n % 10 === 5) await client.request(node, 'PUT', '/session/max-inactive-interval', '7200');
        keys[n] = client.key;
        if (n % 50 === 7) await client.request(node, 'POST', '/session/invalidate');
        clients[n] = client;
      }),
    );
  }
  return { clients, keys };
}

describe('late joiner over NATS', () => {
  it('the first node of a cluster starts empty at once (no donor)', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-first'));
    const started = Date.now();
    const a = await harness.add('a');
    expect(Date.now() - started).toBeLessThan(5000); // no-responders at once, not the 60 s transfer timeout
    expect(a.sessions.ready).toBe(true);
    expect(a.sessions.status().stateTransfer).toMatchObject({ state: 'skipped', sessionsReceived: 0, pages: 0 });
  });

  it('a node joining a cluster with 2,000 sessions holds all of them, identical, when start() resolves', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-join'));
    const nodes = await harness.start('a', 'b', 'c');
    const { clients, keys } = await populate(nodes, 2000);
    const before = await waitForConvergence(nodes, keys, { timeoutMs: 20000 });
    expect(before.size).toBe(2000);

    const joinStarted = Date.now();
    const d = await harness.add('d');
    const joinMs = Date.now() - joinStarted;
    expect(d.sessions.ready).toBe(true);

    // No waiting: the joiner agrees with the donor on every session at the moment start() resolved.
    const transfer = d.sessions.status().stateTransfer;
    expect(transfer.state).toBe('done');
    const donor = nodes.find((n) => n.name === transfer.donor)!;
    expect(donor).toBeDefined();
    expect(transfer.sessionsReceived).toBe(2000); // 1,960 live sessions plus 40 tombstones
    expect(transfer.pages).toBeGreaterThanOrEqual(2);
    expect(d.sessions.status().sessions).toEqual({ total: 1960, tombstones: 40 });
    for (const key of keys) expect(canonical(d.sessions.manager.inspect(key)), key).toEqual(before.get(key));
    console.info(
      `[timing] late join with 2,000 sessions (${transfer.pages} pages from ${transfer.donor}): start() took ${joinMs} ms`,
    );

    // ...and it serves them: clients read back their own values on the joiner; invalidated ones get a new session.
    for (let n = 0; n < 2000; n += 37) {
      const reply = await clients[n]!.request(d, 'GET', '/session');
      if (n % 50 === 7) expect(reply.json).toMatchObject({ isNew: true, attributes: {} });
      else
        expect(reply.json, `session ${n}`).toMatchObject({
          isNew: false,
          attributes: { n },
          maxInactiveInterval: n % 10 === 5 ? 7200 : 1800,
        });
    }
  }, 90_000); // 2,000 sessions take several seconds to create on a busy machine

  it('writes made while a node joins reach it (buffered during the transfer) and everyone converges', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-join-live'));
    const nodes = await harness.start('a', 'b');
    const { clients } = await populate(nodes, 600);
    await waitForConvergence(nodes, undefined, { timeoutMs: 20000 });

    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        const n = (writes * 7) % 600;
        const client = clients[n % 50 === 7 ? n + 1 : n]!; // skip invalidated sessions
        const reply = await client.request(nodes[writes % 2]!, 'PUT', '/session/attributes/live', String(writes));
        expect(reply.json.isNew).toBe(false);
        writes++;
        // app.request resolves in microtasks only: yield so NATS I/O (and the joiner) can run.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    let c: TestNode;
    try {
      c = await harness.add('c');
    } finally {
      writing = false;
      await writer;
    }
    expect(writes).toBeGreaterThan(0);
    const all = [...nodes, c];
    const states = await waitForConvergence(all, undefined, { timeoutMs: 20000 });
    expect(states.size).toBe(600 - 12);
    // The joiner serves the sessions it received with their latest values.
    for (const n of [0, 1, 2, 99, 598]) {
      const reply = await clients[n]!.request(c, 'GET', '/session');
      expect(reply.json).toMatchObject({ isNew: false, attributes: { n } });
    }
  });
});

describe('a node that missed a session never serves part of it', () => {
  it('a joiner whose transfer brought nothing gets the whole session when a later write reaches it, not that write alone', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-partial'));
    const [a] = await harness.start('a', 'b');
    const client = new CookieClient();
    expect((await client.request(a!, 'PUT', '/session/attributes/x', '1')).status).toBe(200);
    expect((await client.request(a!, 'PUT', '/session/attributes/y', '2')).status).toBe(200);
    // A transfer budget that is over before any page arrives: c starts without the session.
    const c = await harness.add('c', { stateTransferTimeoutMs: 1 });
    await waitForMembership(harness.nodes);
    expect(c.sessions.manager.inspect(client.key)).toBeUndefined();

    // The delta of this write carries z only.
    expect((await client.request(a!, 'PUT', '/session/attributes/z', '3')).status).toBe(200);
    await waitFor('c to hold the session', () => c.sessions.manager.inspect(client.key) !== undefined, {
      timeoutMs: 5000,
    });
    const read = await client.request(c, 'GET', '/session');
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ isNew: false, attributes: { x: 1, y: 2, z: 3 } });
    // The read's touch is answered before it leaves (a touch-only read does not wait for it): a converges on it.
    await waitFor('a and c to hold the same session', () =>
      isDeepStrictEqual(
        canonical(c.sessions.manager.inspect(client.key)),
        canonical(a!.sessions.manager.inspect(client.key)),
      ),
    );
  });
});
