// Owns: end-to-end tests of the CLI process contract: bad flags, --help, and graceful leave on SIGTERM.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SETTINGS, settingsOf } from '../../functions/shared/config.ts';
import {
  ADMIN_HEADERS,
  CLI_SCRIPT,
  natsServerPerFile,
  REPO_ROOT,
  spawnTracked,
  startNode,
  stoppedAfterEach,
  uniqueCluster,
  waitFor,
  type NodeHandle,
} from '../kit/index.ts';

const nats = natsServerPerFile();
const nodes = stoppedAfterEach<NodeHandle>();

/** Runs the CLI to completion with separate stdout and stderr. */
async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnTracked(process.execPath, [resolve(REPO_ROOT, CLI_SCRIPT), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env },
    name: 'cli',
  });
  let stdout = '';
  let stderr = '';
  proc.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  proc.child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  // Loading the sources through tsx takes a few seconds, far more on a busy machine: only a hang gets killed.
  const timer = setTimeout(() => proc.kill('SIGKILL'), 55_000);
  const exit = await proc.exited;
  clearTimeout(timer);
  return { code: exit.code, stdout, stderr };
}

describe('CLI', () => {
  // Each case spawns a process that exits at once: run them side by side.
  it.concurrent.for<[string, string[], RegExp]>([
    ['an unknown flag', ['serve', '--bogus'], /--bogus/],
    ['a port that is not a number', ['serve', '--port', 'abc'], /--port .*"abc"/],
    ['a cluster name that is not a subject token', ['serve', '--cluster', 'my cluster.x'], /--cluster/],
    ['an unknown send mode', ['serve', '--send', 'sometimes'], /--send .*"sometimes"/],
    ['an unknown manager', ['serve', '--manager', 'magic'], /--manager .*"magic"/],
    ['a timeout that is not an integer', ['serve', '--max-inactive', '1.5'], /--max-inactive/],
    ['a bad NATS URL', ['serve', '--nats', 'http://x y'], /--nats/],
    ['an unknown command', ['launch'], /launch/],
  ])(
    '%s makes it exit 2 with a one-line reason on stderr',
    { timeout: 90_000 },
    async ([, args, reason], { expect }) => {
      const { code, stdout, stderr } = await runCli(args);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      const lines = stderr.split('\n').filter((line) => line.trim() !== '');
      expect(lines, stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^session-replication: /);
      expect(lines[0]).toMatch(reason);
    },
  );

  it('--help exits 0 and documents every serve flag with its environment variable, every command, and the cluster flags', async () => {
    const serveFlags = settingsOf('node').map((name) => SETTINGS[name]);
    const documentsServeFlags = (stdout: string) => {
      for (const { flag, env } of serveFlags) {
        expect(stdout, `--${flag}`).toMatch(new RegExp(`^\\s+--${flag}\\s`, 'm'));
        // commander wraps the help text to the terminal width.
        expect(stdout.replace(/\s+/g, ' '), `env of --${flag}`).toContain(`env: ${env}`);
      }
    };
    // The whole text: --help, help, and no arguments at all.
    for (const args of [['--help'], ['help'], []]) {
      const { code, stdout, stderr } = await runCli(args);
      expect(code).toBe(0);
      expect(stderr).toBe('');
      documentsServeFlags(stdout);
      for (const flag of ['--nodes', '--base-port', '--no-lb', '--url', '--timeout']) expect(stdout).toContain(flag);
      for (const command of ['serve', 'cluster', 'drain', 'table', 'help'])
        expect(stdout).toContain(`session-replication ${command}`);
    }
    // One command's text: its own flags (cluster passes every serve flag to its nodes).
    for (const command of ['serve', 'cluster']) {
      const { code, stdout, stderr } = await runCli([command, '--help']);
      expect(code).toBe(0);
      expect(stderr).toBe('');
      expect(stdout).toContain(`Usage: session-replication ${command}`);
      documentsServeFlags(stdout);
      if (command === 'cluster') for (const flag of ['--nodes', '--base-port']) expect(stdout).toContain(flag);
    }
  }, 180_000);

  it('without an admin token the admin routes are off, unless SESSREP_ADMIN_OPEN=true opens them without a guard', async () => {
    const cluster = uniqueCluster('e2e-admin');
    const closed = await startNode({ cluster, node: 'closed', env: { SESSREP_ADMIN_TOKEN: '' } });
    nodes.push(closed);
    const open = await startNode({
      cluster,
      node: 'open',
      env: { SESSREP_ADMIN_TOKEN: '', SESSREP_ADMIN_OPEN: 'true' },
    });
    nodes.push(open);
    expect((await fetch(`${closed.url}/cluster`)).status).toBe(404);
    expect((await fetch(`${closed.url}/healthz`)).status).toBe(200);
    expect(closed.output()).toContain('no admin token (SESSREP_ADMIN_TOKEN)');
    const status = await fetch(`${open.url}/cluster`);
    expect(status.status).toBe(200);
    expect(((await status.json()) as { node: string }).node).toBe('open');
    expect(open.output()).toContain('admin routes open without a token (SESSREP_ADMIN_OPEN)');
  }, 90_000);

  it('SIGTERM makes a node leave gracefully: it exits 0 and the others drop it at once, well before the 3 s drop time', async () => {
    const cluster = uniqueCluster('e2e-term');
    for (const node of ['n1', 'n2', 'n3'])
      nodes.push(await startNode({ cluster, node, nats: nats.url, readyTimeoutMs: 60_000 }));
    const [n1, n2, n3] = nodes;
    const membersOf = async (node: NodeHandle) => {
      const status = (await (await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
        members: { node: string; ready: boolean }[];
      };
      return status.members
        .filter((m) => m.ready)
        .map((m) => m.node)
        .sort();
    };
    await waitFor('all three members everywhere', async () =>
      (await Promise.all(nodes.map(membersOf))).every((m) => m.join() === 'n1,n2,n3'),
    );

    const sentAt = Date.now();
    expect(n3!.kill('SIGTERM')).toBe(true);
    const gone = await Promise.all(
      [n1!, n2!].map((node) =>
        waitFor(
          `${node.node} to drop n3`,
          async () => (!(await membersOf(node)).includes('n3') ? Date.now() - sentAt : false),
          { timeoutMs: 5000, intervalMs: 25 },
        ),
      ),
    );
    const exit = await n3!.process.exited;
    expect(exit.code).toBe(0);
    expect(n3!.output()).toMatch(/SIGTERM, leaving the cluster/);
    for (const ms of gone) expect(ms).toBeLessThan(1500);
    console.info(
      `[timing] SIGTERM of n3: dropped by n1 after ${gone[0]} ms, by n2 after ${gone[1]} ms (exit code ${exit.code})`,
    );
    // The survivors keep serving together.
    expect(await membersOf(n1!)).toEqual(['n1', 'n2']);
  }, 120_000); // starts three node processes
});
