// Owns: integration tests of the backup manager over the shared nats-server: primary/backup placement,
// proxy map, takeover through a proxy, failover after a crash, expiry, late joiners and message counts.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createDemoApp } from '../../functions/demo-app.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { encodeEnvelope } from '../../lib/codec/envelope.ts';
import { decodeValue } from '../../lib/session/values.ts';
import { createCluster, type ClusterOptions, type ClusterNode } from '../../lib/index.ts';
import type { BackupManager } from '../../lib/managers/backup/backup-manager.ts';
import { FETCH_HEDGE_MS } from '../../lib/managers/backup/takeover.ts';
import { FaultInjector, faultyChannel } from '../../lib/testing/index.ts';
import { CookieClient, FAST, memoryLogger, uniqueCluster, waitFor, type LogLine } from '../kit/index.ts';

/** The admin guard of the demo apps below (`/cluster` is read through it). */
const ADMIN = { token: 'backup-test-admin-token-0123456789' };

/**
 * Fast failure detection (FAST: a silent member is pinged after 600 ms and dropped 300 ms later). A fetch
 * gives up after 1 s: right after an in-process crash NATS may still route one request to the closed
 * connection, which then times out instead of failing at once.
 */
const TIMINGS = { ...FAST, fetchTimeoutMs: 1000 } as const;

/** A backup-manager node in this process on its own NATS connection. */
interface BNode {
  readonly name: string;
  readonly nc: NatsConnection;
  readonly sessions: ClusterNode;
  readonly manager: BackupManager;
  readonly app: ReturnType<typeof createDemoApp>;
  readonly logs: LogLine[];
  /** Drops the NATS connection without leaving the cluster: the others see silence, as after a crash. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

const running: BNode[] = [];

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((node) => node.stop()));
});

/** Creates and starts one node of `cluster`; resolves once `start()` (state transfer included) resolved. */
async function startBackupNode(
  cluster: string,
  name: string,
  options: Partial<ClusterOptions> = {},
  faults?: FaultInjector,
): Promise<BNode> {
  const nc = await connect({ servers: inject('natsUrl'), name: `it-${cluster}-${name}` });
  const logs: LogLine[] = [];
  const channel = faults ? faultyChannel(new NatsChannel(nc), name, faults) : new NatsChannel(nc);
  const sessions = createCluster({
    ...TIMINGS,
    sendMode: 'ack',
    logger: memoryLogger(logs),
    ...options,
    cluster,
    node: name,
    manager: 'backup',
    channel,
  });
  let stopped: Promise<void> | undefined;
  const node: BNode = {
    name,
    nc,
    sessions,
    manager: sessions.manager as BackupManager,
    app: createDemoApp(sessions, { admin: ADMIN }),
    logs,
    crash: () => nc.close(),
    stop: () =>
      (stopped ??= sessions
        .stop()
        .catch(() => undefined)
        .finally(() => (nc.isClosed() ? undefined : nc.close()))),
  };
  running.push(node);
  await sessions.start();
  return node;
}

/** Starts `count` nodes named n1..n<count> one after another and waits until all see each other ready. */
async function startCluster(
  prefix: string,
  count: number,
  options: Partial<ClusterOptions> = {},
  faults?: FaultInjector,
): Promise<{ cluster: string; nodes: BNode[] }> {
  const cluster = uniqueCluster(prefix);
  const nodes: BNode[] = [];
  for (let i = 1; i <= count; i++) nodes.push(await startBackupNode(cluster, `n${i}`, options, faults));
  await waitForMembers(nodes);
  return { cluster, nodes };
}

/** Waits until each node lists exactly the other given nodes as ready members. */
async function waitForMembers(nodes: BNode[]): Promise<void> {
  await waitFor(`membership of ${nodes.map((n) => n.name)}`, () =>
    nodes.every((node) => {
      const seen = node.sessions.membership
        .readyMembers()
        .map((m) => m.node)
        .sort();
      return (
        JSON.stringify(seen) ===
        JSON.stringify(
          nodes
            .filter((n) => n !== node)
            .map((n) => n.name)
            .sort(),
        )
      );
    }),
  );
}

/** A browser with two shortcuts for attribute `v`. */
class Client extends CookieClient {
  /** Sets attribute `v` (a JSON number) through `node`. */
  async write(node: BNode, value: number): Promise<void> {
    const reply = await this.request(node, 'PUT', '/session/attributes/v', String(value));
    expect(reply.status).toBe(200);
  }

  /** Reads attribute `v` through `node`. */
  async read(node: BNode): Promise<unknown> {
    const reply = await this.request(node, 'GET', '/session');
    expect(reply.status).toBe(200);
    return reply.json.attributes.v;
  }
}

/** The decoded value of attribute `v` a node holds for `key`, or undefined. */
function heldValue(node: BNode, key: string): unknown {
  const text = node.manager.inspect(key)?.attributes.get('v')?.value;
  return text === undefined ? undefined : decodeValue(text);
}

/**
 * What is wrong with the placement of `keys` on `nodes` (empty when right): every node holds the same
 * live entry, its primary and backup are two different nodes of `nodes`, both hold the data (with
 * the expected `v`, when given), and every other node holds no data at all.
 */
function placementProblems(nodes: BNode[], keys: string[], expected?: Map<string, number>): string[] {
  const names = new Set(nodes.map((n) => n.name));
  const problems: string[] = [];
  for (const key of keys) {
    const entries = nodes.map((n) => n.manager.entry(key));
    const first = entries[0];
    const id = key.slice(0, 8);
    if (!first || first.ended) {
      problems.push(`${id}: no live entry on ${nodes[0]!.name}`);
      continue;
    }
    const differing = nodes.filter(
      (_, i) => entries[i]?.primary !== first.primary || entries[i]?.backup !== first.backup || entries[i]?.ended,
    );
    if (differing.length > 0) {
      problems.push(
        `${id}: entries differ (${nodes.map((n, i) => `${n.name}:${entries[i]?.primary}/${entries[i]?.backup}`).join(' ')})`,
      );
      continue;
    }
    if (!names.has(first.primary) || !names.has(first.backup) || first.primary === first.backup) {
      problems.push(`${id}: primary ${first.primary}, backup ${first.backup}`);
      continue;
    }
    for (const node of nodes) {
      const state = node.manager.inspect(key);
      const holder = node.name === first.primary || node.name === first.backup;
      if (holder && (!state || state.ended)) problems.push(`${id}: ${node.name} should hold the data`);
      else if (holder && expected && heldValue(node, key) !== expected.get(key))
        problems.push(`${id}: ${node.name} holds v=${String(heldValue(node, key))}, expected ${expected.get(key)}`);
      else if (!holder && state) problems.push(`${id}: proxy ${node.name} holds data`);
    }
  }
  return problems;
}

/** Waits until the placement of `keys` on `nodes` is right; resolves with the time it took. */
async function waitForPlacement(
  nodes: BNode[],
  keys: string[],
  expected?: Map<string, number>,
  timeoutMs = 15000,
): Promise<number> {
  const started = Date.now();
  let last: string[] = [];
  try {
    await waitFor(
      'placement',
      () => {
        last = placementProblems(nodes, keys, expected);
        return last.length === 0;
      },
      { timeoutMs },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${last.length} problems, e.g. ${last.slice(0, 5).join('; ')}`);
  }
  return Date.now() - started;
}

/** Primary, backup and proxy counts as `/cluster` shows them. */
async function clusterCounts(node: BNode): Promise<{ total: number; primary: number; backup: number; proxy: number }> {
  const res = await node.app.request('/cluster', { headers: { authorization: `Bearer ${ADMIN.token}` } });
  return ((await res.json()) as { sessions: { total: number; primary: number; backup: number; proxy: number } })
    .sessions;
}

/** Asserts every count is within `tolerance` (a fraction) of the mean. */
function expectBalanced(counts: number[], tolerance: number, what: string): void {
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  for (const count of counts)
    expect(
      Math.abs(count - mean),
      `${what} ${counts.join(',')} within ${tolerance * 100}% of ${mean}`,
    ).toBeLessThanOrEqual(mean * tolerance);
}

/** Creates `count` sessions, spread evenly over `nodes`, each with `v = i`. */
async function createSessions(
  nodes: BNode[],
  count: number,
): Promise<{ clients: Client[]; expected: Map<string, number> }> {
  const clients: Client[] = [];
  const expected = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const client = new Client();
    await client.write(nodes[i % nodes.length]!, i);
    clients.push(client);
    expected.set(client.key, i);
  }
  return { clients, expected };
}

/** Copy and map messages a node sent and received so far. */
function traffic(node: BNode) {
  const { stats } = node.sessions;
  return {
    sentCopy: stats.sent.copy ?? 0,
    sentMap: stats.sent.map ?? 0,
    receivedCopy: stats.received.copy ?? 0,
    receivedMap: stats.received.map ?? 0,
    /** Copies sent again to a backup whose ack was late (under load): each also counts in sentCopy and receivedCopy. */
    resent: stats.messagesResent,
  };
}

describe('backup manager: placement', () => {
  it('400 sessions created on 4 nodes: about 100 primaries and 100 backups per node, proxies elsewhere holding no data', async () => {
    const { nodes } = await startCluster('bk-place', 4);
    const { expected } = await createSessions(nodes, 400);
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);

    for (const node of nodes) {
      const counts = await clusterCounts(node);
      expect(counts).toMatchObject({ total: 400, primary: 100, backup: counts.backup, proxy: 300 - counts.backup });
      expect(counts.backup).toBeGreaterThanOrEqual(80);
      expect(counts.backup).toBeLessThanOrEqual(120);
      // Proxies hold no attribute data: only primaries and backups are in the session table.
      expect([...node.manager.liveSessions()].length).toBe(counts.primary + counts.backup);
    }
    // Round robin: each node's backups are spread over the other three, about 33 each.
    for (const node of nodes) {
      const perBackup = new Map<string, number>();
      for (const entry of node.manager.entries())
        if (entry.primary === node.name) perBackup.set(entry.backup, (perBackup.get(entry.backup) ?? 0) + 1);
      expect([...perBackup.keys()].sort()).toEqual(
        nodes
          .filter((n) => n !== node)
          .map((n) => n.name)
          .sort(),
      );
      for (const count of perBackup.values()) expect(Math.abs(count - 100 / 3)).toBeLessThanOrEqual(1);
    }
  });

  it('a single node has no backup; a second node that becomes ready receives a copy of every session', async () => {
    const cluster = uniqueCluster('bk-single');
    const first = await startBackupNode(cluster, 'n1');
    const { expected } = await createSessions([first], 20);
    const keys = [...expected.keys()];
    for (const key of keys) expect(first.manager.entry(key)).toMatchObject({ primary: 'n1', backup: '' });

    const second = await startBackupNode(cluster, 'n2');
    await waitForPlacement([first, second], keys, expected);
    expect(await clusterCounts(second)).toEqual(
      expect.objectContaining({ total: 20, primary: 0, backup: 20, proxy: 0 }),
    );
  });
});

describe('backup manager: requests through a proxy', () => {
  it('a write through a proxy moves the session to that node, keeps the backup, rewrites the route, and reads see it everywhere', async () => {
    const { nodes } = await startCluster('bk-proxy', 4);
    const client = new Client();
    await client.write(nodes[0]!, 1);
    const key = client.key;
    await waitForPlacement(nodes, [key]);
    const before = nodes[0]!.manager.entry(key)!;
    expect(before.primary).toBe('n1');
    const proxy = nodes.find((n) => n.name !== before.primary && n.name !== before.backup)!;
    expect(proxy.manager.inspect(key)).toBeUndefined();

    // No sticky routing: the next request lands on a proxy.
    await client.write(proxy, 2);
    expect(client.route).toBe(proxy.name);
    expect(proxy.sessions.stats.routeRewrites).toBe(1);
    await waitForPlacement(nodes, [key], new Map([[key, 2]]));
    const after = proxy.manager.entry(key)!;
    expect(after).toMatchObject({ primary: proxy.name, backup: before.backup });
    // The old primary dropped to a proxy and holds no data.
    expect(nodes[0]!.manager.inspect(key)).toBeUndefined();

    // Round-robin requests over all nodes: every write lands, every read sees the latest value.
    for (let i = 3; i <= 14; i++) {
      const node = nodes[i % nodes.length]!;
      await client.write(node, i);
      expect(client.route).toBe(node.name);
      expect(await client.read(nodes[(i + 1) % nodes.length]!)).toBe(i);
    }
    await waitForPlacement(nodes, [key], new Map([[key, 14]]));
  });

  it('writes racing through two proxies at once both end up on the new primary and its backup', async () => {
    for (let round = 0; round < 8; round++) {
      const { nodes } = await startCluster(`bk-race${round}`, 4);
      const first = new Client();
      await first.write(nodes[0]!, 1);
      const key = first.key;
      await waitForPlacement(nodes, [key]);
      const [x, y] = nodes.filter((n) => roleOf(n, key) === 'proxy');
      // The same browser, two tabs: one request lands on each proxy, both take the session over.
      const second = new Client();
      second.cookie = first.cookie;
      await Promise.all([
        first.request(x!, 'PUT', '/session/attributes/a', '1'),
        second.request(y!, 'PUT', '/session/attributes/b', '2'),
      ]);
      await waitForPlacement(nodes, [key]);
      const attributes = (node: BNode) => [...(node.manager.inspect(key)?.attributes.keys() ?? [])].sort().join(',');
      const holders = () => nodes.filter((n) => roleOf(n, key) !== 'proxy');
      await waitFor(`round ${round}: a and b on primary and backup`, () => {
        if (holders().every((n) => attributes(n) === 'a,b,v')) return true;
        throw new Error(
          holders()
            .map((n) => `${n.name}:${attributes(n)}`)
            .join(' '),
        );
      });
      expect(holders().map(attributes), `round ${round}`).toEqual(['a,b,v', 'a,b,v']);
      await Promise.allSettled(running.splice(0).map((node) => node.stop()));
    }
  });

  it('a backup asked for a session before its copy arrived fetches it from the primary instead of starting a new session', async () => {
    const { cluster, nodes } = await startCluster('bk-nocopy', 3);
    const client = new Client();
    await client.write(nodes[0]!, 5);
    const key = client.key;
    await waitForPlacement(nodes, [key]);
    const entry = nodes[0]!.manager.entry(key)!;
    const proxy = nodes.find((n) => roleOf(n, key) === 'proxy')!;
    // A newer entry names the proxy as backup; its copy is still "on the way" (never sent here).
    const stamp = [entry.stamp[0] + 1, 0, 'tester'] as const;
    const message = encodeEnvelope({
      cluster,
      node: 'tester',
      incarnation: 'tester-1',
      kind: 'map',
      body: { e: [{ key, primary: entry.primary, backup: proxy.name, stamp }] },
    });
    proxy.nc.publish(`sessrep.${cluster}.map`, message);
    await waitFor('the proxy to be named backup', () => roleOf(proxy, key) === 'backup');
    expect(proxy.manager.inspect(key)).toBeUndefined();

    expect(await client.read(proxy)).toBe(5);
    expect(client.route).toBe(proxy.name);
    expect(proxy.manager.entry(key)).toMatchObject({ primary: proxy.name, backup: entry.primary });
    await waitForPlacement(nodes, [key], new Map([[key, 5]]));
  });

  it('concurrent requests for one session on one proxy fetch it once and both see it', async () => {
    const { nodes } = await startCluster('bk-concurrent', 3);
    const client = new Client();
    await client.write(nodes[0]!, 7);
    const key = client.key;
    await waitForPlacement(nodes, [key]);
    const proxy = nodes.find((n) => roleOf(n, key) === 'proxy')!;
    const fetchesBefore = proxy.sessions.stats.sent.fetch ?? 0;
    const reads = await Promise.all([client.read(proxy), client.read(proxy), client.read(proxy)]);
    expect(reads).toEqual([7, 7, 7]);
    expect((proxy.sessions.stats.sent.fetch ?? 0) - fetchesBefore).toBe(1);
    expect(proxy.manager.entry(key)?.primary).toBe(proxy.name);
  });
});

function roleOf(node: BNode, key: string): 'primary' | 'backup' | 'proxy' | undefined {
  const entry = node.manager.entry(key);
  if (!entry || entry.ended) return undefined;
  return entry.primary === node.name ? 'primary' : entry.backup === node.name ? 'backup' : 'proxy';
}

describe('backup manager: failover', () => {
  it("a crashed node's sessions survive with their acknowledged values; every session gets a primary and a backup again, balanced", async () => {
    const { nodes } = await startCluster('bk-crash', 4);
    const { clients, expected } = await createSessions(nodes, 400);
    // A second, acknowledged write to every session on its primary: the value that must survive.
    for (const [i, client] of clients.entries()) {
      await client.write(nodes[i % 4]!, i + 1000);
      expected.set(client.key, i + 1000);
    }
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);
    const victim = nodes[3]!;
    const affected = keys.filter((key) => roleOf(victim, key) !== 'proxy');
    expect(affected.length).toBeGreaterThan(150);

    const crashedAt = Date.now();
    await victim.crash();
    const survivors = nodes.slice(0, 3);
    await waitForPlacement(survivors, keys, expected);
    const repairMs = Date.now() - crashedAt;
    console.info(
      `[bk-crash] ${affected.length} sessions of the crashed node re-protected in ${repairMs} ms (failure detection included)`,
    );

    const falseDeaths = survivors.flatMap((n) =>
      n.logs
        .filter((l) => l.message === 'member declared dead' && l.fields.member !== victim.name)
        .map((l) => `${n.name} declared ${String(l.fields.member)} dead`),
    );
    expect(
      falseDeaths,
      'a live node was declared dead (an event loop stall longer than the failure detector allows)',
    ).toEqual([]);
    const counts = await Promise.all(survivors.map(clusterCounts));
    console.info(
      `[bk-crash] counts after repair: ${survivors.map((n, i) => `${n.name} ${counts[i]!.primary}p/${counts[i]!.backup}b/${counts[i]!.proxy}x`).join(', ')}`,
    );
    for (const c of counts) expect(c.total).toBe(400);
    expect(counts.reduce((sum, c) => sum + c.primary, 0)).toBe(400);
    expect(counts.reduce((sum, c) => sum + c.backup, 0)).toBe(400);
    expectBalanced(
      counts.map((c) => c.primary),
      0.2,
      'primaries',
    );
    expectBalanced(
      counts.map((c) => c.backup),
      0.2,
      'backups',
    );

    // Every session of the crashed node reads back its last acknowledged value from any survivor.
    for (const [i, key] of affected.entries()) {
      const client = clients.find((c) => c.key === key)!;
      expect(await client.read(survivors[i % 3]!)).toBe(expected.get(key));
    }
    await waitForPlacement(survivors, keys, expected);
  });

  it('two nodes crashing one after the other lose nothing; reads right after the second crash already succeed', async () => {
    const { nodes } = await startCluster('bk-crash2', 4);
    const { clients, expected } = await createSessions(nodes, 200);
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);

    await nodes[3]!.crash();
    const threeLeft = nodes.slice(0, 3);
    await waitForPlacement(threeLeft, keys, expected);

    await nodes[2]!.crash();
    const twoLeft = nodes.slice(0, 2);
    // Before the crash is even detected, every session reads back through either survivor.
    const readStarted = Date.now();
    for (const [i, client] of clients.entries())
      expect(await client.read(twoLeft[i % 2]!)).toBe(expected.get(client.key));
    console.info(
      `[bk-crash2] read all ${clients.length} sessions right after the second crash in ${Date.now() - readStarted} ms`,
    );
    await waitForPlacement(twoLeft, keys, expected);
    for (const node of twoLeft) expect(await clusterCounts(node)).toMatchObject({ total: 200, proxy: 0 });
  });

  it('a write acknowledged just before the primary crashes is served by the backup (ack mode)', async () => {
    const { nodes } = await startCluster('bk-lastwrite', 3);
    const client = new Client();
    await client.write(nodes[0]!, 1);
    const key = client.key;
    const backup = nodes.find((n) => n.name === nodes[0]!.manager.entry(key)!.backup)!;
    for (let i = 2; i <= 20; i++) {
      await client.write(nodes[0]!, i);
      // Ack mode: the response waited until the backup applied the write.
      expect(heldValue(backup, key)).toBe(i);
    }
    await nodes[0]!.crash(); // Immediately after the last acknowledged response.
    const proxy = nodes.slice(1).find((n) => n !== backup)!;
    expect(await client.read(proxy)).toBe(20);
    expect(client.route).toBe(proxy.name);
    await waitForPlacement(nodes.slice(1), [key], new Map([[key, 20]]));
  });

  it('a proxy whose primary is dead reads from the backup at once, and drops the dead member long before memberDropMs', async () => {
    const slow = {
      heartbeatIntervalMs: 5_000,
      memberDropMs: 10_000,
      pingTimeoutMs: 1_000,
      fetchTimeoutMs: 10_000,
      ackTimeoutMs: 10_000,
    };
    const { cluster, nodes } = await startCluster('bk-dead-primary', 3, slow);
    const client = new Client();
    await client.write(nodes[0]!, 7);
    const backup = nodes.find((n) => n.name === nodes[0]!.manager.entry(client.key)!.backup)!;
    const proxy = nodes.slice(1).find((n) => n !== backup)!;
    await nodes[0]!.crash();
    // As after a SIGKILL, the broker has dropped the dead connection's subscriptions before the next request
    // (in process, close() may still be on its way to the broker when the proxy's fetch is routed).
    await waitFor('the broker to drop the crashed node', () =>
      proxy.nc.request(`sessrep.${cluster}.node.${nodes[0]!.name}`, '', { timeout: 500 }).then(
        () => false,
        (error: unknown) => /no responders/i.test(String(error)),
      ),
    );
    const died = Date.now();
    expect(await client.read(proxy)).toBe(7);
    const readMs = Date.now() - died;
    expect(readMs).toBeLessThan(slow.fetchTimeoutMs);
    await waitFor('the proxy to drop the dead primary', () => !proxy.sessions.membership.has(nodes[0]!.name), {
      timeoutMs: slow.memberDropMs,
    });
    const droppedMs = Date.now() - died;
    expect(droppedMs).toBeLessThan(slow.memberDropMs);
    console.info(
      `[bk-dead-primary] first read on the proxy ${readMs} ms after the crash; dead primary dropped after ${droppedMs} ms`,
    );
  });

  it("a live primary slower to answer than the hedge delay wins over its backup's older copy (no acknowledged write lost)", async () => {
    const faults = new FaultInjector();
    const timings = { sendMode: 'async', memberDropMs: 60_000, pingTimeoutMs: 5_000, fetchTimeoutMs: 10_000 } as const;
    const { cluster, nodes } = await startCluster('bk-slow-primary', 3, timings, faults);
    const client = new Client();
    await client.write(nodes[0]!, 7);
    const key = client.key;
    const backup = nodes.find((n) => n.name === nodes[0]!.manager.entry(key)!.backup)!;
    const proxy = nodes.slice(1).find((n) => n !== backup)!;
    await waitFor('the backup to hold 7', () => heldValue(backup, key) === 7);
    // The backup misses the next copy (async: the write is acknowledged without it), so its copy is older.
    faults.drop({ from: 'n1', subject: `sessrep.${cluster}.node.${backup.name}` });
    await client.write(nodes[0]!, 8);
    expect(heldValue(nodes[0]!, key)).toBe(8);
    expect(heldValue(backup, key)).toBe(7);
    // The primary is alive but answers late: far past the hedge delay, far below fetchTimeoutMs.
    faults.delay(600, { from: 'n1' });
    expect(await client.read(proxy)).toBe(8);
    expect(proxy.manager.entry(key)?.primary).toBe(proxy.name);
  });

  for (const via of ['proxy', 'backup'] as const)
    it(`a ${via} whose dead primary's subject is still held (as before the broker saw the close) serves the backup's copy once the subject is gone, not after fetchTimeoutMs`, async () => {
      const slow = { memberDropMs: 60_000, pingTimeoutMs: 1_000, fetchTimeoutMs: 60_000, ackTimeoutMs: 10_000 };
      const { cluster, nodes } = await startCluster(`bk-hedge-${via}`, 3, slow);
      const client = new Client();
      await client.write(nodes[0]!, 7);
      const backup = nodes.find((n) => n.name === nodes[0]!.manager.entry(client.key)!.backup)!;
      const reader = via === 'backup' ? backup : nodes.slice(1).find((n) => n !== backup)!;
      // Something keeps the primary's subject subscribed but never answers: requests to it time out.
      const holder = await connect({ servers: inject('natsUrl'), name: 'it-hedge-holder' });
      const held = holder.subscribe(`sessrep.${cluster}.node.${nodes[0]!.name}`);
      await holder.flush();
      await nodes[0]!.crash();
      let answeredAt = 0;
      const read = client.read(reader).finally(() => (answeredAt = Date.now()));
      try {
        // While the subject is held the silent primary may be alive and newer: the backup's copy is not served yet.
        // Kept: proves the read does NOT answer (no condition to wait on); twenty hedge delays, where a hedged read
        // that served the backup's copy too early would long have answered.
        await new Promise((resolve) => setTimeout(resolve, 20 * FETCH_HEDGE_MS));
        expect(answeredAt).toBe(0);
      } finally {
        held.unsubscribe();
        await holder.close();
      }
      const releasedAt = Date.now();
      expect(await read).toBe(7);
      expect(answeredAt).toBeGreaterThanOrEqual(releasedAt);
      expect(answeredAt - releasedAt).toBeLessThan(slow.pingTimeoutMs);
      expect(client.route).toBe(reader.name);
      expect(reader.manager.entry(client.key)?.primary).toBe(reader.name);
      // The silent old primary is not made the new backup (a write would wait ackTimeoutMs for it).
      expect(reader.manager.entry(client.key)?.backup).not.toBe(nodes[0]!.name);
    });

  it("sessions of several hundred kilobytes are re-backed after a crash in copies that fit the broker's max payload", async () => {
    const { nodes } = await startCluster('bk-big', 3);
    const clients: Client[] = [];
    const big = JSON.stringify('x'.repeat(150_000));
    for (let i = 0; i < 16; i++) {
      const client = new Client();
      expect((await client.request(nodes[0]!, 'PUT', '/session/attributes/big', big)).status).toBe(200);
      clients.push(client);
    }
    const keys = clients.map((c) => c.key);
    await waitForPlacement(nodes, keys);
    // n1 must now copy the 8 sessions n3 backed up (1.2 MB) to n2.
    await nodes[2]!.crash();
    await waitForPlacement(nodes.slice(0, 2), keys, undefined, 5000);
    expect(nodes[0]!.sessions.stats.replicationErrors).toBe(0);
  });

  it('a member leaving gracefully hands its primaries to their backups', async () => {
    const { nodes } = await startCluster('bk-leave', 3);
    const { expected } = await createSessions(nodes, 60);
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);
    await nodes[2]!.stop();
    await waitForPlacement(nodes.slice(0, 2), keys, expected, 5000);
  });

  it('S21: primary and backup crash together: the session is gone on the survivors and their proxy entries are deleted', async () => {
    const { nodes } = await startCluster('bk-s21', 4);
    const { clients, expected } = await createSessions(nodes.slice(0, 1), 12);
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);
    // Crash n1 (primary of all) and the backup of the first session.
    const doomed = keys[0]!;
    const backup = nodes.find((n) => n.name === nodes[0]!.manager.entry(doomed)!.backup)!;
    const survivors = nodes.filter((n) => n !== nodes[0] && n !== backup);
    const lost = keys.filter((key) => nodes[0]!.manager.entry(key)!.backup === backup.name);
    const kept = keys.filter((key) => !lost.includes(key));
    expect(lost.length).toBe(4);

    await Promise.all([nodes[0]!.crash(), backup.crash()]);
    await waitFor('proxy entries of lost sessions to be deleted', () =>
      survivors.every((n) => lost.every((key) => n.manager.entry(key) === undefined)),
    );
    for (const node of survivors) for (const key of lost) expect(node.manager.inspect(key)).toBeUndefined();
    await waitForPlacement(survivors, kept, expected);

    // The client of a lost session gets a new, empty session.
    const client = clients.find((c) => c.key === doomed)!;
    const reply = await client.request(survivors[0]!, 'GET', '/session');
    expect(reply.json).toMatchObject({ isNew: true, attributes: {} });
  });
});

describe('backup manager: expiry and invalidation', () => {
  it('regenerateId moves the attributes to a new key owned by the same primary and ends the old key everywhere', async () => {
    const { nodes } = await startCluster('bk-regen', 3);
    const client = new Client();
    await client.write(nodes[0]!, 9);
    const oldKey = client.key;
    await waitForPlacement(nodes, [oldKey]);
    expect((await client.request(nodes[0]!, 'POST', '/session/regenerate')).status).toBe(200);
    const newKey = client.key;
    expect(newKey).not.toBe(oldKey);
    await waitForPlacement(nodes, [newKey], new Map([[newKey, 9]]));
    expect(nodes[1]!.manager.entry(newKey)?.primary).toBe('n1');
    await waitFor('the old key to end everywhere', () => nodes.every((n) => n.manager.entry(oldKey)?.ended === true));
    expect(await client.read(nodes[2]!)).toBe(9);
  });

  it('invalidate removes the session on the primary, the backup and every proxy', async () => {
    const { nodes } = await startCluster('bk-inval', 4);
    const client = new Client();
    await client.write(nodes[0]!, 1);
    const key = client.key;
    await waitForPlacement(nodes, [key]);
    const reply = await client.request(nodes[2]!, 'POST', '/session/invalidate');
    expect(reply.status).toBe(204);
    expect(client.cookie).toBeUndefined();
    await waitFor('the session to end everywhere', () => nodes.every((n) => n.manager.entry(key)?.ended === true));
    for (const node of nodes) {
      expect(node.manager.entry(key)?.ended).toBe(true);
      const state = node.manager.inspect(key);
      expect(state === undefined || (state.ended !== undefined && state.attributes.size === 0)).toBe(true);
      expect(node.sessions.status().sessions).toMatchObject({ total: 0, primary: 0, backup: 0, proxy: 0 });
    }
  });

  it('an idle session expires on the primary, the backup and every proxy', async () => {
    const { nodes } = await startCluster('bk-expiry', 3, { maxInactiveSeconds: 1 });
    const client = new Client();
    await client.write(nodes[0]!, 1);
    const key = client.key;
    await waitForPlacement(nodes, [key]);
    const expiredAt = await waitFor(
      'the session to expire everywhere',
      () => (nodes.every((n) => n.manager.entry(key)?.ended === true && !n.manager.find(key)) ? Date.now() : undefined),
      { timeoutMs: 8000 },
    );
    expect(expiredAt).toBeGreaterThan(0);
    for (const node of nodes) {
      const state = node.manager.inspect(key);
      expect(state === undefined || (state.ended?.reason === 'expired' && state.attributes.size === 0)).toBe(true);
      expect(node.sessions.status().sessions).toMatchObject({ total: 0 });
      expect([...node.manager.liveSessions()]).toEqual([]);
    }
    expect(nodes.reduce((sum, n) => sum + n.sessions.stats.sessionsExpired, 0)).toBeGreaterThanOrEqual(1);
    const reply = await client.request(nodes[1]!, 'GET', '/session');
    expect(reply.json).toMatchObject({ isNew: true });
  });
});

describe('backup manager: gap recovery', () => {
  it('a node that missed the broadcast of a takeover reconciles after its reconnect: no stale primary, and the session in use elsewhere outlives its timeout', async () => {
    const faults = new FaultInjector();
    const maxInactiveSeconds = 2;
    const { nodes } = await startCluster('bk-gap', 3, { maxInactiveSeconds }, faults);
    const [n1, n2, n3] = nodes as [BNode, BNode, BNode];
    const client = new Client();
    await client.write(n1, 1);
    const key = client.key;
    await waitForPlacement(nodes, [key], new Map([[key, 1]]));
    expect(n1.manager.entry(key)).toMatchObject({ primary: 'n1' });
    // n3 takes the session over while its .map broadcasts are lost on the way (n1 and the backup miss them).
    faults.drop({ from: 'n3', subject: 'sessrep.*.map' });
    await client.write(n3, 2);
    await n3.sessions.channel.flush();
    expect(faults.counts.dropped).toBeGreaterThanOrEqual(1);
    expect(n3.manager.entry(key)).toMatchObject({ primary: 'n3' });
    expect(n1.manager.entry(key)).toMatchObject({ primary: 'n1' });
    const mapsBeforeHeal = n1.sessions.stats.received.map ?? 0;
    faults.heal();
    await waitForPlacement(nodes, [key], new Map([[key, 2]]));
    // Every node saw the blink and reconciles once the others are heard again. n1 learns the takeover from its
    // own reconciliation (it merges n3's map: a repair) or, when n3's reconciliation ran first, from n3's
    // re-announcement of its primaries (a .map message after the heal); without either it would stay primary.
    await waitFor('n1 to resync', () => n1.sessions.stats.resyncs >= 1, { timeoutMs: 10_000 });
    expect(n1.sessions.stats.resyncs).toBeGreaterThanOrEqual(1);
    await waitFor(
      'n1 to be repaired by a reconciliation',
      () => n1.sessions.stats.resyncRepairs >= 1 || (n1.sessions.stats.received.map ?? 0) > mapsBeforeHeal,
      { timeoutMs: 10_000 },
    );
    expect(n1.manager.entry(key)).toMatchObject({ primary: 'n3' });
    // Used on n3 for longer than the timeout as n1 last saw it: nobody ends it.
    // Kept: time must pass while the session is in use (no condition); ten uses 0.15 x the timeout apart = 1.5 x the timeout.
    for (let v = 3; v <= 12; v++) {
      await client.write(n3, v);
      await new Promise((resolve) => setTimeout(resolve, 0.15 * maxInactiveSeconds * 1000));
    }
    expect(await client.read(n2)).toBe(12);
    expect(await client.read(n1)).toBe(12);
    expect(nodes.reduce((sum, node) => sum + node.sessions.stats.sessionsExpired, 0)).toBe(0);
  });
});

describe('backup manager: joining', () => {
  it('a late joiner holds the proxy entry of every session when start() resolves, and then receives backups of new sessions', async () => {
    const { cluster, nodes } = await startCluster('bk-join', 3);
    const { expected } = await createSessions(nodes, 300);
    const keys = [...expected.keys()];
    await waitForPlacement(nodes, keys, expected);

    const joiner = await startBackupNode(cluster, 'n4');
    // Right when start() resolved: a proxy entry for every session, and no session data.
    expect(joiner.sessions.status().sessions).toMatchObject({ total: 300, primary: 0, backup: 0, proxy: 300 });
    expect(joiner.sessions.status().stateTransfer.state).toBe('done');
    for (const key of keys) expect(joiner.manager.entry(key)).toEqual(nodes[0]!.manager.entry(key));
    expect([...joiner.manager.liveSessions()]).toEqual([]);

    const all = [...nodes, joiner];
    await waitForMembers(all);
    const fresh = await createSessions(nodes, 90);
    const freshKeys = [...fresh.expected.keys()];
    await waitForPlacement(all, [...keys, ...freshKeys], new Map([...expected, ...fresh.expected]));
    // Round robin over three other members: a third of each creator's new sessions.
    const backups = freshKeys.filter((key) => joiner.manager.entry(key)!.backup === 'n4').length;
    expect(backups).toBe(30);
  });
});

describe('backup manager: messages per write', () => {
  it('a write on the primary sends one copy to the backup and nothing else, whether the cluster has 2, 4 or 8 nodes', async () => {
    const figures: string[] = [];
    for (const size of [2, 4, 8]) {
      const { nodes } = await startCluster(`bk-msgs${size}`, size);
      const primary = nodes[0]!;
      const client = new Client();
      const beforeCreate = nodes.map(traffic);
      await client.write(primary, 0);
      const key = client.key;
      const backup = nodes.find((n) => n.name === primary.manager.entry(key)!.backup)!;
      const proxies = nodes.filter((n) => n !== primary && n !== backup);
      // Creation: one copy to the backup, one map entry broadcast to every other node.
      await waitFor('the map entry on every node', () => nodes.every((n) => n.manager.entry(key)));
      expect(traffic(primary).sentCopy - beforeCreate[0]!.sentCopy).toBe(1);
      expect(traffic(primary).sentMap - beforeCreate[0]!.sentMap).toBe(1);
      for (const proxy of proxies)
        expect(traffic(proxy).receivedMap - beforeCreate[nodes.indexOf(proxy)]!.receivedMap).toBe(1);

      const writes = 10;
      const before = nodes.map(traffic);
      const proxyKindsBefore = proxies.map((n) => ({ ...n.sessions.stats.received }));
      for (let i = 1; i <= writes; i++) await client.write(primary, i);
      const resent = () => traffic(primary).resent - before[0]!.resent;
      await waitFor(
        'the backup to receive every copy',
        () => traffic(backup).receivedCopy - before[nodes.indexOf(backup)]!.receivedCopy === writes + resent(),
      );
      const after = nodes.map(traffic);
      const delta = (node: BNode, field: keyof ReturnType<typeof traffic>) =>
        after[nodes.indexOf(node)]![field] - before[nodes.indexOf(node)]![field];
      // One copy per write; a copy whose ack came late is sent again (resends are counted apart).
      expect(delta(primary, 'sentCopy') - delta(primary, 'resent')).toBe(writes);
      expect(delta(primary, 'sentMap')).toBe(0);
      expect(delta(backup, 'receivedCopy') - delta(primary, 'resent')).toBe(writes);
      // Proxies received nothing but membership traffic while the session was written.
      for (const [i, proxy] of proxies.entries()) {
        const changed = Object.entries(proxy.sessions.stats.received)
          .filter(([kind, count]) => count !== proxyKindsBefore[i]![kind as 'hb'])
          .map(([kind]) => kind);
        expect(
          changed.filter((kind) => !['hb', 'ping', 'pong'].includes(kind)),
          `${proxy.name} received`,
        ).toEqual([]);
      }
      const sentPerWrite =
        nodes.reduce((sum, n) => sum + delta(n, 'sentCopy') - delta(n, 'resent') + delta(n, 'sentMap'), 0) / writes;
      expect(sentPerWrite).toBe(1);
      figures.push(
        `${size} nodes: ${sentPerWrite} replication message per write (copy to ${backup.name}), ${proxies.length} proxies received 0`,
      );
      await Promise.allSettled(running.splice(0).map((node) => node.stop()));
    }
    console.info(`[bk-msgs] ${figures.join('; ')}`);
  });
});
