// Owns: a rolling restart by drain under steady load through a real HAProxy: three real node processes on a
// real nats-server (ack mode); for each node in turn `session-replication drain --url`, SIGTERM (clean exit),
// start it again, wait until HAProxy routes to it. No session may lose a write and the load balancer may
// answer nothing but 200.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  ADMIN_TOKEN,
  CLI_SCRIPT,
  CookieClient,
  HAPROXY,
  natsServerPerFile,
  REPO_ROOT,
  spawnTracked,
  startHaproxyFor,
  startNode,
  stoppedAfterEach,
  uniqueCluster,
  waitFor,
  type HaproxyHandle,
  type NodeHandle,
} from '../kit/index.ts';

const USERS = 20;

const nats = natsServerPerFile({}, HAPROXY !== undefined);
const running = stoppedAfterEach<{ stop(): Promise<void> }>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface User {
  client: CookieClient;
  counter: number;
}

/** Clients counting through the load balancer until stopped; every answer that is not the expected 200 is recorded. */
class SteadyLoad {
  readonly users: User[] = Array.from({ length: USERS }, () => ({ client: new CookieClient(), counter: 0 }));
  readonly newcomers: User[] = [];
  readonly problems: string[] = [];
  requests = 0;
  #stopped = false;
  #loops: Promise<void>[] = [];

  constructor(private readonly lb: HaproxyHandle) {}

  async #count(user: User): Promise<void> {
    this.requests++;
    try {
      const reply = await user.client.request(this.lb.url, 'POST', '/counter');
      const body = reply.json as { counter?: number } | undefined;
      if (reply.status !== 200) this.problems.push(`status ${reply.status}: ${reply.text.slice(0, 200)}`);
      else if (body?.counter !== user.counter + 1)
        this.problems.push(`counter ${body?.counter} after ${user.counter} (${user.client.cookie})`);
      else user.counter = body.counter;
    } catch (error) {
      this.problems.push(`request failed: ${(error as Error).message}`);
    }
  }

  start(): void {
    for (const user of this.users) {
      this.#loops.push(
        (async () => {
          while (!this.#stopped) {
            await this.#count(user);
            await sleep(20);
          }
        })(),
      );
    }
    // New sessions keep arriving, also while a node drains (it refuses them; HAProxy retries elsewhere).
    this.#loops.push(
      (async () => {
        while (!this.#stopped) {
          const user = { client: new CookieClient(), counter: 0 };
          this.newcomers.push(user);
          await this.#count(user);
          await this.#count(user);
          // Kept: paces the load (not a wait for anything): about ten new sessions a second.
          await sleep(100);
        }
      })(),
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}

async function waitForMembers(nodes: NodeHandle[]): Promise<void> {
  await waitFor(
    'every node to see all three ready',
    async () => {
      for (const node of nodes) {
        const status = (await (
          await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(2000) })
        ).json()) as { members: { ready: boolean; draining: boolean }[] };
        if (status.members.filter((m) => m.ready && !m.draining).length !== nodes.length) return false;
      }
      return true;
    },
    { timeoutMs: 30000 },
  );
}

describe.skipIf(!HAPROXY && !process.env.CI)(
  'rolling restart by drain through HAProxy (real processes, ack mode)',
  () => {
    for (const manager of ['delta', 'backup'] as const) {
      it(`${manager} manager: drain, SIGTERM and restart each node under load: no lost write, only 200s`, async () => {
        const cluster = uniqueCluster(`roll-${manager}`);
        const options = (node: string, port?: number) => ({
          cluster,
          node,
          nats: nats.url,
          manager,
          send: 'ack' as const,
          env: { LOG_LEVEL: 'warn' },
          readyTimeoutMs: 60000,
          ...(port !== undefined ? { port } : {}),
        });
        const nodes = await Promise.all(['n1', 'n2', 'n3'].map((node) => startNode(options(node))));
        running.push(...nodes);
        await waitForMembers(nodes);
        const lb = await startHaproxyFor(nodes);
        running.push(lb);

        const load = new SteadyLoad(lb);
        load.start();
        await waitFor('every client to have a session', () => load.users.every((u) => u.counter >= 2), {
          timeoutMs: 30000,
        });

        const started = Date.now();
        const steps: string[] = [];
        for (let i = 0; i < nodes.length; i++) {
          const node = nodes[i]!;
          const stepStarted = Date.now();
          const drain = spawnTracked(
            process.execPath,
            [resolve(REPO_ROOT, CLI_SCRIPT), 'drain', '--url', node.url, '--timeout', '60'],
            {
              cwd: REPO_ROOT,
              env: { ...process.env, NODE_NO_WARNINGS: '1', SESSREP_ADMIN_TOKEN: ADMIN_TOKEN },
              name: `drain ${node.node}`,
            },
          );
          const drained = await drain.exited;
          expect(drained.code, drain.output()).toBe(0);
          const [, drainS] = drain.output().match(/drained http:\S+ in ([\d.]+) s: safe to stop it now/) ?? [];
          expect(drainS, drain.output()).toBeDefined();
          const drainMs = Date.now() - stepStarted;

          node.kill('SIGTERM');
          expect(await node.process.exited).toMatchObject({ code: 0, signal: null });
          expect(node.output()).not.toMatch(/"level":50/); // no error logged on the way out

          const restarted = await startNode(options(node.node, node.port));
          running.push(restarted);
          nodes[i] = restarted;
          await lb.waitForServer(node.node, 'UP', 30000);
          await waitForMembers(nodes);
          steps.push(
            `${node.node}: drained in ${drainS} s (${drainMs} ms with the CLI's start), back in HAProxy after ${Date.now() - stepStarted} ms`,
          );
        }
        const rollingMs = Date.now() - started;
        // Traffic keeps flowing over the restarted cluster.
        const before = load.requests;
        await waitFor('more requests after the restart', () => load.requests > before + 50, { timeoutMs: 30000 });
        await load.stop();

        expect(load.problems).toEqual([]);
        // Zero lost sessions: every session reads back its last acknowledged counter, on whatever node serves it now.
        for (const user of [...load.users, ...load.newcomers]) {
          const reply = await user.client.request(lb.url, 'GET', '/session');
          expect(reply.status).toBe(200);
          expect((reply.json as { isNew: boolean; attributes: { counter: number } }).isNew).toBe(false);
          expect((reply.json as { attributes: { counter: number } }).attributes.counter).toBe(user.counter);
        }
        const { retries, redispatches } = await lb.backendCounters();
        console.log(
          `[rolling restart ${manager}] ${rollingMs} ms for 3 nodes under load (${load.requests} requests, ${load.newcomers.length} new sessions, 0 non-200; ` +
            `HAProxy retried ${retries}, redispatched ${redispatches}): ${steps.join('; ')}`,
        );
      }, 300_000);
    }
  },
);
