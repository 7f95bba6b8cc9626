// Owns: ended stays ended over a real nats-server (review finding 5): a node cut off from NATS for longer than
// tombstoneTtlMs comes back holding a session that was invalidated meanwhile; its resync must not bring it back.
import { describe, expect, inject, it } from 'vitest';
import {
  cleanupsAfterEach,
  CookieClient,
  createNatsNode,
  startForwarder,
  uniqueCluster,
  waitFor,
  waitForMembership,
  type TcpForwarder,
  type TestNode,
} from '../kit/index.ts';

const cleanups = cleanupsAfterEach();

/** A tombstone TTL far below the session timeout: the case where the TTL alone let ended sessions back. */
const OPTIONS = { maxInactiveSeconds: 30, tombstoneTtlMs: 300 } as const;

async function node(url: string, cluster: string, name: string): Promise<TestNode> {
  const created = await createNatsNode(url, cluster, name, OPTIONS);
  cleanups.push(() => created.stop());
  await created.sessions.start();
  return created;
}

describe('ended stays ended', () => {
  it('a node cut off past tombstoneTtlMs does not bring back a session invalidated meanwhile (before: its resync push recreated it everywhere)', async () => {
    const natsUrl = inject('natsUrl');
    const forwarder: TcpForwarder = await startForwarder(Number(new URL(natsUrl).port));
    cleanups.push(() => forwarder.close());
    const cluster = uniqueCluster('it-tombstone');
    const a = await node(natsUrl, cluster, 'a');
    const b = await node(natsUrl, cluster, 'b');
    const c = await node(forwarder.url, cluster, 'c');
    await waitForMembership([a, b, c]);

    const user = new CookieClient();
    expect((await user.request(a, 'PUT', '/session/attributes/principal', '"u1"')).status).toBe(200);
    const key = user.key;
    await waitFor('c to hold the session', () => c.sessions.manager.inspect(key) !== undefined, { timeoutMs: 5000 });

    await forwarder.reset();
    const logout = await new CookieClient({ cookie: user.cookie! }).request(a, 'POST', '/session/invalidate');
    expect(logout.status).toBeLessThan(300);
    // Longer than the TTL plus a few sweeps: a and b would have forgotten the end by the TTL alone.
    const cutAt = Date.now();
    await waitFor('the cut to outlast tombstoneTtlMs', () => Date.now() - cutAt > 1500, { timeoutMs: 5000 });
    expect(c.sessions.manager.inspect(key)?.ended).toBeUndefined(); // c still holds it live
    await forwarder.heal();
    await waitFor('c to catch up', () => c.sessions.ready && !c.sessions.manager.catchingUp, {
      timeoutMs: 20_000,
      intervalMs: 50,
    });
    await waitFor('c to hear of the end', () => c.sessions.manager.inspect(key)?.ended !== undefined, {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    for (const n of [a, b, c]) {
      expect(n.sessions.manager.find(key), n.name).toBeUndefined();
      const read = await new CookieClient({ cookie: user.cookie! }).request(n, 'GET', '/session');
      expect(read.json, n.name).toMatchObject({ isNew: true, attributes: {} });
    }
  }, 60_000);
});
