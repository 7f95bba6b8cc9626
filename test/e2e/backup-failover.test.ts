// Owns: end-to-end failover of the backup manager: four real node processes (ack mode) on a nats-server
// started by this file; nodes are killed with SIGKILL and the survivors must serve every session.
import { describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  CookieClient,
  natsServerPerFile,
  startNode,
  stoppedAfterEach,
  uniqueCluster,
  waitFor,
  type NodeHandle,
} from '../kit/index.ts';

interface Counts {
  total: number;
  primary: number;
  backup: number;
  proxy: number;
}

const nats = natsServerPerFile();
const running = stoppedAfterEach<NodeHandle>();

async function cluster(node: NodeHandle): Promise<{ members: { node: string; ready: boolean }[]; sessions: Counts }> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(2000) });
  return (await res.json()) as { members: { node: string; ready: boolean }[]; sessions: Counts };
}

/** Starts n1..n<count> (backup manager, ack mode) and waits until every node sees all of them ready. */
async function startBackupCluster(prefix: string, count: number): Promise<NodeHandle[]> {
  const name = uniqueCluster(prefix);
  const nodes: NodeHandle[] = [];
  for (let i = 1; i <= count; i++) {
    const node = await startNode({
      cluster: name,
      node: `n${i}`,
      nats: nats.url,
      manager: 'backup',
      send: 'ack',
      env: { LOG_LEVEL: 'warn' },
    });
    running.push(node);
    nodes.push(node);
  }
  await waitForMembers(nodes);
  return nodes;
}

async function waitForMembers(nodes: NodeHandle[]): Promise<void> {
  const expected = nodes
    .map((n) => n.node)
    .sort()
    .join(',');
  await waitFor(`members ${expected} on every node`, async () => {
    for (const node of nodes) {
      const seen = (await cluster(node)).members
        .filter((m) => m.ready)
        .map((m) => m.node)
        .sort()
        .join(',');
      if (seen !== expected) return false;
    }
    return true;
  });
}

/**
 * Waits until the survivors agree that each of `total` sessions has exactly one primary and one backup
 * among them and every other survivor holds a proxy entry; resolves with each node's counts.
 */
async function waitForRepair(nodes: NodeHandle[], total: number, timeoutMs = 20000): Promise<Counts[]> {
  return waitFor(
    `every session to have one primary and one backup on ${nodes.map((n) => n.node)}`,
    async () => {
      const counts = await Promise.all(nodes.map(async (n) => (await cluster(n)).sessions));
      const primaries = counts.reduce((sum, c) => sum + c.primary, 0);
      const backups = counts.reduce((sum, c) => sum + c.backup, 0);
      if (counts.every((c) => c.total === total) && primaries === total && backups === total) return counts;
      throw new Error(`counts ${JSON.stringify(counts)}`);
    },
    { timeoutMs, intervalMs: 100 },
  );
}

function expectBalanced(values: number[], tolerance: number, what: string): void {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  for (const value of values)
    expect(
      Math.abs(value - mean),
      `${what} ${values.join(',')} within ${tolerance * 100}% of ${mean}`,
    ).toBeLessThanOrEqual(mean * tolerance);
}

/** A browser with its session and the value of `v` it was last told was stored (ack mode). */
interface User {
  client: CookieClient;
  value: number;
  createdOn: string;
}

/** Creates `count` sessions spread over `nodes`; each is written twice, the second value acknowledged by the backup. */
async function createUsers(nodes: NodeHandle[], count: number): Promise<User[]> {
  const users: User[] = [];
  for (let i = 0; i < count; i++) {
    const node = nodes[i % nodes.length]!;
    const client = new CookieClient();
    expect((await client.request(node.url, 'PUT', '/session/attributes/v', String(i))).status).toBe(200);
    expect((await client.request(node.url, 'PUT', '/session/attributes/v', String(i + 1000))).status).toBe(200);
    users.push({ client, value: i + 1000, createdOn: node.node });
  }
  return users;
}

/** Reads every user's `v` through the nodes in turn (no sticky routing) and checks the last acknowledged value. */
async function readAll(users: User[], nodes: NodeHandle[]): Promise<void> {
  for (const [i, user] of users.entries()) {
    const node = nodes[i % nodes.length]!;
    const reply = await user.client.request(node.url, 'GET', '/session');
    expect(reply.status).toBe(200);
    expect((reply.json as { isNew: boolean }).isNew, `session created on ${user.createdOn}, read on ${node.node}`).toBe(
      false,
    );
    expect((reply.json as { attributes: { v: number } }).attributes.v).toBe(user.value);
    // The route binder points the cookie at the node that now serves the session.
    expect(user.client.cookie?.endsWith(`.${node.node}`)).toBe(true);
  }
}

const SESSIONS = 120;

describe('backup manager failover with real processes (SIGKILL, ack mode)', () => {
  it('after one node is killed every session reads back its acknowledged value, and the survivors re-protect them evenly', async () => {
    const nodes = await startBackupCluster('e2e-bk-kill', 4);
    const users = await createUsers(nodes, SESSIONS);
    const before = await waitForRepair(nodes, SESSIONS);
    for (const counts of before) {
      expect(counts.primary).toBe(SESSIONS / 4);
      expect(counts.proxy).toBe(SESSIONS - counts.primary - counts.backup);
    }
    expectBalanced(
      before.map((c) => c.backup),
      0.2,
      'backups before the kill',
    );

    const victim = nodes[3]!;
    const killedAt = Date.now();
    expect(victim.kill('SIGKILL')).toBe(true);
    await victim.process.exited;
    const survivors = nodes.slice(0, 3);
    const after = await waitForRepair(survivors, SESSIONS);
    const repairMs = Date.now() - killedAt;
    console.info(
      `[e2e-bk-kill] repaired ${SESSIONS} sessions ${repairMs} ms after SIGKILL (default failure detection: 3 s silence + ping); counts ${after.map((c, i) => `${survivors[i]!.node} ${c.primary}p/${c.backup}b/${c.proxy}x`).join(', ')}`,
    );
    expectBalanced(
      after.map((c) => c.primary),
      0.2,
      'primaries after the kill',
    );
    expectBalanced(
      after.map((c) => c.backup),
      0.2,
      'backups after the kill',
    );

    await readAll(users, survivors);
    await waitForRepair(survivors, SESSIONS);
  });

  // Two kills, each followed by repair waits of up to 20 s: about 25 s on an idle machine, more under load.
  it('two nodes killed one after the other lose nothing; sessions read back even before the kill is detected', async () => {
    const nodes = await startBackupCluster('e2e-bk-kill2', 4);
    const users = await createUsers(nodes, SESSIONS);
    await waitForRepair(nodes, SESSIONS);

    nodes[3]!.kill('SIGKILL');
    await nodes[3]!.process.exited;
    const threeLeft = nodes.slice(0, 3);
    // Right away, before the failure detector declared n4 dead: proxies fall back to the backup.
    const started = Date.now();
    await readAll(
      users.filter((u) => u.createdOn === 'n4'),
      threeLeft,
    );
    console.info(
      `[e2e-bk-kill2] read the killed node's ${SESSIONS / 4} sessions in ${Date.now() - started} ms right after SIGKILL`,
    );
    await waitForRepair(threeLeft, SESSIONS);

    nodes[2]!.kill('SIGKILL');
    await nodes[2]!.process.exited;
    const twoLeft = nodes.slice(0, 2);
    await waitForRepair(twoLeft, SESSIONS);
    await readAll(users, twoLeft);
    const counts = await waitForRepair(twoLeft, SESSIONS);
    for (const c of counts) expect(c.proxy).toBe(0);
  }, 90_000);
});
