// Owns: end-to-end tests of persistence with real node processes (the CLI), a nats-server with JetStream
// started by this file and the shared DynamoDB Local (or env DYNAMODB_ENDPOINT): a frozen node (SIGSTOP)
// catches up from JetStream alone; a cluster killed outright (SIGKILL) recovers from DynamoDB + JetStream;
// `session-replication table create`.
import { DescribeTableCommand, DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import {
  ADMIN_HEADERS,
  CLI_SCRIPT,
  CookieClient,
  ddbClient,
  inBatches,
  REPO_ROOT,
  spawnTracked,
  startNatsServer,
  startNode,
  uniqueCluster,
  waitFor,
  type NatsServerHandle,
  type NodeHandle,
} from '../kit/index.ts';

let nats: NatsServerHandle | undefined;
let nc: NatsConnection | undefined;
let jsm: JetStreamManager | undefined;
let client: DynamoDBClient;
let table: string;
const running: NodeHandle[] = [];
const tables: string[] = [];

beforeAll(async () => {
  client = ddbClient(inject('ddbEndpoint'));
  table = uniqueCluster('sessrep-e2e');
  tables.push(table);
  [nats] = await Promise.all([startNatsServer({ jetstream: true }), createSnapshotTable(client, table)]);
  nc = await connect({ servers: nats.url, name: 'e2e-persistence' });
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  // A stopped (SIGSTOP) process ignores SIGTERM until continued: wake every node before stopping it.
  for (const node of running) node.kill('SIGCONT');
  await Promise.allSettled(running.splice(0).map((node) => node.stop()));
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  for (const name of tables) await client?.send(new DeleteTableCommand({ TableName: name })).catch(() => undefined);
  client?.destroy();
});

/** The parts of /cluster these tests read. */
interface ClusterView {
  ready: boolean;
  members: { node: string; self: boolean; ready: boolean }[];
  sessions: { total: number };
  stateTransfer: {
    state: string;
    source?: string;
    sessionsReceived: number;
    pages: number;
    detail?: string;
    durationMs?: number;
  };
  persistence?: {
    log: string;
    appliedSeq: number;
    store?: string;
    snapshot?: { leader: boolean; checkpoint?: number; itemsWritten: number; dirty: number };
  };
  stats: { sent: Record<string, number>; received: Record<string, number> };
}

async function view(node: NodeHandle): Promise<ClusterView> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(3000) });
  return (await res.json()) as ClusterView;
}

/** Starts a node of `cluster` with the DynamoDB table (and so JetStream); `args` are added flags. */
async function start(cluster: string, name: string, args: string[] = [], logLevel = 'warn'): Promise<NodeHandle> {
  const node = await startNode({
    cluster,
    node: name,
    nats: nats!.url,
    extraArgs: ['--dynamodb-table', table, '--dynamodb-endpoint', inject('ddbEndpoint'), ...args],
    env: { LOG_LEVEL: logLevel },
    readyTimeoutMs: 60_000, // generous: a node process starts in ~1-2 s, far slower on a box loaded by parallel suites
  });
  running.push(node);
  return node;
}

async function lastSeq(cluster: string): Promise<number> {
  return (await jsm!.streams.info(`SESSREP_${cluster}`)).state.last_seq;
}

/** Waits until each node lists every other node as a ready member. */
async function waitForMembers(nodes: NodeHandle[], timeoutMs = 15_000): Promise<void> {
  await waitFor(
    `members ${nodes.map((n) => n.node).join(',')} on every node`,
    async () => {
      for (const node of nodes) {
        const others = (await view(node)).members
          .filter((m) => !m.self && m.ready)
          .map((m) => m.node)
          .sort();
        if (
          others.join() !==
          nodes
            .filter((n) => n !== node)
            .map((n) => n.node)
            .sort()
            .join()
        )
          return false;
      }
      return true;
    },
    { timeoutMs },
  );
}

/** Waits until every node applied the stream up to its current last sequence; resolves with it. */
async function caughtUp(cluster: string, nodes: NodeHandle[], timeoutMs = 20_000): Promise<number> {
  return waitFor(
    `${nodes.map((n) => n.node).join(',')} to apply the whole log of ${cluster}`,
    async () => {
      const last = await lastSeq(cluster);
      const applied = await Promise.all(nodes.map(async (n) => (await view(n)).persistence?.appliedSeq ?? -1));
      if (applied.some((seq) => seq < last)) throw new Error(`last ${last}, applied ${applied.join(', ')}`);
      return last;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

async function put(client: CookieClient, node: NodeHandle, name: string, value: unknown): Promise<void> {
  const reply = await client.request(node.url, 'PUT', `/session/attributes/${name}`, JSON.stringify(value));
  expect(reply.status, reply.text).toBe(200);
}

async function attributes(
  client: CookieClient,
  node: NodeHandle,
): Promise<{ isNew: boolean; attributes: Record<string, unknown> }> {
  // A copy of the client: reading on another node must not move the test's cookie (route) around.
  const reader = new CookieClient({ cookie: client.cookie! });
  const reply = await reader.request(node.url, 'GET', '/session');
  expect(reply.status).toBe(200);
  return reply.json as { isNew: boolean; attributes: Record<string, unknown> };
}

describe('persistence end to end (CLI nodes, JetStream, DynamoDB)', () => {
  it('a node frozen with SIGSTOP during 1,000 writes catches up from JetStream alone after SIGCONT and converges', async () => {
    const cluster = uniqueCluster('e2e-thaw');
    const a = await start(cluster, 'a');
    const b = await start(cluster, 'b');
    const c = await start(cluster, 'c');
    await waitForMembers([a, b, c]);
    expect((await view(c)).stateTransfer).toMatchObject({ state: 'done', source: 'snapshot' });

    const users = Array.from({ length: 100 }, () => new CookieClient());
    const writers = [a, b];
    await inBatches(users, 20, async (u, i) => put(u, writers[i % 2]!, 'v', 0));
    await waitFor('every session to reach c', async () => {
      for (const u of users) if ((await attributes(u, c)).attributes.v !== 0) return false;
      return true;
    });
    await caughtUp(cluster, [a, b, c]);
    const before = await Promise.all([a, b, c].map(view));

    expect(c.kill('SIGSTOP')).toBe(true);
    const expected = new Map<CookieClient, number>();
    // 1,000 writes: 10 per session, sequential per session (sticky to a or b), sessions in parallel.
    await inBatches(users, 20, async (u, i) => {
      for (let w = 1; w <= 10; w++) {
        await put(u, writers[i % 2]!, 'v', w * 1000 + i);
        expected.set(u, w * 1000 + i);
      }
    });
    // Async writes reach the log after their responses: wait until each write is on the other running node
    // (it can only get there through the log), so the stream holds all 1,000 of them.
    await waitFor(
      'every write to reach the other running node',
      async () => {
        for (const [i, u] of users.entries()) {
          const seen = await attributes(u, writers[(i + 1) % 2]!);
          if (seen.attributes.v !== expected.get(u))
            throw new Error(`session ${i}: ${JSON.stringify(seen.attributes)} on ${writers[(i + 1) % 2]!.node}`);
        }
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const last = await caughtUp(cluster, [a, b]);
    // Frozen long enough to be dropped from the cluster, as a frozen Lambda would be.
    await waitFor(
      'a and b to drop the frozen node',
      async () =>
        !(await view(a)).members.some((m) => m.node === 'c') && !(await view(b)).members.some((m) => m.node === 'c'),
      {
        timeoutMs: 15_000,
        intervalMs: 100,
      },
    );

    const thawed = Date.now();
    expect(c.kill('SIGCONT')).toBe(true);
    await waitFor(
      `c to apply the log up to ${last}`,
      async () => ((await view(c)).persistence?.appliedSeq ?? 0) >= last,
      { timeoutMs: 30_000, intervalMs: 25 },
    );
    const catchUpMs = Date.now() - thawed;
    await waitForMembers([a, b, c]);
    const rejoinMs = Date.now() - thawed;

    // Converged: every node answers every session with the last value written.
    for (const [u, value] of expected) {
      const seen = await Promise.all([a, b, c].map((n) => attributes(u, n)));
      for (const s of seen) expect(s).toMatchObject({ isNew: false, attributes: { v: value } });
    }
    // From JetStream alone: nobody asked anybody for a state transfer.
    const after = await Promise.all([a, b, c].map(view));
    for (const [i, v] of after.entries()) {
      expect(v.stats.received['state-req'] ?? 0, `${'abc'[i]} state-req`).toBe(
        before[i]!.stats.received['state-req'] ?? 0,
      );
      expect(v.stats.sent['state-req'] ?? 0, `${'abc'[i]} sent state-req`).toBe(
        before[i]!.stats.sent['state-req'] ?? 0,
      );
    }
    expect(after[2]!.persistence!.appliedSeq).toBeGreaterThanOrEqual(last);
    console.info(
      `[figure] SIGSTOP catch-up: ${last - before[2]!.persistence!.appliedSeq} log messages (1,000 writes, batched per event-loop turn) applied ${catchUpMs} ms after SIGCONT; member again after ${rejoinMs} ms`,
    );
  }, 180_000);

  it('every node killed with SIGKILL, one restarted: it recovers every session from DynamoDB + JetStream with the last acknowledged persist value', async () => {
    const cluster = uniqueCluster('e2e-crash');
    const a = await start(cluster, 'a', ['--send', 'persist']);
    const b = await start(cluster, 'b', ['--send', 'persist']);
    await waitForMembers([a, b]);

    const users = Array.from({ length: 200 }, () => new CookieClient());
    const nodes = [a, b];
    const acknowledged = new Map<CookieClient, number>();
    // Round 1, then wait until the snapshot leader checkpointed it: this part comes back from DynamoDB.
    await inBatches(users, 25, async (u, i) => {
      for (let w = 1; w <= 3; w++) {
        await put(u, nodes[i % 2]!, 'v', w);
        acknowledged.set(u, w);
      }
    });
    const round1 = await lastSeq(cluster);
    await waitFor(
      'the snapshot leader to checkpoint round 1',
      async () => ((await view(a)).persistence?.snapshot?.checkpoint ?? 0) >= round1,
      { timeoutMs: 20_000 },
    );
    // Round 2 on half of the sessions, then kill everything at once: this part exists only in JetStream
    // (unless a flush slipped in between).
    await inBatches(users.slice(0, 100), 25, async (u, i) => {
      for (let w = 4; w <= 6; w++) {
        await put(u, nodes[i % 2]!, 'v', w);
        acknowledged.set(u, w); // persist mode: a 200 means JetStream stored it
      }
    });
    a.kill('SIGKILL');
    b.kill('SIGKILL');
    await Promise.all([a.process.exited, b.process.exited]);
    const last = await lastSeq(cluster);
    expect(last).toBeGreaterThan(round1);

    const restartedAt = Date.now();
    const again = await start(cluster, 'a', ['--send', 'persist'], 'info');
    const recoverMs = Date.now() - restartedAt;
    const v = await view(again);
    expect(v.stateTransfer).toMatchObject({ state: 'done', source: 'snapshot' });
    expect(v.stateTransfer.sessionsReceived).toBe(200); // round 1 of every session was in DynamoDB
    expect(v.persistence!.appliedSeq).toBeGreaterThanOrEqual(last);
    expect(v.sessions.total).toBe(200);
    const loaded = again
      .output()
      .split('\n')
      .filter((line) => line.includes('"snapshot loaded"'))
      .map((line) => JSON.parse(line) as { checkpoint: number; replayFrom: number; replayTo: number })[0];
    expect(loaded).toBeDefined();
    expect(loaded!.checkpoint).toBeGreaterThanOrEqual(round1);
    expect(loaded!.replayFrom).toBe(loaded!.checkpoint + 1);
    expect(loaded!.replayTo).toBe(last);

    for (const [i, u] of users.entries()) {
      expect(await attributes(u, again), `session ${i}`).toMatchObject({
        isNew: false,
        attributes: { v: acknowledged.get(u) },
      });
    }
    console.info(
      `[figure] SIGKILL recovery: restarted node ready in ${recoverMs} ms with 200 sessions ` +
        `(snapshot checkpoint ${loaded!.checkpoint}, replayed ${loaded!.replayFrom}..${loaded!.replayTo} from JetStream)`,
    );
  }, 180_000);

  it('`session-replication table create` creates the table, and says it exists on a second run', async () => {
    const name = uniqueCluster('sessrep-cli');
    tables.push(name);
    const run = async () => {
      const proc = spawnTracked(
        process.execPath,
        [
          resolve(REPO_ROOT, CLI_SCRIPT),
          'table',
          'create',
          '--dynamodb-table',
          name,
          '--dynamodb-endpoint',
          inject('ddbEndpoint'),
        ],
        {
          cwd: REPO_ROOT,
          env: { ...process.env, NODE_NO_WARNINGS: '1' },
          name: 'table create',
        },
      );
      const exit = await proc.exited;
      return { code: exit.code, output: proc.output() };
    };
    const first = await run();
    expect(first, first.output).toMatchObject({ code: 0 });
    expect(first.output).toContain(`created table ${name}`);
    const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
    expect(Table?.TableStatus).toBe('ACTIVE');

    const second = await run();
    expect(second, second.output).toMatchObject({ code: 0 });
    expect(second.output).toContain(`table ${name} already exists`);

    // A missing table name is a usage error (exit 2) with a one-line hint.
    const proc = spawnTracked(process.execPath, [resolve(REPO_ROOT, CLI_SCRIPT), 'table', 'create'], {
      cwd: REPO_ROOT,
      env: { ...process.env, NODE_NO_WARNINGS: '1', SESSREP_DYNAMODB_TABLE: '' },
      name: 'table create (no name)',
    });
    expect((await proc.exited).code).toBe(2);
    expect(proc.output()).toMatch(/needs --dynamodb-table/);
  }, 90_000);
});
