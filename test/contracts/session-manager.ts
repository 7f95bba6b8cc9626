// Owns: the SessionManager contract suite: what every replication strategy (delta, backup) must do, run
// against each strategy over each transport (memory in test/lib/managers, NATS in test/integration).
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '../../lib/channel/channel.ts';
import { createCluster, type ClusterOptions, type ClusterNode } from '../../lib/cluster/index.ts';
import type { SessionManager } from '../../lib/managers/manager.ts';
import type { SessionVariables } from '../../lib/middleware/session-middleware.ts';
import { decodeValue } from '../../lib/session/values.ts';
import { waitFor } from '../../functions/launch/index.ts';
import { silentLogger } from '../kit/logger.ts';
import { uniqueCluster } from '../kit/names.ts';
import { FASTER } from '../kit/timings.ts';

/** What one run of the contract needs. */
export interface SessionManagerContractOptions {
  /** Shown in the suite's name, e.g. `delta over memory`. */
  readonly name: string;
  /** The strategy under test. */
  readonly manager: 'delta' | 'backup';
  /** A new channel for one node; every channel of one test must reach the others (a test uses its own cluster name). */
  readonly channel: () => Channel | Promise<Channel>;
  /** Timings that suit the transport; merged over the in-process `FASTER` timings. */
  readonly options?: Partial<ClusterOptions>;
  /** Regression tests of this strategy or transport, run inside the suite. */
  readonly additionalTests?: () => void;
}

/** A node under test: the cluster node, its manager, and a Hono app over its middleware. */
interface ContractNode {
  readonly name: string;
  readonly node: ClusterNode;
  readonly manager: SessionManager;
  readonly app: Hono<{ Variables: SessionVariables }>;
}

/** `POST /set` (every entry of the JSON body), `GET /get`, `POST /invalidate`. */
function contractApp(node: ClusterNode): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.use(node.middleware());
  app.post('/set', async (c) => {
    for (const [name, value] of Object.entries(await c.req.json<Record<string, unknown>>()))
      c.get('session').set(name, value);
    return c.text('ok');
  });
  app.get('/get', (c) => c.json(c.get('session').attributes()));
  app.post('/invalidate', (c) => {
    c.get('session').invalidate();
    return c.text('bye');
  });
  return app;
}

/** The decoded attributes of a live state, or undefined. */
function attributes(
  state: { attributes: Map<string, { value?: string }> } | undefined,
): Record<string, unknown> | undefined {
  if (!state) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, register] of state.attributes)
    if (register.value !== undefined) out[name] = decodeValue(register.value);
  return out;
}

/**
 * Runs the SessionManager contract: find, resolve, commit and apply, invalidate, expiry by sweep,
 * counts and summaries, drain, and state transfer to a joiner. Every node is reached only through the
 * `SessionManager` interface and the middleware, as `createCluster` wires them.
 */
export function describeSessionManagerContract({
  name,
  manager,
  channel,
  options = {},
  additionalTests,
}: SessionManagerContractOptions): void {
  describe(`SessionManager contract: ${name}`, () => {
    const running: ClusterNode[] = [];
    const channels: Channel[] = [];
    let cluster = '';

    afterEach(async () => {
      await Promise.all(running.splice(0).map((node) => node.stop().catch(() => undefined)));
      // The caller of createCluster owns the channel it passed: close each one after its node stopped.
      await Promise.all(channels.splice(0).map((c) => c.close().catch(() => undefined)));
    });

    async function startNode(nodeName: string, extra: Partial<ClusterOptions> = {}): Promise<ContractNode> {
      const nodeChannel = await channel();
      channels.push(nodeChannel);
      const node = createCluster({
        ...FASTER,
        ...options,
        ...extra,
        cluster,
        node: nodeName,
        manager,
        channel: nodeChannel,
        logger: silentLogger,
      });
      running.push(node);
      await node.start();
      return { name: nodeName, node, manager: node.manager, app: contractApp(node) };
    }

    /** Starts nodes one after another on a fresh cluster and waits until each sees every other ready. */
    async function startNodes(count: number, extra: Partial<ClusterOptions> = {}): Promise<ContractNode[]> {
      cluster = uniqueCluster(`contract-${manager}`);
      const nodes: ContractNode[] = [];
      for (let i = 1; i <= count; i++) nodes.push(await startNode(`n${i}`, extra));
      await waitForMembers(nodes);
      return nodes;
    }

    async function waitForMembers(nodes: ContractNode[]): Promise<void> {
      await waitFor('every node to see every other ready', () =>
        nodes.every((n) => n.node.membership.readyMembers().length === nodes.length - 1),
      );
    }

    /** Sends one request with the session cookie (when given); returns the cookie to use next. */
    async function request(
      target: ContractNode,
      method: string,
      path: string,
      cookie?: string,
      body?: unknown,
    ): Promise<{ status: number; cookie: string | undefined; json: unknown }> {
      const headers: Record<string, string> = {};
      if (cookie !== undefined) headers.cookie = `SESSIONID=${cookie}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await target.app.request(`http://app.test${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const line = res.headers.getSetCookie().find((l) => l.startsWith('SESSIONID='));
      const next = line === undefined ? cookie : line.slice('SESSIONID='.length).split(';')[0];
      const text = await res.text();
      return { status: res.status, cookie: next, json: text.startsWith('{') ? JSON.parse(text) : text };
    }

    /** Creates a session on `target` with `values`; returns its cookie and key. */
    async function createSession(
      target: ContractNode,
      values: Record<string, unknown>,
    ): Promise<{ cookie: string; key: string }> {
      const res = await request(target, 'POST', '/set', undefined, values);
      expect(res.status).toBe(200);
      const cookie = res.cookie!;
      return { cookie, key: cookie.slice(0, cookie.lastIndexOf('.')) };
    }

    it('find returns a session committed on this node at once, with its attributes; unknown keys give undefined', async () => {
      const [n1] = await startNodes(1);
      const { key } = await createSession(n1!, { user: 'ann', cart: [1, 2] });
      expect(attributes(n1!.manager.find(key))).toEqual({ user: 'ann', cart: [1, 2] });
      expect(n1!.manager.find('no-such-key')).toBeUndefined();
      expect(await n1!.manager.resolve('no-such-key')).toBeUndefined();
      expect(n1!.manager.activeSessions()).toBe(1);
      expect([...n1!.manager.liveSessions()].map((s) => s.key)).toEqual([key]);
    });

    it('resolve on every other node returns the session a node committed, with the same attributes', async () => {
      const nodes = await startNodes(3);
      const { key } = await createSession(nodes[0]!, { user: 'bob', n: 1 });
      for (const other of nodes.slice(1)) {
        const state = await waitFor(`${other.name} to resolve the session`, async () =>
          attributes(await other.manager.resolve(key, 'n1')),
        );
        expect(state).toEqual({ user: 'bob', n: 1 });
      }
    });

    it('a write through another node is applied where the session is served next (commit and apply)', async () => {
      const [n1, n2] = await startNodes(2);
      const { cookie, key } = await createSession(n1!, { first: 1 });
      await waitFor('n2 to resolve the session', () => n2!.manager.resolve(key, 'n1'));
      const second = await request(n2!, 'POST', '/set', cookie, { second: 2 });
      expect(second.status).toBe(200);
      const both = await waitFor('n1 to serve both writes', async () => {
        const seen = attributes(await n1!.manager.resolve(key, 'n2'));
        return seen?.second === 2 ? seen : undefined;
      });
      expect(both).toEqual({ first: 1, second: 2 });
    });

    it('in ack mode another node holds the write when the response arrives', async () => {
      const nodes = await startNodes(3, { sendMode: 'ack' });
      const { key } = await createSession(nodes[0]!, { acked: true });
      const holders = nodes.slice(1).filter((n) => attributes(n.manager.inspect(key))?.acked === true);
      expect(holders.length).toBeGreaterThanOrEqual(1);
      expect(nodes[0]!.node.stats.acksTimedOut).toBe(0);
    });

    it('invalidate ends the session on every node; the end stays as a tombstone', async () => {
      const nodes = await startNodes(3);
      const { cookie, key } = await createSession(nodes[0]!, { secret: 'x' });
      await waitFor('the session on a second node', () => nodes.slice(1).some((n) => n.manager.inspect(key)));
      expect((await request(nodes[0]!, 'POST', '/invalidate', cookie)).status).toBe(200);
      expect(nodes[0]!.manager.find(key)).toBeUndefined();
      expect(nodes[0]!.manager.inspect(key)?.ended?.reason).toBe('invalidated');
      await waitFor('every node to refuse the session', async () => {
        for (const n of nodes) if ((await n.manager.resolve(key, 'n1')) !== undefined) return false;
        return true;
      });
      for (const n of nodes) expect(n.manager.find(key)).toBeUndefined();
      expect(nodes[0]!.node.stats.sessionsInvalidated).toBe(1);
      expect(nodes[0]!.manager.activeSessions()).toBe(0);
    });

    it('sweep expires an idle session on every node and, past the tombstone TTL, forgets it', async () => {
      const nodes = await startNodes(2);
      const { key } = await createSession(nodes[0]!, { idle: true });
      await waitFor('the session on n2', () => nodes[1]!.manager.inspect(key));
      nodes[0]!.manager.sweep(Date.now() + 1800 * 1000 + 60_000);
      expect(nodes[0]!.manager.find(key)).toBeUndefined();
      expect(nodes[0]!.node.stats.sessionsExpired).toBe(1);
      await waitFor(
        'n2 to drop the session',
        async () => (await nodes[1]!.manager.resolve(key, 'n1')) === undefined && !nodes[1]!.manager.find(key),
      );
      const later = Date.now() + 365 * 24 * 3600 * 1000;
      for (const n of nodes) n.manager.sweep(later);
      for (const n of nodes) expect(n.manager.inspect(key)).toBeUndefined();
      for (const n of nodes) expect(n.manager.activeSessions()).toBe(0);
    });

    it('a sweep leaves sessions that are not idle alone', async () => {
      const nodes = await startNodes(2);
      const { key } = await createSession(nodes[0]!, { busy: true });
      for (const n of nodes) n.manager.sweep(Date.now());
      expect(attributes(nodes[0]!.manager.find(key))).toEqual({ busy: true });
      expect(nodes[0]!.node.stats.sessionsExpired).toBe(0);
    });

    it('counts: every node counts every live session it knows, the writer holds their data', async () => {
      const nodes = await startNodes(3);
      const keys: string[] = [];
      for (let i = 0; i < 5; i++) keys.push((await createSession(nodes[0]!, { i })).key);
      await waitFor('every node to know the five sessions', () =>
        nodes.every((n) => n.manager.sessionCounts().total === 5),
      );
      expect(nodes[0]!.manager.activeSessions()).toBe(5);
      expect(new Set([...nodes[0]!.manager.liveSessions()].map((s) => s.key))).toEqual(new Set(keys));
    });

    it('summaries: at most `limit` rows of key prefixes (never a full key), `total` counting every session known', async () => {
      const nodes = await startNodes(2);
      const keys: string[] = [];
      for (let i = 0; i < 4; i++) keys.push((await createSession(nodes[0]!, { i })).key);
      await waitFor('n2 to know the four sessions', () => nodes[1]!.manager.sessionCounts().total === 4);
      for (const n of nodes) {
        const { total, sessions } = n.manager.summaries(3);
        expect(total).toBe(4);
        expect(sessions).toHaveLength(3);
        for (const row of sessions) {
          expect(row.key).toHaveLength(8);
          expect(keys.filter((key) => key.startsWith(row.key))).toHaveLength(1);
        }
      }
      const writer = nodes[0]!.manager.summaries(10);
      expect(writer.sessions.map((row) => row.key).sort()).toEqual(keys.map((key) => key.slice(0, 8)).sort());
      for (const row of writer.sessions) expect(row.lastAccessedBy).toBe('n1');
    });

    it('drain leaves nothing keeping the node from stopping, and the others still serve its sessions after it stopped', async () => {
      const nodes = await startNodes(3);
      const sessions = [];
      for (let i = 0; i < 4; i++) sessions.push(await createSession(nodes[0]!, { i }));
      const status = await nodes[0]!.node.drain();
      expect(nodes[0]!.manager.drainRemaining()).toBe(0);
      expect(status.state).not.toBe('serving');
      await nodes[0]!.node.stop();
      await channels[0]!.close();
      for (const [i, { key }] of sessions.entries()) {
        const state = await waitFor(`session ${i} on n2`, async () =>
          attributes(await nodes[1]!.manager.resolve(key, 'n1')),
        );
        expect(state).toEqual({ i });
      }
    });

    it("a node that joins later gets the cluster's state by state transfer and serves every session", async () => {
      const nodes = await startNodes(2);
      const sessions = [];
      for (let i = 0; i < 6; i++) sessions.push(await createSession(nodes[i % 2]!, { i }));
      await waitFor('both nodes to know every session', () =>
        nodes.every((n) => n.manager.sessionCounts().total === 6),
      );
      const joiner = await startNode('n3');
      expect(joiner.manager.ready).toBe(true);
      expect(joiner.manager.stateTransfer).toMatchObject({ state: 'done', sessionsReceived: 6 });
      expect(joiner.manager.sessionCounts().total).toBe(6);
      for (const [i, { key }] of sessions.entries()) {
        expect(attributes(await joiner.manager.resolve(key, `n${(i % 2) + 1}`))).toEqual({ i });
      }
    });

    additionalTests?.();
  });
}
