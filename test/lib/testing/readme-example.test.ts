// Owns: the "Testing your app" example of the README, kept as a real test so it stays true. Keep the
// two in step: the README shows this file's code from the `import` lines on.
import { Hono } from 'hono';
import { afterEach, expect, test } from 'vitest';
import type { ClusterNode, SessionVariables } from 'session-replication';
import { createTestCluster, type TestCluster } from 'session-replication/testing';

// Your app, built on one cluster node.
function createApp(node: ClusterNode) {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.use(node.middleware());
  app.post('/login/:user', (c) => {
    c.get('session').set('user', c.req.param('user'));
    return c.text('ok');
  });
  app.get('/me', (c) => c.json({ user: c.get('session').get('user') ?? null }));
  return app;
}

let cluster: TestCluster;
afterEach(() => cluster.stop());

test('a login on one node is seen on the others, and a partitioned node catches up after the heal', async () => {
  // sendMode 'ack': a response waits until the other nodes applied the write (or ackTimeoutMs passed).
  cluster = await createTestCluster({ nodes: 3, sendMode: 'ack', ackTimeoutMs: 1000, app: createApp });
  await cluster.request(0, '/login/ada', { method: 'POST' });
  expect(await (await cluster.request(1, '/me')).json()).toEqual({ user: 'ada' });

  cluster.faults.partition('n3');
  await cluster.request(0, '/login/grace', { method: 'POST' });
  // n3 missed it; cut off longer than memberDropMs, it serves nothing from its stale copy (503) until it caught up.
  expect((await cluster.request(2, '/me')).status).toBe(503);
  cluster.faults.heal();
  await expect.poll(async () => (await cluster.request(2, '/me')).json()).toEqual({ user: 'grace' });
});
