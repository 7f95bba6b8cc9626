// Owns: the `npm start` smoke test: `session-replication cluster --nodes 3` as a real process tree (nats-server,
// DynamoDB Local when Java is there, three node processes, HAProxy), used through its load balancer, a node
// drained by `drain --node`, and every process it started gone after SIGTERM, or after a SIGKILL mid-start.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  ADMIN_TOKEN,
  CLI_SCRIPT,
  CookieClient,
  findExecutable,
  freePort,
  HAPROXY,
  REPO_ROOT,
  spawnTracked,
  waitFor,
  type TrackedProcess,
} from '../kit/index.ts';

const NATS = findExecutable('nats-server');
const JAVA = findExecutable('java');

/** A first port P with P..P+count-1 free on 127.0.0.1. */
async function freeRange(count: number): Promise<number> {
  const bindable = (port: number) =>
    new Promise<boolean>((done) => {
      const server = net.createServer();
      server.once('error', () => done(false));
      server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
    });
  for (;;) {
    const first = await freePort();
    if (first + count > 65535) continue;
    let ok = true;
    for (let i = 1; i < count && ok; i++) ok = await bindable(first + i);
    if (ok) return first;
  }
}

/** True while `pid` is a live process (a zombie waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Command lines of processes matching `pattern` (pgrep -f), excluding pgrep itself. */
function pgrep(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', '--', pattern], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')
      .filter((line) => line.trim() !== '');
  } catch (error) {
    if ((error as { status?: number }).status === 1) return []; // nothing matched
    throw error;
  }
}

function startCluster(basePort: number): TrackedProcess {
  return spawnTracked(
    process.execPath,
    [resolve(REPO_ROOT, CLI_SCRIPT), 'cluster', '--nodes', '3', '--base-port', String(basePort)],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, NODE_NO_WARNINGS: '1', SESSREP_ADMIN_TOKEN: ADMIN_TOKEN },
      name: 'cluster',
    },
  );
}

describe.skipIf((!NATS || !HAPROXY) && !process.env.CI)('session-replication cluster (npm start)', () => {
  it('starts nats-server, DynamoDB Local, three nodes and HAProxy, serves sticky sessions, drains a node, and leaves nothing behind on SIGTERM', async () => {
    const basePort = await freeRange(3);
    const cluster = startCluster(basePort);
    try {
      const [, dir] = await cluster.waitForOutput(/directory\s+(\S+)/, 30000);
      const [, lb] = await cluster.waitForOutput(/load balancer\s+(http:\/\/[\d.:]+)\//, 240_000);
      const [, pidLine] = await cluster.waitForOutput(/^pids: (.+)$/m, 10000);
      const pids = Object.fromEntries(
        pidLine!
          .split(' ')
          .map((pair) => pair.split('=') as [string, string])
          .map(([name, pid]) => [name, Number(pid)]),
      );
      expect(Object.keys(pids).sort()).toEqual(
        [
          'haproxy',
          'n1',
          'n2',
          'n3',
          'nats-server',
          'supervisor',
          'watchdog',
          ...(JAVA ? ['dynamodb-local'] : []),
        ].sort(),
      );
      expect(pids.supervisor).toBe(cluster.pid);
      for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);
      const nodeUrl = (i: number) => `http://127.0.0.1:${basePort + i - 1}`;
      expect(cluster.output()).toContain(`dashboard      ${nodeUrl(1)}/cluster/ui`);

      // Through the load balancer: the session sticks to one node and counts.
      const client = new CookieClient();
      let servedBy = '';
      for (let i = 1; i <= 5; i++) {
        const reply = await client.request(lb!, 'POST', '/counter');
        expect(reply.status).toBe(200);
        const body = reply.json as { counter: number; node: string };
        expect(body.counter).toBe(i);
        servedBy ||= body.node;
        expect(body.node).toBe(servedBy);
        expect(client.cookie?.endsWith(`.${servedBy}`)).toBe(true);
      }
      // The nodes form one cluster, with the JetStream log and (with Java) the DynamoDB snapshot store.
      expect(cluster.output()).toContain(`admin token    ${ADMIN_TOKEN}`);
      expect((await fetch(`${nodeUrl(1)}/cluster`)).status).toBe(401);
      const status = (await (await fetch(`${nodeUrl(1)}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
        members: { node: string; ready: boolean }[];
        persistence?: { store?: string };
      };
      expect(
        status.members
          .filter((m) => m.ready)
          .map((m) => m.node)
          .sort(),
      ).toEqual(['n1', 'n2', 'n3']);
      if (JAVA) expect(status.persistence?.store).toBe('dynamodb');
      expect((await fetch(`${nodeUrl(1)}/cluster/ui`, { headers: ADMIN_HEADERS })).status).toBe(200);
      // Draining is per node: the load balancer refuses it.
      expect((await fetch(`${lb}/cluster/drain`, { method: 'POST', headers: ADMIN_HEADERS })).status).toBe(403);

      // Drain the node that serves the session, found by id, then stop it: the session moves on, nothing is lost.
      const drain = spawnTracked(
        process.execPath,
        [resolve(REPO_ROOT, CLI_SCRIPT), 'drain', '--node', servedBy, '--via', nodeUrl(1)],
        {
          cwd: REPO_ROOT,
          env: { ...process.env, NODE_NO_WARNINGS: '1', SESSREP_ADMIN_TOKEN: ADMIN_TOKEN },
          name: 'drain',
        },
      );
      expect((await drain.exited).code, drain.output()).toBe(0);
      expect(drain.output()).toMatch(/safe to stop it now/);
      process.kill(pids[servedBy]!, 'SIGTERM');
      await cluster.waitForOutput(
        new RegExp(`${servedBy} \\(pid ${pids[servedBy]}\\) exited \\(code 0, signal null\\)`),
        30000,
      );
      const after = await client.request(lb!, 'POST', '/counter');
      expect(after.status).toBe(200);
      expect(after.json).toMatchObject({ counter: 6 });
      expect((after.json as { node: string }).node).not.toBe(servedBy);

      // SIGTERM: everything it started stops, by PID, and its directory goes away.
      cluster.kill('SIGTERM');
      expect(await cluster.exited).toMatchObject({ code: 0 });
      expect(cluster.output()).toMatch(/stopped: .*haproxy=/);
      await waitFor(
        'every process the cluster started to be gone',
        () => Object.values(pids).every((pid) => !alive(pid)),
        { timeoutMs: 10000 },
      );
      expect(pgrep(dir!)).toEqual([]);
      expect(pgrep(`--port ${basePort}( |$)`)).toEqual([]);
      expect(existsSync(dir!)).toBe(false);
    } finally {
      await cluster.stop(15000);
    }
  }, 420_000);

  it('SIGKILL of the supervisor while it starts: its watchdog stops every process it started and removes its directory', async () => {
    const basePort = await freeRange(3);
    const cluster = startCluster(basePort);
    try {
      const [, dir] = await cluster.waitForOutput(/directory\s+(\S+)/, 30000);
      await cluster.waitForOutput(/starting on ports/, 240_000);
      await waitFor('a node process to run', () => pgrep(`--port ${basePort}( |$)`).length > 0, { timeoutMs: 10000 });
      expect(pgrep(dir!).length).toBeGreaterThan(0); // nats-server (and the JVM) name the directory
      cluster.kill('SIGKILL');
      await cluster.exited;
      await waitFor(
        'the watchdog to stop everything',
        () =>
          pgrep(dir!).length === 0 &&
          pgrep(`serve --cluster demo --node n\\d --port (${basePort}|${basePort + 1}|${basePort + 2})( |$)`).length ===
            0 &&
          !existsSync(dir!),
        { timeoutMs: 20000, intervalMs: 200 },
      );
    } finally {
      await cluster.stop(5000);
    }
  }, 300_000);
});
