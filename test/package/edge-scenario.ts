// Owns: the scenario every edge runtime's tarball test runs: a write on one member node, read back
// on the other, and back again, through the user's cart app (fixtures/edge-app/app.ts); and the suite
// of the runtimes that run members as processes (Bun, Deno): two members over nats-server's WebSocket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieClient, spawnTracked, startNatsServer, waitFor } from '../kit/index.ts';
import type { NatsServerHandle, TrackedProcess } from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';

/** One member node of the scenario: its base URL, and the cookie route (node id) it serves under. */
export interface ScenarioNode {
  readonly url: string;
  readonly route: string;
}

interface Cart {
  id: string;
  isNew?: boolean;
  cart: string[];
}

/** The session key of a `<key>.<route>` id. */
function keyOf(id: string): string {
  return id.slice(0, id.lastIndexOf('.'));
}

/**
 * Resolves once `node` serves the session `key` (sent with `node`'s route, as a load balancer that
 * moved the client would) with exactly `cart`.
 */
function waitForCart(node: ScenarioNode, key: string, cart: string[]): Promise<Cart> {
  return waitFor(
    `${node.route} to read cart ${JSON.stringify(cart)}`,
    async () => {
      // A fresh probe each time: a read before the replica arrived gets a new session and cookie.
      const res = await new CookieClient({ cookie: `${key}.${node.route}` }).request(node.url, 'GET', '/cart');
      const body = res.json as Cart;
      if (res.status === 200 && !body.isNew && JSON.stringify(body.cart) === JSON.stringify(cart)) return body;
      throw new Error(`got ${res.status} ${res.text.slice(0, 300)}`);
    },
    { timeoutMs: 15_000, intervalMs: 50 },
  );
}

/** Writes on `first`, reads it back on `second`, writes there, and reads both writes back on `first`. */
export async function writeHereReadThere(first: ScenarioNode, second: ScenarioNode): Promise<void> {
  // A cookie with an unknown key: never adopted (a new session starts), but its route sends the
  // request to the first node where a router follows routes (the Durable Object router does).
  const client = new CookieClient({ cookie: `${'A'.repeat(24)}.${first.route}` });
  const created = await client.request(first.url, 'PUT', '/cart/apple');
  expect(created.status).toBe(200);
  const { id } = created.json as Cart;
  // The new session is served (and routed) by the first node.
  expect(id.endsWith(`.${first.route}`)).toBe(true);
  const key = keyOf(id);

  const seen = await waitForCart(second, key, ['apple']);
  // Served by the second node: the id carries its route now.
  expect(seen.id).toBe(`${key}.${second.route}`);

  const written = await new CookieClient({ cookie: `${key}.${second.route}` }).request(second.url, 'PUT', '/cart/pear');
  expect(written.status).toBe(200);
  expect((written.json as Cart).cart).toEqual(['apple', 'pear']);
  const back = await waitForCart(first, key, ['apple', 'pear']);
  expect(back.id).toBe(`${key}.${first.route}`);
}

/** How a runtime runs one member of the edge app as a process (`<runtime>-node.ts` in the app folder). */
export interface ProcessRuntime {
  /** Its name in test titles (`Bun`); lower-cased, in the entry point, the cluster and process names. */
  readonly name: string;
  /** The runtime's binary (from its npm package; nothing is downloaded). */
  readonly binary: () => string;
  /** The arguments that run `file` (`bun-node.ts`). */
  readonly args: (file: string) => string[];
  /** The runtime's own environment (caches in `appDir`), besides PATH, HOME, NO_COLOR and the member's settings. */
  readonly env: (appDir: string) => Record<string, string>;
}

/**
 * The packed package on a process runtime: the edge app from a fresh app folder, served by
 * `session-replication/<runtime>` as two member processes over a real nats-server's WebSocket listener;
 * a write on one is read back on the other, and SIGTERM makes each leave gracefully and exit 0.
 */
export function describeProcessRuntime(runtime: ProcessRuntime): void {
  const id = runtime.name.toLowerCase();
  const cluster = `${id}-pkg-${process.pid}`;
  let nats: NatsServerHandle;
  let app: InstalledApp;
  const nodes: Array<{ node: ScenarioNode; process: TrackedProcess }> = [];

  /** Starts member `route`; resolves once it listens and has joined. */
  async function startNode(route: string): Promise<{ node: ScenarioNode; process: TrackedProcess }> {
    const proc = spawnTracked(runtime.binary(), runtime.args(`${id}-node.ts`), {
      cwd: app.dir,
      name: `${id}-${route}`,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NO_COLOR: '1',
        ...runtime.env(app.dir),
        NATS_WS_URL: nats.wsUrl!,
        CLUSTER: cluster,
        NODE: route,
      },
    });
    const [, url] = await proc.waitForOutput(/\{"listening":"(http:\/\/[^"]+)"\}/, 60_000);
    await proc.waitForOutput(/\{"ready":"/, 30_000);
    return { node: { url: url!, route }, process: proc };
  }

  beforeAll(async () => {
    [nats, app] = await Promise.all([
      startNatsServer({ websocket: true }),
      createApp('test/package/fixtures/edge-app', { dependencies: ['hono', '@nats-io/nats-core'] }),
    ]);
    nodes.push(await startNode('a'), await startNode('b'));
  }, 360_000);

  afterAll(async () => {
    await Promise.allSettled(nodes.map((n) => n.process.stop(5000)));
    await nats?.stop();
  });

  describe(`session-replication/${id} from the packed tarball`, () => {
    it(`a write on one ${runtime.name} member is read back on the other, and back`, async () => {
      await writeHereReadThere(nodes[0]!.node, nodes[1]!.node);
    });

    it(`SIGTERM: each ${runtime.name} member leaves gracefully and exits 0`, async () => {
      for (const { process: proc } of nodes) proc.kill('SIGTERM');
      const exits = await Promise.all(nodes.map((n) => n.process.exited));
      expect(exits.map((e) => e.code)).toEqual([0, 0]);
    });
  });
}
