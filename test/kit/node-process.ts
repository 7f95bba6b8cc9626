// Owns: starting `session-replication serve` nodes as child processes for black-box tests, and waiting until they
// see each other.
import { resolve } from 'node:path';
import {
  freePort,
  REPO_ROOT,
  spawnTracked,
  tail,
  waitFor,
  waitForHttp,
  type TrackedProcess,
} from '../../functions/launch/index.ts';

/** Path of the CLI started by {@link startNode}, relative to the repo root. */
export const CLI_SCRIPT = 'bin/session-replication.js';

/** The admin token (SESSREP_ADMIN_TOKEN) of every node {@link startNode} starts, unless `env` sets another. */
export const ADMIN_TOKEN = 'test-kit-admin-token-0123456789ab';

/** Headers that pass the admin guard of a node started by {@link startNode} (`/cluster`, drain, `/metrics`, ...). */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Options for {@link startNode}; each maps onto a `session-replication serve` flag. */
export interface StartNodeOptions {
  /** --cluster NAME */
  cluster: string;
  /** --node ID */
  node: string;
  /** --nats URL[,URL] (omitted when undefined) */
  nats?: string;
  /** --manager NAME, e.g. "delta" */
  manager?: string;
  /** --send async|ack|persist (persist keeps the JetStream log: the server needs JetStream) */
  send?: 'async' | 'ack' | 'persist';
  /** --max-inactive SECONDS */
  maxInactive?: number;
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>;
  /** Appended after the generated flags. */
  extraArgs?: string[];
  /** --port (default: a free port). Pass a previous node's port to restart it in place. */
  port?: number;
  /** Wait until GET /readyz answers 200 (default true). */
  waitReady?: boolean;
  /** Readiness timeout in ms (default 20000). */
  readyTimeoutMs?: number;
  /** Script to run instead of bin/session-replication.js (relative to the repo root or absolute); for kit tests. */
  script?: string;
  /** --host: the HTTP bind address, also the address `url` uses. @default "127.0.0.1" */
  host?: string;
  /** A command the node runs under, e.g. `ip netns exec NS` (see `test/kit/faults.ts`). @default none */
  wrapper?: readonly string[];
}

/** A running node started by {@link startNode}. */
export interface NodeHandle {
  /** Node id (--node). */
  node: string;
  /** Cluster name (--cluster). */
  cluster: string;
  /** HTTP port. */
  port: number;
  /** Base URL, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  /** OS process id. */
  pid: number;
  /** The tracked child process. */
  process: TrackedProcess;
  /** The argv passed after the script (for debugging). */
  args: string[];
  /** Collected stdout+stderr of the node. */
  output(): string;
  /** Sends a signal (default SIGTERM), e.g. kill("SIGKILL") to simulate a crash. */
  kill(signal?: NodeJS.Signals): boolean;
  /** SIGTERM, then SIGKILL after 3 s; resolves once exited. Idempotent. */
  stop(): Promise<void>;
}

/** Builds the `serve` argv for `opts` on `port` (exported so tests can assert the CLI contract). */
export function serveArgs(opts: StartNodeOptions, port: number): string[] {
  const args = [
    'serve',
    '--cluster',
    opts.cluster,
    '--node',
    opts.node,
    '--port',
    String(port),
    '--host',
    opts.host ?? '127.0.0.1',
  ];
  if (opts.nats !== undefined) args.push('--nats', opts.nats);
  if (opts.manager !== undefined) args.push('--manager', opts.manager);
  if (opts.send !== undefined) args.push('--send', opts.send);
  if (opts.maxInactive !== undefined) args.push('--max-inactive', String(opts.maxInactive));
  return [...args, ...(opts.extraArgs ?? [])];
}

/** Spawns `node bin/session-replication.js serve ...` from the repo root and (by default) waits for /readyz 200. */
export async function startNode(opts: StartNodeOptions): Promise<NodeHandle> {
  const port = opts.port ?? (await freePort());
  const args = serveArgs(opts, port);
  const script = resolve(REPO_ROOT, opts.script ?? CLI_SCRIPT);
  const [command, ...prefix] = [...(opts.wrapper ?? []), process.execPath];
  const proc = spawnTracked(command!, [...prefix, script, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_NO_WARNINGS: '1', SESSREP_ADMIN_TOKEN: ADMIN_TOKEN, ...opts.env },
    name: `node ${opts.node}`,
  });
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  const handle: NodeHandle = {
    node: opts.node,
    cluster: opts.cluster,
    port,
    url,
    pid: proc.pid,
    process: proc,
    args,
    output: () => proc.output(),
    kill: (signal = 'SIGTERM') => proc.kill(signal),
    stop: async () => void (await proc.stop(3000)),
  };
  if (opts.waitReady === false) return handle;

  const earlyExit = proc.exited.then((x): never => {
    throw new Error(`exited early (code ${x.code}, signal ${x.signal})`);
  });
  earlyExit.catch(() => {}); // only meaningful while racing below
  try {
    await Promise.race([
      waitForHttp(`${url}/readyz`, { status: 200, timeoutMs: opts.readyTimeoutMs ?? 20000 }),
      earlyExit,
    ]);
  } catch (e) {
    await proc.stop(1000);
    throw new Error(
      `node ${opts.node} did not become ready: ${(e as Error).message}\n` +
        `command: ${process.execPath} ${script} ${args.join(' ')}\noutput:\n${tail(proc.output())}`,
    );
  }
  return handle;
}

/** The members `node` lists as ready on `/cluster`, itself left out. */
export async function readyPeers(node: NodeHandle): Promise<string[]> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(3000) });
  const view = (await res.json()) as { members: { node: string; self: boolean; ready: boolean }[] };
  return view.members.filter((member) => member.ready && !member.self).map((member) => member.node);
}

/**
 * Waits until every node lists every other one as a ready member; with `exactly`, none besides them (a dropped or
 * replaced member is gone too).
 */
export async function seeEachOther(
  nodes: readonly NodeHandle[],
  timeoutMs = 30_000,
  { exactly = false }: { exactly?: boolean } = {},
): Promise<void> {
  await waitFor(
    `${nodes.map((node) => node.node).join(',')} to see each other${exactly ? ' and no one else' : ''}`,
    async () => {
      for (const node of nodes) {
        const peers = await readyPeers(node);
        if (nodes.some((other) => other !== node && !peers.includes(other.node))) return false;
        if (exactly && peers.length !== nodes.length - 1) return false;
      }
      return true;
    },
    { timeoutMs, intervalMs: 100 },
  );
}
