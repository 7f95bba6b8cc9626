// Owns: the scenario every edge runtime's tarball test runs: a write on one member node, read back
// on the other, and back again, through the user's cart app (fixtures/edge-app/app.ts).
import { expect } from 'vitest';
import { CookieClient, waitFor } from '../kit/index.ts';

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
