// Owns: end-to-end failover through a real HAProxy (the local cluster's configuration) in front of three real
// node processes on a real nats-server, ack mode: 300 cookie-keeping clients count, the node that owns most of
// them is SIGKILLed, and every session must keep counting from its last acknowledged value under a new route.
import { describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  CookieClient,
  HAPROXY,
  inBatches,
  natsServerPerFile,
  startHaproxyFor,
  startNode,
  stoppedAfterEach,
  uniqueCluster,
  waitFor,
  type HaproxyHandle,
  type NodeHandle,
} from '../kit/index.ts';

const SESSIONS = 300;
const CONCURRENCY = 20;

const nats = natsServerPerFile({}, HAPROXY !== undefined);
const running = stoppedAfterEach<{ stop(): Promise<void> }>();

interface User {
  client: CookieClient;
  /** The last counter value the cluster acknowledged to this client. */
  counter: number;
  route: string;
}

/** One POST /counter through the load balancer: 200, exactly one more than the last acknowledged value, answered by the cookie's node. */
async function count(lb: HaproxyHandle, user: User): Promise<{ node: string; ms: number }> {
  const started = Date.now();
  const reply = await user.client.request(lb.url, 'POST', '/counter');
  expect(reply.status, reply.text).toBe(200);
  const body = reply.json as { counter: number; node: string };
  expect(body.counter, `session on ${user.route}`).toBe(user.counter + 1);
  user.counter = body.counter;
  user.route = user.client.route;
  expect(body.node).toBe(user.route);
  return { node: body.node, ms: Date.now() - started };
}

async function startCluster(manager: 'delta' | 'backup'): Promise<NodeHandle[]> {
  const cluster = uniqueCluster(`lb-${manager}`);
  const nodes = await Promise.all(
    ['n1', 'n2', 'n3'].map((node) =>
      startNode({
        cluster,
        node,
        nats: nats.url,
        manager,
        send: 'ack',
        env: { LOG_LEVEL: 'warn' },
        readyTimeoutMs: 60000,
      }),
    ),
  );
  running.push(...nodes);
  await waitFor(
    'every node to see the other two ready',
    async () => {
      for (const node of nodes) {
        const status = (await (
          await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(2000) })
        ).json()) as { members: { ready: boolean }[] };
        if (status.members.filter((m) => m.ready).length !== 3) return false;
      }
      return true;
    },
    { timeoutMs: 30000 },
  );
  return nodes;
}

describe.skipIf(!HAPROXY && !process.env.CI)('failover through HAProxy (real processes, ack mode)', () => {
  for (const manager of ['backup', 'delta'] as const) {
    it(`${manager} manager: after SIGKILL of the node owning most sessions, all ${SESSIONS} keep counting from their last acknowledged value and get the new route`, async () => {
      const nodes = await startCluster(manager);
      const lb = await startHaproxyFor(nodes);
      running.push(lb);

      // Round 1: each client creates its session through the load balancer and counts to 3 on the node that made it.
      const users: User[] = Array.from({ length: SESSIONS }, () => ({
        client: new CookieClient(),
        counter: 0,
        route: '',
      }));
      await inBatches(users, CONCURRENCY, async (user) => {
        for (let i = 0; i < 3; i++) {
          const route = user.route;
          const { node } = await count(lb, user);
          if (route) expect(node, 'sticky routing').toBe(route);
        }
      });
      const owned = new Map<string, number>();
      for (const user of users) owned.set(user.route, (owned.get(user.route) ?? 0) + 1);
      expect([...owned.keys()].sort()).toEqual(['n1', 'n2', 'n3']);
      const [victimName] = [...owned.entries()].sort((a, b) => b[1] - a[1])[0]!;
      const victim = nodes.find((n) => n.node === victimName)!;
      const orphans = users.filter((u) => u.route === victimName);

      // SIGKILL: no goodbye, HAProxy still believes the server is up until its checks fail.
      victim.kill('SIGKILL');
      const killedAt = Date.now();
      const markedDown = lb.waitForServer(victimName, 'DOWN', 30000).then(() => Date.now() - killedAt);
      await victim.process.exited;

      // Round 2: every session counts on; the victim's sessions move to a survivor, which rewrites the route.
      let firstOrphanServedAt: number | undefined;
      const orphanLatencies: number[] = [];
      await inBatches(users, CONCURRENCY, async (user) => {
        const wasOrphan = user.route === victimName;
        const { node, ms } = await count(lb, user);
        expect(node).not.toBe(victimName);
        if (wasOrphan) {
          firstOrphanServedAt ??= Date.now() - killedAt;
          orphanLatencies.push(ms);
        }
      });
      for (const user of orphans) expect(user.route).not.toBe(victimName);
      const round2Ms = Date.now() - killedAt;

      // Round 3: the new routes stick.
      await inBatches(users, CONCURRENCY, async (user) => {
        const route = user.route;
        const { node } = await count(lb, user);
        expect(node).toBe(route);
      });
      const downMs = await markedDown;
      orphanLatencies.sort((a, b) => a - b);
      console.log(
        `[haproxy failover ${manager}] victim ${victimName} owned ${orphans.length}/${SESSIONS}; first of its sessions served ${firstOrphanServedAt} ms after SIGKILL; ` +
          `its requests p50 ${orphanLatencies[Math.floor(orphanLatencies.length / 2)]} ms, max ${orphanLatencies.at(-1)} ms; all ${SESSIONS} sessions counted on within ${round2Ms} ms; HAProxy marked it DOWN after ${downMs} ms`,
      );
    }, 300_000);
  }
});
