// Owns: integration tests of concurrent writes to one session from three nodes: every replica converges to one state.
import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { SendMode, SessionVariables } from '../../lib/index.ts';
import { canonical, CookieClient, Harness, uniqueCluster, waitForConvergence, type TestNode } from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

/** A Hono app on `node` whose POST /mix/:i makes several writes in one request, some contended across nodes. */
function mixApp(node: TestNode): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.use('*', node.sessions.middleware());
  app.post('/mix/:i', (c) => {
    const i = Number(c.req.param('i'));
    const session = c.get('session');
    session.set('shared', `${node.name}:${i}`); // every node writes it every time
    session.set(`own-${node.name}`, i); // only this node writes it
    session.set(`slot-${i % 4}`, { by: node.name, i, at: new Date(i) }); // contended, fewer writers per name
    if (i % 5 === 0) session.delete('flip');
    else session.set('flip', `${node.name}:${i}`);
    return c.json({ ok: true });
  });
  return app;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3)));

async function hammer(mode: SendMode, rounds: number): Promise<void> {
  harness = new Harness(inject('natsUrl'), uniqueCluster(`it-conc-${mode}`), { sendMode: mode });
  const nodes = await harness.start('a', 'b', 'c');
  const apps = nodes.map(mixApp);
  const seed = new CookieClient();
  await seed.request(nodes[0]!, 'PUT', '/session/attributes/seed', '0');
  const key = seed.key;
  await waitForConvergence(nodes, [key]);

  const written = new Set<string>();
  // Three writers, one per node, each with its own copy of the cookie, all running at once.
  await Promise.all(
    nodes.map(async (node, n) => {
      const client = new CookieClient();
      client.cookie = seed.cookie!;
      for (let i = 0; i < rounds; i++) {
        const useDemo = i % 3 === 2;
        const reply = useDemo
          ? await client.request(node, 'PUT', '/session/attributes/shared', JSON.stringify(`${node.name}:${i}`))
          : await client.request(apps[n]!, 'POST', `/mix/${i}`);
        expect(reply.status).toBe(200);
        expect(client.key).toBe(key);
        written.add(`${node.name}:${i}`);
        await tick();
      }
    }),
  );

  const states = await waitForConvergence(nodes, [key], { timeoutMs: 15000 });
  const agreed = states.get(key);
  for (const node of nodes) expect(canonical(node.sessions.manager.inspect(key))).toEqual(agreed);

  // What the handlers see is identical everywhere too, and follows last-writer-wins per attribute.
  const views = await Promise.all(
    nodes.map(async (node) => (await seed.request(node, 'GET', '/session')).json.attributes),
  );
  expect(views[1]).toEqual(views[0]);
  expect(views[2]).toEqual(views[0]);
  const attributes = views[0] as Record<string, unknown>;
  expect(attributes.seed).toBe(0);
  expect(written.has(attributes.shared as string)).toBe(true);
  const lastMix = [...Array(rounds).keys()].filter((i) => i % 3 !== 2).at(-1)!;
  for (const node of nodes) expect(attributes[`own-${node.name}`]).toBe(lastMix);
  for (let slot = 0; slot < 4; slot++)
    expect(attributes[`slot-${slot}`]).toMatchObject({ i: expect.any(Number), by: expect.stringMatching(/^[abc]$/) });
}

describe('concurrent writes to one session from three nodes', () => {
  it('converge to one identical state on every node (async send, 60 rounds per node)', async () => {
    await hammer('async', 60);
  });

  it('converge to one identical state on every node (ack send, 40 rounds per node)', async () => {
    await hammer('ack', 40);
  });
});
