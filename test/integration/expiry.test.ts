// Owns: integration tests of expiry everywhere: cluster-wide and per-session timeouts, touches keeping a session alive.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { CookieClient, Harness, uniqueCluster, waitFor, waitForConvergence, type TestNode } from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

/** Waits until every node holds `key` as a tombstone that ended for `reason`; resolves with the wait time. */
async function waitForEnded(
  nodes: TestNode[],
  key: string,
  reason: 'expired' | 'invalidated',
  timeoutMs = 10000,
): Promise<number> {
  const started = Date.now();
  await waitFor(
    `${key.slice(0, 8)} to be ${reason} on ${nodes.map((n) => n.name).join(',')}`,
    () => nodes.every((node) => node.sessions.manager.inspect(key)?.ended?.reason === reason),
    { timeoutMs },
  );
  return Date.now() - started;
}

describe('expiry everywhere over NATS', () => {
  it('with maxInactiveSeconds 1 an idle session expires on every node, and its cookie then gets a new session', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-expire'), { maxInactiveSeconds: 1 });
    const nodes = await harness.start('a', 'b', 'c');
    const [a, b] = nodes;
    const client = new CookieClient();
    // Taken before the request: the session's last access is stamped while the request runs, and a slow
    // response (a loaded machine) must not make the expiry look early.
    const createdAt = Date.now();
    await client.request(a!, 'PUT', '/session/attributes/secret', JSON.stringify('s3cr3t'));
    const key = client.key;
    await waitForConvergence(nodes, [key]);

    await waitForEnded(nodes, key, 'expired');
    const after = Date.now() - createdAt;
    expect(after).toBeGreaterThanOrEqual(1000);
    const states = await waitForConvergence(nodes, [key]);
    expect(states.get(key)).toMatchObject({ attributes: [], ended: [expect.any(Array), 'expired'] });
    for (const node of nodes) {
      expect(node.sessions.status().sessions.total).toBe(0);
      expect(node.sessions.manager.find(key)).toBeUndefined();
    }
    // Only the node that last used it expired it by its own sweep; the others got its expire message.
    expect(a!.sessions.stats.sessionsExpired).toBe(1);
    const fresh = await client.request(b!, 'GET', '/session');
    expect(fresh.json).toMatchObject({ isNew: true, attributes: {} });
    expect(client.key).not.toBe(key);
    console.info(`[timing] maxInactive 1 s: expired on all 3 nodes ${after} ms after the last write`);
  });

  it('a per-session interval set through PUT /session/max-inactive-interval expires that session everywhere, and only it', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-expire-per'));
    const nodes = await harness.start('a', 'b', 'c');
    const [a, b, c] = nodes;
    const short = new CookieClient();
    const long = new CookieClient();
    await short.request(a!, 'POST', '/counter');
    await long.request(a!, 'POST', '/counter');
    await waitForConvergence(nodes, [short.key, long.key]);
    expect((await short.request(b!, 'PUT', '/session/max-inactive-interval', '1')).json.maxInactiveInterval).toBe(1);

    await waitForEnded(nodes, short.key, 'expired');
    expect(b!.sessions.stats.sessionsExpired).toBe(1);
    for (const node of nodes) expect(node.sessions.manager.find(long.key)).toBeDefined();
    expect((await long.request(c!, 'POST', '/counter')).json).toEqual({ counter: 2, node: 'c' });
  });

  it('reads on B keep a 2 s session alive on every node well past its timeout; an untouched one expires', async () => {
    const maxInactiveSeconds = 2;
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-touch'), { maxInactiveSeconds });
    const nodes = await harness.start('a', 'b', 'c');
    const [a, b] = nodes;
    const touched = new CookieClient();
    const idle = new CookieClient();
    await touched.request(a!, 'PUT', '/session/attributes/v', '1');
    await idle.request(a!, 'PUT', '/session/attributes/v', '2');
    const created = Date.now();
    await waitForConvergence(nodes, [touched.key, idle.key]);

    let touching = true;
    let touches = 0;
    const toucher = (async () => {
      while (touching) {
        const reply = await touched.request(b!, 'GET', '/session');
        expect(reply.json, `touch ${touches}`).toMatchObject({ isNew: false, attributes: { v: 1 } });
        touches++;
        // Kept: paces the reads (time must pass while the session is in use); one every tenth of the timeout.
        await new Promise((resolve) => setTimeout(resolve, maxInactiveSeconds * 100));
      }
    })();
    try {
      await waitForEnded(nodes, idle.key, 'expired');
      // Stay past the timeout plus the grace other nodes give a session last used elsewhere (2 x 1 s touch interval).
      await waitFor(
        '5 s since creation, touched session alive everywhere',
        () => {
          for (const node of nodes)
            expect(node.sessions.manager.inspect(touched.key)?.ended, `${node.name} ended it`).toBeUndefined();
          return Date.now() - created >= 5000;
        },
        { timeoutMs: 8000 },
      );
    } finally {
      touching = false;
      await toucher;
    }
    expect(touches).toBeGreaterThan(10);
    // Touches are rate-limited: far fewer replicated touches than reads.
    const deltasOnA = a!.sessions.stats.received.delta ?? 0;
    expect(deltasOnA).toBeLessThan(touches);
    await waitForEnded(nodes, touched.key, 'expired');
  });

  it('a short per-session interval is kept alive by reads alternating between nodes', async () => {
    // The cluster default (30 min) gives a 60 s touch interval; the session's own 2 s interval must still hold.
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-touch-per'));
    const nodes = await harness.start('a', 'b', 'c');
    const [a, b] = nodes;
    const client = new CookieClient();
    await client.request(a!, 'POST', '/counter');
    const maxInactiveSeconds = 2;
    await client.request(a!, 'PUT', '/session/max-inactive-interval', String(maxInactiveSeconds));
    await waitForConvergence(nodes, [client.key]);
    const started = Date.now();
    let reads = 0;
    while (Date.now() - started < 5000) {
      // Mostly on B, now and then on A: the session is in use the whole time.
      const node = reads % 10 === 1 ? a! : b!;
      const reply = await client.request(node, 'GET', '/session');
      expect(reply.json, `read ${reads} on ${node.name} after ${Date.now() - started} ms`).toMatchObject({
        isNew: false,
        attributes: { counter: 1 },
      });
      reads++;
      // Kept: paces the reads (time must pass while the session is in use); one every tenth of its interval.
      await new Promise((resolve) => setTimeout(resolve, maxInactiveSeconds * 100));
    }
    await waitForEnded(nodes, client.key, 'expired');
  });

  it('a session last used on a node that left is no longer served by the survivors, and dropped there at twice its interval (only the last server ends a session everywhere)', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-expire-orphan'), { maxInactiveSeconds: 1 });
    const nodes = await harness.start('a', 'b', 'c');
    const [a, b, c] = nodes;
    const client = new CookieClient();
    await client.request(a!, 'POST', '/counter');
    await waitForConvergence(nodes, [client.key]);
    const idleSince = Date.now();
    await a!.stop();
    // Timeout 1 s, touch interval 1 s: not served after 1 s + 2 touch intervals, dropped after 2 s + 2 touch intervals.
    await waitFor(
      'the survivors to decline the session',
      () => [b!, c!].every((node) => node.sessions.manager.find(client.key) === undefined),
      { timeoutMs: 6000 },
    );
    expect(Date.now() - idleSince).toBeGreaterThanOrEqual(2900);
    await waitFor(
      'the survivors to drop the session',
      () => [b!, c!].every((node) => node.sessions.manager.inspect(client.key) === undefined),
      { timeoutMs: 8000 },
    );
    expect(Date.now() - idleSince).toBeGreaterThanOrEqual(3900);
    // Nobody broadcast an end: no tombstone anywhere.
    for (const node of [b!, c!]) expect(node.sessions.stats.sessionsExpired).toBe(0);
  });
});
