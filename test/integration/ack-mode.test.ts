// Owns: integration tests of send mode `ack`: a write answered on one node is visible on the first read on another.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { holdingChannel, type HoldingChannel } from '../kit/holding-channel.ts';
import {
  CookieClient,
  createNatsNode,
  Harness,
  uniqueCluster,
  waitFor,
  waitForConvergence,
  waitForMembership,
} from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

describe('send mode ack over NATS', () => {
  it('50 times: a write answered on one node is seen by the very first read on another', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-ack'), { sendMode: 'ack', ackTimeoutMs: 5000 });
    const nodes = await harness.start('a', 'b', 'c');
    for (let i = 0; i < 50; i++) {
      const writer = nodes[i % 3]!;
      const reader = nodes[(i + 1) % 3]!;
      const third = nodes[(i + 2) % 3]!;
      const client = new CookieClient();
      // Creation and first attribute in one request on the writer...
      const created = await client.request(writer, 'PUT', '/session/attributes/round', String(i));
      expect(created.status).toBe(200);
      // ...read at once on the next node: no waiting, no retry.
      const first = await client.request(reader, 'GET', '/session');
      expect(first.json, `round ${i}: first read on ${reader.name}`).toMatchObject({
        isNew: false,
        attributes: { round: i },
      });
      // An update on the reader is seen at once on the third node.
      expect((await client.request(reader, 'PUT', '/session/attributes/round', String(i + 1000))).status).toBe(200);
      const second = await client.request(third, 'GET', '/session');
      expect(second.json, `round ${i}: first read on ${third.name}`).toMatchObject({
        isNew: false,
        attributes: { round: i + 1000 },
      });
    }
    for (const node of nodes) {
      expect(node.sessions.stats.acksTimedOut).toBe(0);
      expect(node.sessions.status().sendMode).toBe('ack');
    }
    // Every write was acknowledged by both other nodes: 100 modifying commits, 2 acks each.
    const acks = nodes.reduce((sum, node) => sum + (node.sessions.stats.received.ack ?? 0), 0);
    expect(acks).toBeGreaterThanOrEqual(200);
    await waitForConvergence(nodes, undefined, { access: false });
  });

  it('an invalidation answered on A is already effective on the first request to B', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-ack-inv'), { sendMode: 'ack' });
    const [a, b] = await harness.start('a', 'b');
    for (let i = 0; i < 10; i++) {
      const client = new CookieClient();
      await client.request(a!, 'POST', '/counter');
      const cookie = client.cookie!;
      expect((await client.request(a!, 'POST', '/session/invalidate')).status).toBe(204);
      const stale = new CookieClient();
      stale.cookie = cookie;
      expect((await stale.request(b!, 'GET', '/session')).json).toMatchObject({ isNew: true, attributes: {} });
    }
  });

  it('a member that leaves does not hold up acknowledged writes', async () => {
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-ack-leave'), { sendMode: 'ack', ackTimeoutMs: 5000 });
    const [a, b, c] = await harness.start('a', 'b', 'c');
    await c!.stop();
    await waitFor('a to see c leave', () => !a!.sessions.membership.has('c'));
    const client = new CookieClient();
    const started = Date.now();
    await client.request(a!, 'PUT', '/session/attributes/x', '1');
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await client.request(b!, 'GET', '/session')).json.attributes).toEqual({ x: 1 });
    expect(a!.sessions.stats.acksTimedOut).toBe(0);
  });
});

describe('a member that dies in ack mode (its NATS connection gone, no leave sent)', () => {
  it("writes stop waiting for it at once (the broker's no-responders to a ping makes it unreachable); it is dropped after reconnectGraceMs, long before memberDropMs", async () => {
    const slow = {
      sendMode: 'ack',
      ackTimeoutMs: 10_000,
      heartbeatIntervalMs: 5_000,
      memberDropMs: 10_000,
      pingTimeoutMs: 1_000,
    } as const;
    harness = new Harness(inject('natsUrl'), uniqueCluster('it-ack-dead'), slow);
    const [a, b, c] = await harness.start('a', 'b', 'c');
    const client = new CookieClient();
    expect((await client.request(a!, 'PUT', '/session/attributes/x', '1')).status).toBe(200);
    // The process is gone: its connection closes without a leave (like SIGKILL), so the broker drops its subscriptions.
    await c!.nc.close();
    const died = Date.now();
    expect((await client.request(a!, 'PUT', '/session/attributes/x', '2')).status).toBe(200);
    const writeMs = Date.now() - died;
    expect(a!.sessions.membership.members().find((m) => m.node === 'c')?.state).toBe('unreachable');
    expect(writeMs).toBeLessThan(slow.memberDropMs);
    await waitFor('a to drop c', () => !a!.sessions.membership.has('c'), { timeoutMs: slow.memberDropMs });
    expect(a!.sessions.stats.acksTimedOut).toBe(0);
    expect((await client.request(b!, 'GET', '/session')).json).toMatchObject({ isNew: false, attributes: { x: 2 } });
    console.info(`[it-ack-dead] the write after the death answered in ${writeMs} ms`);
  });
});

describe('a member that keeps its subscriptions but does not answer (paused, or killed before the broker saw its connection close)', () => {
  it('a read that only refreshed the access time is answered without its ack, a write still waits for it, and the touch reaches it once it answers', async () => {
    const cluster = uniqueCluster('it-ack-touch');
    harness = new Harness(inject('natsUrl'), cluster, { sendMode: 'ack', ackTimeoutMs: 4000 });
    const [a, b] = await harness.start('a', 'b');
    let silent: HoldingChannel | undefined;
    // c receives nothing on the delta subject and its own subject (deltas, resends, pings) while held: it never acks.
    const c = await createNatsNode(inject('natsUrl'), cluster, 'c', harness.options, (inner) => {
      silent = holdingChannel(inner, [`sessrep.${cluster}.delta`, `sessrep.${cluster}.node.c`]);
      return silent;
    });
    harness.nodes.push(c);
    await c.sessions.start();
    await waitForMembership(harness.nodes);
    const client = new CookieClient();
    expect((await client.request(a!, 'PUT', '/session/attributes/x', '1')).status).toBe(200);
    silent!.hold();

    // b never served this session: its read sends a touch, which c does not acknowledge.
    const read = await client.request(b!, 'GET', '/session');
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ isNew: false, attributes: { x: 1 } });
    await waitFor('the touch to reach c, which holds it unacknowledged', () => silent!.held > 0);
    expect(b!.sessions.stats.acksTimedOut).toBe(0);

    // A write is still acknowledged by every member before it is answered.
    const heldBefore = silent!.held;
    let written: number | undefined;
    const write = client.request(b!, 'PUT', '/session/attributes/x', '2').then((reply) => (written = reply.status));
    await waitFor('the write to reach c (held)', () => silent!.held > heldBefore);
    expect(written).toBeUndefined();
    silent!.release();
    await write;
    expect(written).toBe(200);
    // The touch reached c too: it knows b served the session last (its expiry leaves the session to b).
    await waitFor(
      'c to apply the touch and the write',
      () => c.sessions.manager.inspect(client.key)?.lastAccessedBy === 'b',
    );
    expect((await client.request(c, 'GET', '/session')).json).toMatchObject({ attributes: { x: 2 } });
    await waitFor('b to have no ack outstanding', () => b!.sessions.manager.drainRemaining() === 0);
    expect(b!.sessions.stats.acksTimedOut).toBe(0);
  });
});
