// Owns: fault injection with real processes: the nats-server restarted under ack-mode traffic, a 3-server
// NATS cluster losing the server a node uses, a node paused (SIGSTOP) and resumed, a node cut off by the
// server as a slow consumer, and DynamoDB unreachable for a node with a snapshot table. Each test checks
// that every write answered 200 is on every node at the end, and that the nodes recover (membership,
// replication, resync after a gap).
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import {
  ADMIN_HEADERS,
  CookieClient,
  freePort,
  LOCAL_AWS,
  logLines,
  seeEachOther,
  startDynamoDbLocal,
  startNatsCluster,
  startNatsServer,
  startNode,
  uniqueCluster,
  waitFor,
  type DynamoDbLocalHandle,
  type NatsClusterHandle,
  type NodeHandle,
  type StartNodeOptions,
} from '../kit/index.ts';

const running: NodeHandle[] = [];
const servers: Array<{ stop(): Promise<void> }> = [];

afterEach(async () => {
  // A stopped (SIGSTOP) process ignores SIGTERM until continued.
  for (const node of running) node.kill('SIGCONT');
  await Promise.allSettled(running.splice(0).map((node) => node.stop()));
  await Promise.allSettled(servers.splice(0).map((server) => server.stop()));
});

afterAll(async () => {
  await Promise.allSettled(servers.splice(0).map((server) => server.stop()));
});

async function start(opts: StartNodeOptions): Promise<NodeHandle> {
  const node = await startNode({ readyTimeoutMs: 60_000, ...opts, env: { LOG_LEVEL: 'info', ...opts.env } });
  running.push(node);
  return node;
}

async function startNodes(
  cluster: string,
  count: number,
  opts: Omit<StartNodeOptions, 'cluster' | 'node'>,
): Promise<NodeHandle[]> {
  const nodes: NodeHandle[] = [];
  // One after another: each later node joins by state transfer from the earlier ones.
  for (let i = 1; i <= count; i++) nodes.push(await start({ cluster, node: `n${i}`, ...opts }));
  await seeEachOther(nodes, 45_000, { exactly: true });
  return nodes;
}

interface ClusterView {
  ready: boolean;
  channel: { status: string; detail?: string };
  members: { node: string; self: boolean; ready: boolean; state: string }[];
  sessions: { total: number };
  stateTransfer: { state: string; source?: string; sessionsReceived: number; detail?: string };
  persistence?: {
    appliedSeq: number;
    snapshot?: {
      leader: boolean;
      checkpoint?: number;
      itemsWritten: number;
      dirty: number;
      errors: number;
      lastError?: string;
    };
  };
  stats: {
    resyncs: number;
    resyncRepairs: number;
    acksTimedOut: number;
    replicationErrors: number;
    channelErrors: number;
  };
}

async function view(node: NodeHandle): Promise<ClusterView> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(5000) });
  return (await res.json()) as ClusterView;
}

/** The fields of the `resync: merged the state of every ready member` log line the figures print. */
interface ResyncLine {
  reason: string;
  donors: string[];
  sessionsReceived: number;
  repaired: number;
  ms: number;
}

/** The key part of a session id (`key.route`). */
const keyOf = (id: string) => id.slice(0, id.lastIndexOf('.'));

/**
 * Writers: each client owns one session and keeps writing a new attribute `w<seq>` through the nodes in
 * turn (no sticky routing). Every answer is recorded; those answered 200 must survive.
 */
class Traffic {
  readonly cookies: string[] = [];
  readonly keys: string[] = [];
  /** Per client, the attributes answered 200. */
  readonly acked: Map<string, number>[] = [];
  readonly statuses = new Map<string, number>();
  readonly failures: string[] = [];
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(
    private readonly targets: () => NodeHandle[],
    private readonly opts: { clients: number; pauseMs: number; valueBytes?: number; writesPerClient?: number },
  ) {}

  /** Creates every client's session (through the nodes in turn) before the faults. */
  async open(): Promise<void> {
    const nodes = this.targets();
    for (let i = 0; i < this.opts.clients; i++) {
      const client = new CookieClient();
      const reply = await client.request(nodes[i % nodes.length]!.url, 'PUT', '/session/attributes/w0', '0');
      expect(reply.status, reply.text).toBe(200);
      this.cookies.push(client.cookie!);
      this.keys.push(keyOf((reply.json as { id: string }).id));
      this.acked.push(new Map([['w0', 0]]));
    }
  }

  start(): void {
    this.#running = true;
    this.#loops = this.cookies.map((_, i) => this.#loop(i));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** Runs every client's `writesPerClient` writes to the end. */
  async run(): Promise<void> {
    this.start();
    await Promise.all(this.#loops);
    this.#running = false;
  }

  /** Resolves once the clients have had 30 writes answered 200: load is established before a fault. */
  flowing(): Promise<unknown> {
    return waitFor('traffic to flow', () => this.total >= 30, { timeoutMs: 30_000, intervalMs: 50 });
  }

  /**
   * Resolves once every client has had `writes` more writes answered 200 than when called (each client writes
   * through the targets in turn): load goes on after a recovery, not just a fixed time.
   */
  progressed(writes: number, timeoutMs = 30_000): Promise<unknown> {
    const from = this.acked.map((m) => m.size);
    return waitFor(
      `every client to have ${writes} more writes answered 200`,
      () => this.acked.every((m, i) => m.size >= from[i]! + writes),
      { timeoutMs, intervalMs: 50 },
    );
  }

  get total(): number {
    return this.acked.reduce((sum, m) => sum + m.size, 0);
  }

  summary(): string {
    return `${this.total} writes answered 200; statuses ${JSON.stringify(Object.fromEntries(this.statuses))}`;
  }

  async #loop(i: number): Promise<void> {
    let seq = 0;
    const padding = this.opts.valueBytes ? 'x'.repeat(this.opts.valueBytes) : undefined;
    while (this.#running && (this.opts.writesPerClient === undefined || seq < this.opts.writesPerClient)) {
      seq++;
      const nodes = this.targets();
      const node = nodes[(i + seq) % nodes.length]!;
      const name = `w${seq}`;
      const body = padding ? JSON.stringify({ seq, padding }) : String(seq);
      // A fresh client per request with the session's cookie: an answer never moves the session elsewhere.
      const client = new CookieClient({ cookie: this.cookies[i]! });
      try {
        const res = await fetch(new URL(`/session/attributes/${name}`, node.url), {
          method: 'PUT',
          headers: { cookie: `SESSIONID=${client.cookie}` },
          body,
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        this.statuses.set(String(res.status), (this.statuses.get(String(res.status)) ?? 0) + 1);
        if (res.status === 200) {
          const id = (JSON.parse(text) as { id: string }).id;
          if (keyOf(id) !== this.keys[i])
            this.failures.push(`client ${i} ${name} on ${node.node}: answered for another session ${id.slice(0, 8)}`);
          else this.acked[i]!.set(name, seq);
        } else if (res.status >= 500 && res.status !== 503) {
          this.failures.push(`client ${i} ${name} on ${node.node}: ${res.status} ${text.slice(0, 200)}`);
        }
      } catch (error) {
        const kind = (error as Error).name === 'TimeoutError' ? 'timeout' : 'network';
        this.statuses.set(kind, (this.statuses.get(kind) ?? 0) + 1);
      }
      if (this.opts.pauseMs > 0) await new Promise((r) => setTimeout(r, this.opts.pauseMs));
    }
  }

  /** Resolves when every node holds every acknowledged attribute of every session; returns the time taken. */
  async converged(nodes: NodeHandle[], timeoutMs = 90_000): Promise<number> {
    const started = Date.now();
    await waitFor(
      `every acknowledged write on ${nodes.map((n) => n.node).join(',')}`,
      async () => {
        for (const node of nodes) {
          for (const [i, cookie] of this.cookies.entries()) {
            const reply = await new CookieClient({ cookie }).request(node.url, 'GET', '/session');
            if (reply.status !== 200) throw new Error(`${node.node} answered ${reply.status} for client ${i}`);
            const session = reply.json as { id: string; isNew: boolean; attributes: Record<string, unknown> };
            if (session.isNew || keyOf(session.id) !== this.keys[i])
              throw new Error(`${node.node} does not know client ${i}'s session`);
            const missing = [...this.acked[i]!.keys()].filter((name) => !(name in session.attributes));
            if (missing.length > 0)
              throw new Error(
                `${node.node} lacks ${missing.length} acknowledged writes of client ${i} (${missing.slice(0, 5).join(',')})`,
              );
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 500 },
    ).catch((error: Error) => {
      // What the nodes said about gaps and resyncs, to tell why.
      const said = nodes.map(
        (n) =>
          `${n.node}: ${n
            .output()
            .split('\n')
            .filter((l) => /resync|state transfer|stalled|channel connection|declared dead/.test(l))
            .slice(-12)
            .join('\n')}`,
      );
      throw new Error(`${error.message}\n${said.join('\n')}`);
    });
    return Date.now() - started;
  }
}

/** A write on `from` reads back on `to` at once (ack mode), or within `timeoutMs` (async). */
async function expectReplication(from: NodeHandle, to: NodeHandle, timeoutMs = 5000): Promise<void> {
  const client = new CookieClient();
  const value = `after-${Math.random().toString(36).slice(2)}`;
  const put = await client.request(from.url, 'PUT', '/session/attributes/probe', JSON.stringify(value));
  expect(put.status, put.text).toBe(200);
  await waitFor(
    `${from.node} -> ${to.node} replication`,
    async () => {
      const read = await new CookieClient({ cookie: client.cookie! }).request(to.url, 'GET', '/session');
      return read.status === 200 && (read.json as { attributes: Record<string, unknown> }).attributes.probe === value;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** Resolves once each of `nodes` logged a resync after a reconnect. */
function resyncedAfterReconnect(nodes: NodeHandle[]): Promise<unknown> {
  return waitFor(
    `${nodes.map((n) => n.node).join(', ')} to resynchronise after the reconnect`,
    () =>
      nodes.every((node) =>
        logLines<ResyncLine>(node, 'resync: merged the state of every ready member').some(
          (l) => l.reason === 'reconnect',
        ),
      ),
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

describe('faults', () => {
  it('the nats-server restarted during ack-mode traffic: no acknowledged write is lost, membership re-forms, replication resumes', async () => {
    const nats = await startNatsServer();
    servers.push(nats);
    const nodes = await startNodes(uniqueCluster('fault-restart'), 3, { nats: nats.url, send: 'ack' });
    const traffic = new Traffic(() => nodes, { clients: 6, pauseMs: 30 });
    await traffic.open();
    traffic.start();
    await traffic.flowing();

    const beforeKill = traffic.total;
    nats.kill('SIGKILL');
    await nats.process.exited;
    const killedAt = Date.now();
    // Past memberDropMs + pingTimeoutMs: every node drops the others (awaited: under load it takes longer).
    await waitFor(
      'every node to drop the others',
      async () => (await Promise.all(nodes.map(view))).every((v) => v.members.every((m) => m.self)),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const again = await startNatsServer({ port: nats.port });
    servers.push(again);
    const restartedAt = Date.now();
    const duringOutage = traffic.total - beforeKill;

    await seeEachOther(nodes, 60_000, { exactly: true });
    const membersMs = Date.now() - restartedAt;
    // Traffic goes on until every node resynchronised after the reconnect and every client wrote through each node again.
    await resyncedAfterReconnect(nodes);
    await traffic.progressed(3 * nodes.length);
    await traffic.stop();

    expect(traffic.failures, traffic.summary()).toEqual([]);
    expect(traffic.statuses.get('500') ?? 0).toBe(0);
    const convergeMs = await traffic.converged(nodes);
    for (const [i, from] of nodes.entries()) await expectReplication(from, nodes[(i + 1) % nodes.length]!);
    const views = await Promise.all(nodes.map(view));
    for (const v of views) {
      expect(v.channel.status).toBe('connected');
      expect(v.stats.resyncs, JSON.stringify(v.stats)).toBeGreaterThanOrEqual(1);
    }
    for (const node of nodes) {
      expect(logLines(node, 'channel connection changed').some((l) => l.status === 'disconnected')).toBe(true);
      expect(
        logLines(node, 'resync: merged the state of every ready member').some((l) => l.reason === 'reconnect'),
      ).toBe(true);
    }
    const repairs = views.map((v) => v.stats.resyncRepairs);
    console.info(
      `[figure] NATS restart: outage ${restartedAt - killedAt} ms; ${traffic.summary()}; ${duringOutage} answered during the outage; ` +
        `members re-formed ${membersMs} ms after the restart; converged ${convergeMs} ms after traffic stopped; sessions repaired by resync per node ${repairs.join('/')}`,
    );
  }, 240_000);

  it('a 3-server NATS cluster loses the server a node is connected to: the node fails over to another URL and replication continues', async () => {
    const cluster: NatsClusterHandle = await startNatsCluster({ size: 3 });
    servers.push(cluster);
    const urls = cluster.urls.join(',');
    const nodes = await startNodes(uniqueCluster('fault-failover'), 3, { nats: urls, send: 'ack' });
    const serverOf = (node: NodeHandle) => {
      const lines = [
        ...logLines(node, 'connected to NATS'),
        ...logLines(node, 'channel connection changed').filter((l) => l.status === 'connected'),
      ];
      return String(lines.at(-1)?.server ?? lines.at(-1)?.detail);
    };
    const victim = cluster.servers.findIndex((s) => s.url.endsWith(`:${serverOf(nodes[0]!).split(':').at(-1)}`));
    expect(victim, `n1 connected to ${serverOf(nodes[0]!)}; servers ${urls}`).toBeGreaterThanOrEqual(0);
    const onVictim = nodes.filter((n) => serverOf(n).endsWith(`:${cluster.servers[victim]!.port}`)).map((n) => n.node);

    const traffic = new Traffic(() => nodes, { clients: 6, pauseMs: 30 });
    await traffic.open();
    traffic.start();
    await traffic.flowing();
    cluster.servers[victim]!.kill('SIGKILL');
    const killedAt = Date.now();
    // n1's client reconnects to one of the other URLs.
    const reconnected = await waitFor(
      'n1 to reconnect to another server',
      () =>
        logLines(nodes[0]!, 'channel connection changed').find(
          (l) => l.status === 'connected' && l.time >= killedAt - 50,
        ),
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    const failoverMs = reconnected.time - killedAt;
    expect(String(reconnected.detail)).not.toContain(`:${cluster.servers[victim]!.port}`);
    // Replication from n1 to every other node works through the surviving servers.
    const replicatedAt = Date.now();
    for (const other of nodes.slice(1)) await expectReplication(nodes[0]!, other, 15_000);
    const replicationMs = Date.now() - killedAt;
    // Traffic goes on until the nodes that failed over resynchronised and every client wrote through each node again.
    await resyncedAfterReconnect(nodes.filter((n) => onVictim.includes(n.node)));
    await traffic.progressed(3 * nodes.length);
    await traffic.stop();

    expect(traffic.failures, traffic.summary()).toEqual([]);
    expect(traffic.statuses.get('500') ?? 0).toBe(0);
    await seeEachOther(nodes, 60_000, { exactly: true });
    const convergeMs = await traffic.converged(nodes);
    for (const [i, from] of nodes.entries()) await expectReplication(from, nodes[(i + 1) % nodes.length]!);
    // Each node that failed over merged the others' state and sent its own (for nodes that never reconnected).
    for (const node of nodes.filter((n) => onVictim.includes(n.node))) {
      const resync = logLines<ResyncLine>(node, 'resync: merged the state of every ready member').find(
        (l) => l.reason === 'reconnect',
      );
      expect(resync, node.node).toBeDefined();
      expect(resync!.pushed, node.node).toBeGreaterThan(0);
    }
    console.info(
      `[figure] NATS cluster failover: ${onVictim.join(',')} on the killed server; n1 reconnected to ${reconnected.detail} ${failoverMs} ms after the kill; ` +
        `n1 -> others replicated ${replicationMs} ms after the kill (probe started ${replicatedAt - killedAt} ms after); ${traffic.summary()}; converged ${convergeMs} ms after traffic stopped`,
    );
  }, 240_000);

  it('a node paused with SIGSTOP and resumed (no JetStream): it rejoins, detects the stall, resynchronises and converges', async () => {
    const nats = await startNatsServer();
    servers.push(nats);
    const nodes = await startNodes(uniqueCluster('fault-pause'), 3, { nats: nats.url, send: 'ack' });
    const [n1, n2, n3] = nodes as [NodeHandle, NodeHandle, NodeHandle];
    let targets = [n1, n2, n3];
    const traffic = new Traffic(() => targets, { clients: 6, pauseMs: 30 });
    await traffic.open();
    targets = [n1, n2]; // A paused process would hold requests: write through the others.
    traffic.start();
    await traffic.flowing();

    n3.kill('SIGSTOP');
    const stoppedAt = Date.now();
    // Longer than memberDropMs + pingTimeoutMs: the others declare n3 dead (awaited: under load it takes over 5 s).
    const lists = async () =>
      (await Promise.all([n1, n2].map(view))).map((v) => v.members.some((m) => m.node === 'n3'));
    await waitFor('n1 and n2 to drop n3', async () => (await lists()).every((listed) => !listed), {
      timeoutMs: 30_000,
      intervalMs: 100,
    }).catch(() => undefined); // asserted below
    await waitFor('n3 to be stopped 6 s', () => Date.now() - stoppedAt >= 6000, { timeoutMs: 10_000, intervalMs: 50 });
    const droppedOn = await lists();
    n3.kill('SIGCONT');
    const resumedAt = Date.now();
    await seeEachOther(nodes, 60_000, { exactly: true });
    const rejoinMs = Date.now() - resumedAt;
    const resync = await waitFor(
      'n3 to resynchronise',
      () =>
        logLines<ResyncLine>(n3, 'resync: merged the state of every ready member').find(
          (l) => l.time >= resumedAt - 50,
        ),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    targets = [n1, n2, n3];
    // Traffic goes on until every client wrote through each node again (n3 included).
    await traffic.progressed(3 * nodes.length);
    await traffic.stop();

    expect(traffic.failures, traffic.summary()).toEqual([]);
    expect(traffic.statuses.get('500') ?? 0).toBe(0);
    expect(droppedOn, 'n1 and n2 dropped n3 while it was stopped').toEqual([false, false]);
    expect(logLines(n3, 'this process stalled: deltas may have been missed').length).toBeGreaterThanOrEqual(1);
    const convergeMs = await traffic.converged(nodes);
    const v3 = await view(n3);
    expect(v3.stats.resyncs).toBeGreaterThanOrEqual(1);
    await expectReplication(n3, n1);
    await expectReplication(n1, n3);
    console.info(
      `[figure] SIGSTOP 6 s: n3 member again ${rejoinMs} ms after SIGCONT; resync (${resync.reason}) done ${resync.time - resumedAt} ms after SIGCONT ` +
        `(${resync.sessionsReceived} sessions from ${resync.donors.join(',')}, ${resync.repaired} repaired, ${resync.ms} ms); ${traffic.summary()}; converged ${convergeMs} ms after traffic stopped`,
    );
  }, 240_000);

  it('a paused node cut off by the server as a slow consumer (max_pending 256 KB): it reconnects, resynchronises the gap, counts it and converges', async () => {
    // max_payload may not exceed max_pending, and a node needs 64 KB of max_payload for message overhead
    // besides its largest session: 256 KB leaves sessions of up to 192 KB.
    const nats = await startNatsServer({
      extraConfig: 'max_pending: 262144\nmax_payload: 262144\nwrite_deadline: "2s"',
    });
    servers.push(nats);
    const cluster = uniqueCluster('fault-slow');
    const nodes = await startNodes(cluster, 3, { nats: nats.url, send: 'async' });
    const [n1, n2, n3] = nodes as [NodeHandle, NodeHandle, NodeHandle];
    let targets = [n1, n2, n3];
    // Bigger values: a burst of a few MB overflows n3's socket buffers and then the server's max_pending
    // (sessions stay under the 192 KB maxSessionBytes: 8 attributes of 16 KB each).
    const traffic = new Traffic(() => targets, { clients: 48, pauseMs: 0, valueBytes: 16 * 1024, writesPerClient: 8 });
    await traffic.open();
    targets = [n1, n2];
    const before = await view(n3);

    n3.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await traffic.run(); // 48 x 8 writes of 16 KB through n1 and n2.
    const burstMs = Date.now() - stoppedAt;
    await waitFor(
      'the server to cut n3 off as a slow consumer',
      () => /Slow Consumer Detected/i.test(nats.process.output()),
      { timeoutMs: 30_000, intervalMs: 100 },
    ).catch(async (error: Error) => {
      throw new Error(
        `${error.message}; ${traffic.summary()} in ${burstMs} ms; n1 stats ${JSON.stringify((await view(n1)).stats)}; server: ${nats.process.output().slice(-3000)}`,
      );
    });
    n3.kill('SIGCONT');
    const resumedAt = Date.now();

    const reconnect = await waitFor(
      'n3 to reconnect',
      () =>
        logLines(n3, 'channel connection changed').find((l) => l.status === 'connected' && l.time >= resumedAt - 50),
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    expect(logLines(n3, 'channel connection changed').some((l) => l.status === 'disconnected')).toBe(true);
    const resync = await waitFor(
      'n3 to resynchronise after the reconnect',
      () =>
        logLines<ResyncLine>(n3, 'resync: merged the state of every ready member').find(
          (l) => l.time >= reconnect.time,
        ),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(traffic.failures, traffic.summary()).toEqual([]);
    expect(traffic.statuses.get('200'), traffic.summary()).toBe(48 * 8);
    await seeEachOther(nodes, 60_000, { exactly: true });
    const convergeMs = await traffic.converged(nodes);
    const v3 = await view(n3);
    expect(v3.stats.resyncs).toBeGreaterThan(before.stats.resyncs);
    // n3 had missed deltas (the server dropped them with its connection) and the resync brought them.
    expect(v3.stats.resyncRepairs, JSON.stringify(v3.stats)).toBeGreaterThan(0);
    expect(nats.process.output()).toMatch(
      new RegExp(`sessrep-${cluster}-n3.*Slow Consumer|Slow Consumer.*sessrep-${cluster}-n3`),
    );
    await expectReplication(n1, n3);
    await expectReplication(n3, n2);
    console.info(
      `[figure] slow consumer: burst of ${traffic.total - 48} writes (16 KB) in ${burstMs} ms while n3 was stopped; n3 reconnected ${reconnect.time - resumedAt} ms after SIGCONT, ` +
        `resync (${resync.reason}) done ${resync.time - resumedAt} ms after SIGCONT (${resync.repaired} sessions repaired, ${resync.ms} ms); converged ${convergeMs} ms later; ${traffic.summary()}`,
    );
  }, 240_000);

  it('DynamoDB unreachable: a node with a snapshot table keeps serving, reports snapshot errors on /cluster, and catches up once DynamoDB is back', async () => {
    const nats = await startNatsServer({ jetstream: true });
    servers.push(nats);
    const ddbPort = await freePort();
    const endpoint = `http://127.0.0.1:${ddbPort}`;
    const table = `sessrep-fault-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const cluster = uniqueCluster('fault-ddb');
    const args = ['--dynamodb-table', table, '--dynamodb-endpoint', endpoint];
    // Nothing listens on the endpoint yet.
    const n1 = await start({
      cluster,
      node: 'n1',
      nats: nats.url,
      send: 'ack',
      extraArgs: args,
      readyTimeoutMs: 90_000,
    });
    const first = await view(n1);
    expect(first.ready).toBe(true);
    expect(first.stateTransfer.detail ?? '').toMatch(/snapshot store unreachable/);

    const traffic = new Traffic(() => [n1], { clients: 10, pauseMs: 20, writesPerClient: 10 });
    await traffic.open();
    await traffic.run();
    expect(traffic.failures, traffic.summary()).toEqual([]);
    expect(traffic.statuses.get('200')).toBe(100);
    const failing = await waitFor(
      'snapshot errors on /cluster',
      async () => {
        const snapshot = (await view(n1)).persistence?.snapshot;
        return snapshot && snapshot.errors > 0 && snapshot.lastError ? snapshot : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(failing.itemsWritten).toBe(0);
    expect(failing.dirty).toBe(10);
    expect(logLines(n1, 'snapshot write failed, will retry').length).toBeGreaterThan(0);

    let ddb: DynamoDbLocalHandle | undefined;
    const client = new DynamoDBClient({ endpoint, ...LOCAL_AWS, maxAttempts: 2 });
    try {
      ddb = await startDynamoDbLocal({ port: ddbPort });
      servers.push(ddb);
      await createSnapshotTable(client, table);
      const backAt = Date.now();
      const appliedSeq = (await view(n1)).persistence!.appliedSeq;
      const caughtUp = await waitFor(
        'the snapshot writer to catch up',
        async () => {
          const snapshot = (await view(n1)).persistence?.snapshot;
          return snapshot &&
            snapshot.itemsWritten >= 10 &&
            snapshot.dirty === 0 &&
            (snapshot.checkpoint ?? 0) >= appliedSeq
            ? snapshot
            : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      const catchUpMs = Date.now() - backAt;
      // A node that joins now loads every session from the snapshot.
      const n2 = await start({
        cluster,
        node: 'n2',
        nats: nats.url,
        send: 'ack',
        extraArgs: args,
        readyTimeoutMs: 90_000,
      });
      const joined = await view(n2);
      expect(joined.stateTransfer).toMatchObject({ state: 'done', source: 'snapshot' });
      expect(joined.stateTransfer.sessionsReceived).toBe(10);
      await traffic.converged([n1, n2]);
      console.info(
        `[figure] DynamoDB unreachable: ${failing.errors} snapshot errors while down ("${failing.lastError}"); caught up ${catchUpMs} ms after DynamoDB Local answered ` +
          `(checkpoint ${caughtUp.checkpoint}, ${caughtUp.itemsWritten} items)`,
      );
    } finally {
      await client.send(new DeleteTableCommand({ TableName: table })).catch(() => undefined);
      client.destroy();
    }
  }, 300_000);
});
