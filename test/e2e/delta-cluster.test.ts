// Owns: end-to-end tests of a delta cluster of real node processes (CLI `serve`) on a nats-server this file starts:
// failover after SIGKILL with route rewrite, failure detection, ack mode across processes, late joiner.
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
  type StartNodeOptions,
} from '../kit/index.ts';

const nats = natsServerPerFile();
const nodes = stoppedAfterEach<NodeHandle>();

/** These tests start several node processes (about 1-5 s each on a busy machine). */
const PROCESS_TEST_TIMEOUT_MS = 120_000;

/** Starts nodes one after another (each joins the ones before), tracked for afterEach. */
async function start(cluster: string, names: string[], options: Partial<StartNodeOptions> = {}): Promise<NodeHandle[]> {
  const started: NodeHandle[] = [];
  for (const node of names) {
    // Loading the TypeScript sources through tsx can take many seconds on a busy machine.
    const handle = await startNode({ cluster, node, nats: nats.url, readyTimeoutMs: 60_000, ...options });
    nodes.push(handle);
    started.push(handle);
  }
  return started;
}

interface ClusterJson {
  node: string;
  ready: boolean;
  members: { node: string; self: boolean; ready: boolean; state: string; alive: boolean }[];
  sessions: { total: number };
  stateTransfer: { state: string; sessionsReceived: number; donor?: string };
}

async function clusterOf(node: NodeHandle): Promise<ClusterJson> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(2000) });
  expect(res.status).toBe(200);
  return (await res.json()) as ClusterJson;
}

/** Waits until each node lists exactly `expected` (itself included) as ready members. */
async function waitForMembers(on: NodeHandle[], expected: string[], timeoutMs = 10000): Promise<void> {
  await waitFor(
    `members ${expected.join(',')} on ${on.map((n) => n.node).join(',')}`,
    async () => {
      for (const node of on) {
        const members = (await clusterOf(node)).members
          .filter((m) => m.ready)
          .map((m) => m.node)
          .sort();
        if (JSON.stringify(members) !== JSON.stringify([...expected].sort())) return false;
      }
      return true;
    },
    { timeoutMs },
  );
}

/** Waits until every node holds `total` live sessions. */
async function waitForSessions(on: NodeHandle[], total: number, timeoutMs = 10000): Promise<void> {
  await waitFor(
    `${total} sessions on ${on.map((n) => n.node).join(',')}`,
    async () => (await Promise.all(on.map(clusterOf))).every((c) => c.sessions.total === total),
    { timeoutMs },
  );
}

const keyOf = (client: CookieClient) => client.cookie!.slice(0, client.cookie!.lastIndexOf('.'));

describe('delta cluster of real processes', () => {
  it(
    'after SIGKILL of node 1, nodes 2 and 3 serve its sessions with the right values and rewrite the cookie route; n1 is declared dead before memberDropMs (3 s)',
    async () => {
      const cluster = uniqueCluster('e2e-kill');
      const [n1, n2, n3] = await start(cluster, ['n1', 'n2', 'n3']);
      await waitForMembers([n1!, n2!, n3!], ['n1', 'n2', 'n3']);

      const clients = Array.from({ length: 6 }, () => new CookieClient());
      for (const [i, client] of clients.entries()) {
        for (let c = 0; c <= i; c++)
          expect((await client.request(n1!.url, 'POST', '/counter')).json).toEqual({ counter: c + 1, node: 'n1' });
        expect(
          (await client.request(n1!.url, 'PUT', '/session/attributes/profile', { name: `user${i}`, tags: ['a', i] }))
            .status,
        ).toBe(200);
        expect(client.cookie).toMatch(/\.n1$/);
      }
      await waitForSessions([n2!, n3!], clients.length);

      const killedAt = Date.now();
      expect(n1!.kill('SIGKILL')).toBe(true);
      const exit = await n1!.process.exited;
      expect(exit.signal).toBe('SIGKILL');
      // Measure failure detection on both survivors while the sessions are checked.
      const dropped = Promise.all(
        [n2!, n3!].map((node) =>
          waitFor(
            `${node.node} to drop n1`,
            async () => ((await clusterOf(node)).members.some((m) => m.node === 'n1') ? false : Date.now() - killedAt),
            { timeoutMs: 10000, intervalMs: 50 },
          ),
        ),
      );

      let firstReadMs: number | undefined;
      for (const [i, client] of clients.entries()) {
        const key = keyOf(client);
        const survivor = i % 2 === 0 ? n2! : n3!;
        const other = i % 2 === 0 ? n3! : n2!;
        const read = await client.request(survivor.url, 'GET', '/session');
        firstReadMs ??= Date.now() - killedAt;
        expect(read.status).toBe(200);
        expect(read.json).toMatchObject({
          isNew: false,
          node: survivor.node,
          attributes: { counter: i + 1, profile: { name: `user${i}`, tags: ['a', i] } },
        });
        expect(read.setCookie.join('\n')).toContain(`SESSIONID=${key}.${survivor.node}`);
        expect(client.cookie).toBe(`${key}.${survivor.node}`);
        // Writes continue on the survivor and reach the other survivor, whose response rewrites the route again.
        expect((await client.request(survivor.url, 'POST', '/counter')).json).toEqual({
          counter: i + 2,
          node: survivor.node,
        });
        const onOther = await waitFor(`counter ${i + 2} on ${other.node}`, async () => {
          const probe = new CookieClient({ cookie: client.cookie! });
          const reply = await probe.request(other.url, 'GET', '/session');
          return (reply.json as { attributes: { counter: number } }).attributes.counter === i + 2 ? probe : undefined;
        });
        expect(onOther.cookie).toBe(`${key}.${other.node}`);
      }

      const detection = await dropped;
      for (const ms of detection) {
        // One missed heartbeat (500 ms) makes a survivor ping n1, and the broker's no-responders verifies it dead.
        expect(ms).toBeLessThan(3000);
      }
      // Declared dead (not a leave message: SIGKILL sends none).
      for (const node of [n2!, n3!])
        await waitFor(`${node.node} to log n1 dead`, () => node.output().includes('member declared dead'));
      console.info(
        `[timing] SIGKILL of n1: first correct read on a survivor after ${firstReadMs} ms; detected by n2 after ${detection[0]} ms, by n3 after ${detection[1]} ms`,
      );
      await waitForMembers([n2!, n3!], ['n2', 'n3']);
    },
    PROCESS_TEST_TIMEOUT_MS,
  );

  it(
    'ack mode: a SIGSTOPped member is not dropped before memberDropMs although acks to it are late; a SIGKILLed one stops holding writes at once',
    async () => {
      const cluster = uniqueCluster('e2e-pause');
      const [n1, n2, n3] = await start(cluster, ['n1', 'n2', 'n3'], { send: 'ack' });
      await waitForMembers([n1!, n2!, n3!], ['n1', 'n2', 'n3']);
      const client = new CookieClient();
      expect((await client.request(n2!.url, 'PUT', '/session/attributes/v', '1')).status).toBe(200);

      // Paused: its connection and subscriptions stay, so pings to it time out rather than find nobody.
      expect(n3!.kill('SIGSTOP')).toBe(true);
      const pausedAt = Date.now();
      const writing = client.request(n2!.url, 'PUT', '/session/attributes/v', '2');
      // Through two heartbeat periods plus a ping timeout (2 s < memberDropMs 3 s), n3 stays a member of n2.
      await waitFor(
        '2 s of pause with n3 still a member',
        async () => {
          expect((await clusterOf(n2!)).members.map((m) => m.node)).toContain('n3');
          return Date.now() - pausedAt >= 2000;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      expect(n3!.kill('SIGCONT')).toBe(true);
      expect((await writing).status).toBe(200);
      expect((await clusterOf(n2!)).members.map((m) => m.node)).toContain('n3');
      expect(n2!.output()).not.toContain('member declared dead');

      // Killed: the next acknowledged write does not wait for it (ackTimeoutMs 5 s, memberDropMs 3 s).
      expect(n3!.kill('SIGKILL')).toBe(true);
      await n3!.process.exited;
      const killedAt = Date.now();
      expect((await client.request(n2!.url, 'PUT', '/session/attributes/v', '3')).status).toBe(200);
      const writeMs = Date.now() - killedAt;
      expect(writeMs).toBeLessThan(3000);
      expect((await client.request(n1!.url, 'GET', '/session')).json).toMatchObject({
        isNew: false,
        attributes: { v: 3 },
      });
      // Unreachable at once (the write did not wait for it), dropped once it stayed so for reconnectGraceMs (1 s).
      const listed = (await clusterOf(n2!)).members.find((m) => m.node === 'n3');
      if (listed !== undefined) expect(listed).toMatchObject({ state: 'unreachable', alive: false });
      await waitFor('n2 to drop n3', async () => !(await clusterOf(n2!)).members.some((m) => m.node === 'n3'), {
        timeoutMs: 3000,
        intervalMs: 50,
      });
      console.info(`[timing] ack write after SIGKILL of a member answered in ${writeMs} ms`);
    },
    PROCESS_TEST_TIMEOUT_MS,
  );

  it(
    'send mode async across processes: the write is answered once the broker confirmed it, so the very first read on n3 nearly always sees it (measured)',
    async () => {
      const cluster = uniqueCluster('e2e-async');
      const [n2, n3] = await start(cluster, ['n2', 'n3'], { send: 'async' });
      await waitForMembers([n2!, n3!], ['n2', 'n3']);
      const warmup = 10;
      const rounds = 100;
      let seen = 0;
      for (let i = -warmup; i < rounds; i++) {
        const client = new CookieClient();
        expect((await client.request(n2!.url, 'PUT', '/session/attributes/value', { i })).status).toBe(200);
        const read = await client.request(n3!.url, 'GET', '/session');
        if (i >= 0 && (read.json as { attributes: { value?: { i: number } } }).attributes.value?.i === i) seen++;
      }
      console.info(`[timing] async mode: the first read on another node saw the write in ${seen}/${rounds} rounds`);
      // The order itself (the delta is published before the response) is asserted exactly in
      // test/integration/replication.test.ts. The answer waits for the broker's PONG, sent after it queued
      // the delta for n3: 100 of 100 alone on 2 shared cores (2026-12-05, load 7); before that wait, 85-96
      // alone and 60 next to another process-heavy file. A miss is n3 serving the GET before it read the
      // NATS message the broker had already queued for it.
      expect(seen).toBeGreaterThanOrEqual(rounds * 0.8);
    },
    PROCESS_TEST_TIMEOUT_MS,
  );

  it(
    'send mode ack across processes: a write answered by n2 is seen by the very first read on n3',
    async () => {
      const cluster = uniqueCluster('e2e-ack');
      const [n1, n2, n3] = await start(cluster, ['n1', 'n2', 'n3'], { send: 'ack' });
      await waitForMembers([n1!, n2!, n3!], ['n1', 'n2', 'n3']);
      for (let i = 0; i < 25; i++) {
        const client = new CookieClient();
        const write = await client.request(n2!.url, 'PUT', '/session/attributes/value', { i });
        expect(write.status).toBe(200);
        const read = await client.request(n3!.url, 'GET', '/session');
        expect(read.json, `round ${i}`).toMatchObject({ isNew: false, attributes: { value: { i } } });
        const update = await client.request(n3!.url, 'PUT', '/session/attributes/value', { i: 1000 + i });
        expect(update.status).toBe(200);
        expect((await client.request(n1!.url, 'GET', '/session')).json, `round ${i} on n1`).toMatchObject({
          attributes: { value: { i: 1000 + i } },
        });
      }
    },
    PROCESS_TEST_TIMEOUT_MS,
  );

  it(
    'a node started later serves every existing session as soon as its /readyz answers 200',
    async () => {
      const cluster = uniqueCluster('e2e-join');
      const [n1, n2] = await start(cluster, ['n1', 'n2']);
      await waitForMembers([n1!, n2!], ['n1', 'n2']);
      const clients = Array.from({ length: 200 }, () => new CookieClient());
      for (let i = 0; i < clients.length; i += 20) {
        await Promise.all(
          clients.slice(i, i + 20).map(async (client, j) => {
            const reply = await client.request(
              (i + j) % 2 ? n2!.url : n1!.url,
              'PUT',
              '/session/attributes/n',
              String(i + j),
            );
            expect(reply.status).toBe(200);
          }),
        );
      }
      await waitForSessions([n1!, n2!], clients.length);

      const started = Date.now();
      const [n3] = await start(cluster, ['n3']); // resolves once /readyz is 200
      const readyMs = Date.now() - started;
      const status = await clusterOf(n3!);
      expect(status.ready).toBe(true);
      expect(status.stateTransfer).toMatchObject({ state: 'done', sessionsReceived: clients.length });
      expect(status.sessions.total).toBe(clients.length);
      for (let i = 0; i < clients.length; i += 20) {
        await Promise.all(
          clients.slice(i, i + 20).map(async (client, j) => {
            const reply = await client.request(n3!.url, 'GET', '/session');
            expect(reply.json, `session ${i + j}`).toMatchObject({ isNew: false, attributes: { n: i + j } });
          }),
        );
      }
      console.info(
        `[timing] late joiner n3 with ${clients.length} sessions: process start to /readyz 200 in ${readyMs} ms`,
      );
    },
    PROCESS_TEST_TIMEOUT_MS,
  );
});
