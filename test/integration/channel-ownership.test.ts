// Owns: integration tests of what a node's stop() closes over a real nats-server: a NatsChannel the caller
// passed in (and its connection) stays open and usable; the node releases only its own subscriptions.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { decodeValue } from '../../lib/session/values.ts';
import { createCluster, type SessionVariables } from '../../lib/index.ts';
import { FAST, Harness, memoryLogger, uniqueCluster, waitFor } from '../kit/index.ts';

let harness: Harness | undefined;
const connections: NatsConnection[] = [];
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
  await Promise.all(connections.splice(0).map((nc) => (nc.isClosed() ? undefined : nc.close())));
});

/** A connection the test owns, as an app would open it (noEcho as the node server does). */
async function appConnection(name: string): Promise<NatsConnection> {
  const nc = await connect({ servers: inject('natsUrl'), name, noEcho: true });
  connections.push(nc);
  return nc;
}

describe('stop() closes only what the node opened', () => {
  it('a NatsChannel passed in stays open after stop(): the same channel carries a second node that replicates', async () => {
    const cluster = uniqueCluster('it-owner');
    harness = new Harness(inject('natsUrl'), cluster);
    const [peer] = await harness.start('peer');
    const nc = await appConnection('it-owner-app');
    const channel = new NatsChannel(nc);

    const first = createCluster({ ...FAST, logger: memoryLogger(), cluster, node: 'first', channel });
    await first.start();
    await waitFor('peer to see first ready', () =>
      peer!.sessions.membership.readyMembers().some((m) => m.node === 'first'),
    );
    await first.stop();
    expect(nc.isClosed()).toBe(false);
    await waitFor('peer to see first leave', () => !peer!.sessions.membership.has('first'));

    // The caller's connection still works for the caller: a request over it gets its answer (from the peer's connection).
    const echo = peer!.nc.subscribe(`${cluster}.echo`, {
      callback: (_error, message) => {
        message.respond(message.data);
      },
    });
    await peer!.nc.flush();
    const answer = await channel.request(`${cluster}.echo`, new TextEncoder().encode('ping'), { timeoutMs: 2000 });
    expect(new TextDecoder().decode(answer)).toBe('ping');
    echo.unsubscribe();

    // And it carries a new node of the cluster, whose writes reach the peer.
    const second = createCluster({ ...FAST, logger: memoryLogger(), cluster, node: 'second', channel });
    await second.start();
    try {
      await waitFor('peer to see second ready', () =>
        peer!.sessions.membership.readyMembers().some((m) => m.node === 'second'),
      );
      const app = new Hono<{ Variables: SessionVariables }>();
      app.use(second.middleware());
      app.post('/set', (c) => {
        c.get('session').set('owner', 'caller');
        return c.body(null, 204);
      });
      const res = await app.request('/set', { method: 'POST' });
      expect(res.status).toBe(204);
      const key = res.headers.get('set-cookie')!.split('=')[1]!.split('.')[0]!;
      await waitFor('the session on peer', () => peer!.sessions.manager.find(key));
      expect(decodeValue(peer!.sessions.manager.find(key)!.attributes.get('owner')!.value!)).toBe('caller');
    } finally {
      await second.stop();
    }
    expect(nc.isClosed()).toBe(false);
  });
});
