/**
 * `session-replication cluster`: a real local cluster from one command. With no servers given it
 * starts `nats-server` (JetStream, WebSocket) when installed, DynamoDB Local when Java is there (delta
 * manager), N node processes, and HAProxy in front when installed; without nats-server every node
 * runs in this process on the in-process channel. Everything lives in a temporary directory it owns
 * (or `--data-dir`), and every process it started is stopped by PID on Ctrl-C, SIGTERM, SIGHUP, an
 * error, or, through a watchdog process, when the supervisor itself is killed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MemoryBus } from '../../lib/index.ts';
import { parseFlags, readServeConfig, SERVE_FLAGS, serveOptions, UsageError, type ServeConfig } from './config.ts';
import { createDynamoClient, createLogger, startNode } from './node-server.ts';
import type { NodeServer } from 'session-replication/node';
import { startHaproxy, type LocalHaproxy } from './local-haproxy.ts';
import { abortable, findExecutable, ProcessGroup, waitUntil, type Child } from './local-processes.ts';
import { dynamoDbLocalDir, ensureTable, findJava, portIsFree, REPO_ROOT, startDynamo, startNats, type LocalDynamo, type LocalNats } from './local-servers.ts';
import { startWatchdog, type Watchdog } from './local-watchdog.ts';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';

/** The `cluster` part of `--help`. */
export const CLUSTER_HELP = `cluster options (plus the serve options above, passed to every node):
  --nodes N             number of nodes (default 3)
  --base-port P         first node's HTTP port; node i listens on P+i-1 (default 8081)
  --lb-port P           HAProxy's port (default P-1 of --base-port when free, else a free port)
  --no-lb               no HAProxy in front
  --nats URL            use this NATS server instead of starting nats-server
  --dynamodb-endpoint URL  use this DynamoDB instead of starting DynamoDB Local (delta manager)
  --no-dynamodb         no snapshot store (nodes still keep the JetStream log)
  --in-process          every node in this process on the in-process channel (no servers)
  --data-dir DIR        keep configuration, logs, the JetStream store and DynamoDB data in DIR
                        (default: a temporary directory, removed on exit)
  With no servers given it starts nats-server when installed (else runs in-process), DynamoDB Local
  when Java and the jar are there (delta manager), and HAProxy when installed; Ctrl-C stops them all.`;

const CLUSTER_OPTIONS = {
  nodes: { type: 'string' },
  'base-port': { type: 'string' },
  'lb-port': { type: 'string' },
  'no-lb': { type: 'boolean' },
  'no-dynamodb': { type: 'boolean' },
  'in-process': { type: 'boolean' },
  'data-dir': { type: 'string' },
} as const;

/** Flags the supervisor sets per node itself. */
const PER_NODE_FLAGS = ['node', 'port', 'advertise-url'] as const;
/** Flags the supervisor passes on the command line; every other serve flag travels as its environment variable (secrets stay off `ps`). */
const ARG_FLAGS = new Set(['cluster', 'host', 'nats', 'manager', 'send', 'log-level', 'jetstream', 'dynamodb-table', 'dynamodb-endpoint', ...PER_NODE_FLAGS]);

const out = (line = '') => process.stdout.write(`${line}\n`);
const label = (name: string) => `  ${name.padEnd(15)}`;

/** Parses flags, starts the cluster, and runs until a signal stops it. */
export async function runLocalCluster(args: string[], usage: string): Promise<void> {
  const { values } = parseFlags(args, { ...serveOptions(), ...CLUSTER_OPTIONS });
  if (values.help) return void out(usage);
  for (const flag of PER_NODE_FLAGS) if (values[flag] !== undefined) throw new UsageError(`--${flag} is set per node by "cluster" (use --base-port)`);
  const count = Number(values.nodes ?? '3');
  if (!/^\d+$/.test(values.nodes ?? '3') || count < 1 || count > 32) throw new UsageError(`--nodes must be an integer from 1 to 32, got "${values.nodes}"`);
  const basePort = Number(values['base-port'] ?? '8081');
  if (!/^\d+$/.test(values['base-port'] ?? '8081') || basePort < 1 || basePort + count - 1 > 65535) throw new UsageError(`--base-port must be a port number, got "${values['base-port']}"`);
  const lbPort = values['lb-port'] !== undefined ? Number(values['lb-port']) : basePort - 1;
  if (!Number.isInteger(lbPort) || lbPort < 0 || lbPort > 65535) throw new UsageError(`--lb-port must be a port number, got "${values['lb-port']}"`);

  const externalNats = values.nats ?? process.env.NATS_URL;
  const natsBinary = externalNats || values['in-process'] ? undefined : findExecutable('nats-server');
  const inProcess = !externalNats && !natsBinary;
  // Validate every serve flag now (a placeholder stands in for the nats-server started below).
  const strings = Object.fromEntries(Object.entries(values).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  const base: ServeConfig = readServeConfig(
    { ...strings, 'log-level': strings['log-level'] ?? 'warn', ...(natsBinary ? { nats: 'nats://127.0.0.1:4222' } : {}) },
    process.env,
  );
  // Every node of a local cluster shares one admin token: the given one, else a fresh one printed below.
  base.adminToken ??= randomBytes(18).toString('base64url');
  if (inProcess && values['in-process'] !== true) {
    out('nats-server not found (apt-get install nats-server): every node runs in this process on the in-process channel');
  }
  const haproxyBinary = values['no-lb'] ? undefined : findExecutable('haproxy');
  if (!values['no-lb'] && !haproxyBinary) out('haproxy not found (apt-get install haproxy): no load balancer in front');

  for (let i = 0; i < count; i++) {
    if (!(await portIsFree(basePort + i, base.host))) throw new UsageError(`port ${basePort + i} on ${base.host} is in use: pass another --base-port`);
  }

  const supervisor = new Supervisor(values['data-dir'], haproxyBinary !== undefined || natsBinary !== undefined);
  supervisor.installExitHandlers();
  try {
    await supervisor.run({
      base,
      count,
      basePort,
      lbPort,
      inProcess,
      natsBinary,
      haproxyBinary,
      dynamodb: base.manager === 'delta' && !values['no-dynamodb'],
      explicitDynamoTable: strings['dynamodb-table'],
      passEnv: {
        ...Object.fromEntries(
          Object.entries(strings)
            .filter(([name]) => !ARG_FLAGS.has(name) && name in SERVE_FLAGS)
            .map(([name, value]) => [SERVE_FLAGS[name as keyof typeof SERVE_FLAGS].env, value]),
        ),
        SESSREP_ADMIN_TOKEN: base.adminToken,
      },
    });
  } catch (error) {
    if ((error as Error).name === 'AbortError') return; // A signal arrived during start-up: the shutdown is under way.
    process.stderr.write(`session-replication cluster: ${(error as Error).message}\n`);
    await supervisor.shutdown('start-up failed', 1);
  }
}

interface RunPlan {
  base: ServeConfig;
  count: number;
  basePort: number;
  lbPort: number;
  inProcess: boolean;
  natsBinary: string | undefined;
  haproxyBinary: string | undefined;
  dynamodb: boolean;
  explicitDynamoTable: string | undefined;
  passEnv: Record<string, string>;
}

/** Owns the directory, the children and the in-process nodes; stops them all on every exit path. */
class Supervisor {
  readonly dir: string;
  readonly #ownsDir: boolean;
  readonly #watchdog?: Watchdog;
  readonly #group: ProcessGroup;
  readonly #abort = new AbortController();
  readonly #inProcessNodes: NodeServer[] = [];
  #nodes: Child[] = [];
  #haproxy?: LocalHaproxy;
  #servers: Child[] = [];
  #stopping?: Promise<void>;

  constructor(dataDir: string | undefined, needsWatchdog: boolean) {
    if (dataDir !== undefined) {
      this.dir = resolve(dataDir);
      mkdirSync(this.dir, { recursive: true });
      this.#ownsDir = false;
    } else {
      this.dir = mkdtempSync(join(tmpdir(), 'sessrep-cluster-'));
      this.#ownsDir = true;
    }
    if (needsWatchdog) {
      this.#watchdog = startWatchdog();
      if (this.#ownsDir) this.#watchdog.removeDirOnDeath(this.dir);
    }
    this.#group = new ProcessGroup(this.#watchdog);
  }

  get #signal(): AbortSignal {
    return this.#abort.signal;
  }

  installExitHandlers(): void {
    let signals = 0;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        signals++;
        if (signals === 1) {
          process.stderr.write(`\nsession-replication cluster: ${signal}, stopping every process it started\n`);
          void this.shutdown(signal, 0);
        } else {
          process.stderr.write(`session-replication cluster: ${signal} again, killing everything now\n`);
          this.#group.killAll();
          if (this.#ownsDir) rmSync(this.dir, { recursive: true, force: true });
          process.exit(1);
        }
      });
    }
    process.on('uncaughtException', (error) => {
      process.stderr.write(`session-replication cluster: ${error.stack ?? error.message}\n`);
      void this.shutdown('uncaught exception', 1);
    });
    process.on('unhandledRejection', (error) => {
      process.stderr.write(`session-replication cluster: ${(error as Error)?.stack ?? String(error)}\n`);
      void this.shutdown('unhandled rejection', 1);
    });
    // Last resort when something calls process.exit: no child outlives the supervisor.
    process.on('exit', () => this.#group.killAll());
  }

  async run(plan: RunPlan): Promise<void> {
    const { base, count } = plan;
    const host = base.host === '0.0.0.0' || base.host === '::' ? '127.0.0.1' : base.host;
    const signal = this.#signal;
    out(`session-replication cluster "${base.cluster}": ${count} node(s), ${base.manager} manager, ${base.send} send`);
    out(`${label('directory')}${this.dir}${this.#ownsDir ? ' (removed on exit)' : ''}`);

    let natsUrl = base.nats.join(',');
    let nats: LocalNats | undefined;
    let dynamo: LocalDynamo | undefined;
    let dynamoEndpoint = base.dynamodbEndpoint;
    const java = plan.dynamodb && !dynamoEndpoint && plan.natsBinary ? findJava() : undefined;
    const jarDir = java ? dynamoDbLocalDir() : undefined;
    const startingDynamo = java !== undefined && jarDir !== undefined;
    if (plan.natsBinary) out(`${label('nats-server')}starting`);
    if (startingDynamo) out(`${label('dynamodb-local')}starting (a JVM: a few seconds)`);
    else if (plan.dynamodb && !dynamoEndpoint && plan.natsBinary) out(`${label('dynamodb-local')}not started (${java ? 'jar not found: npm ci' : 'no java'}): no snapshot store`);
    const [natsResult, dynamoResult] = await Promise.allSettled([
      plan.natsBinary ? startNats(this.#group, plan.natsBinary, this.dir, signal) : Promise.resolve(undefined),
      startingDynamo ? startDynamo(this.#group, java!, jarDir!, this.dir, !this.#ownsDir, signal) : Promise.resolve(undefined),
    ]);
    if (natsResult.status === 'fulfilled' && natsResult.value) this.#servers.push(natsResult.value.child);
    if (dynamoResult.status === 'fulfilled' && dynamoResult.value) this.#servers.push(dynamoResult.value.child);
    if (natsResult.status === 'rejected') throw natsResult.reason;
    if (dynamoResult.status === 'rejected') {
      if ((dynamoResult.reason as Error).name === 'AbortError') throw dynamoResult.reason;
      // Sessions still replicate without it; only the snapshot store is missing.
      out(`${label('dynamodb-local')}failed, continuing without a snapshot store: ${(dynamoResult.reason as Error).message}`);
      await Promise.all(this.#group.children.filter((c) => c.name === 'dynamodb-local').map((c) => c.stop(3000)));
    }
    nats = natsResult.value;
    dynamo = dynamoResult.status === 'fulfilled' ? dynamoResult.value : undefined;
    if (nats) {
      natsUrl = nats.url;
      out(`${label('nats-server')}${nats.url}${nats.wsUrl ? `, ${nats.wsUrl}` : ''}, JetStream  (pid ${nats.child.pid})`);
    }
    const table = plan.explicitDynamoTable ?? (dynamo || dynamoEndpoint ? `sessrep-${base.cluster}` : undefined);
    if (dynamo) {
      dynamoEndpoint = dynamo.endpoint;
      await Promise.race([ensureTable(dynamo.endpoint, table!), abortable(signal)]);
      out(`${label('dynamodb-local')}${dynamo.endpoint}, table ${table}  (pid ${dynamo.child.pid})`);
    } else if (dynamoEndpoint && table && base.manager === 'delta') {
      const client = createDynamoClient({ dynamodbEndpoint: dynamoEndpoint, awsRegion: base.awsRegion });
      try {
        const outcome = await Promise.race([createSnapshotTable(client, table), abortable(signal)]);
        out(`${label('dynamodb')}${dynamoEndpoint}, table ${table} (${outcome})`);
      } finally {
        client.destroy();
      }
    }

    const urls: { node: string; url: string; port: number; pid?: number }[] = [];
    if (plan.inProcess) {
      const bus = new MemoryBus();
      const logger = createLogger(base.logLevel);
      for (let i = 1; i <= count; i++) {
        const config: ServeConfig = { ...base, node: `n${i}`, port: plan.basePort + i - 1 };
        const node = await Promise.race([startNode(config, logger.child({ node: config.node }), { bus }), abortable(signal)]);
        this.#inProcessNodes.push(node);
        urls.push({ node: config.node, url: `http://${host}:${node.port}`, port: node.port });
        out(`${label(config.node)}ready  http://${host}:${node.port}/  (in this process)`);
      }
    } else {
      const jetstream = base.manager === 'delta' && nats !== undefined;
      const nodes = Array.from({ length: count }, (_, i) => ({ node: `n${i + 1}`, port: plan.basePort + i }));
      for (const { node, port } of nodes) {
        const args = [join(REPO_ROOT, 'bin/session-replication.js'), 'serve', '--cluster', base.cluster, '--node', node, '--port', String(port), '--host', base.host];
        args.push('--nats', natsUrl, '--manager', base.manager, '--send', base.send, '--log-level', base.logLevel);
        if (jetstream || base.jetstream) args.push('--jetstream', 'true');
        if (table && dynamoEndpoint && base.manager === 'delta') args.push('--dynamodb-table', table, '--dynamodb-endpoint', dynamoEndpoint);
        const env: NodeJS.ProcessEnv = { ...process.env, ...plan.passEnv, NODE_NO_WARNINGS: '1' };
        for (const name of ['SESSREP_NODE', 'PORT', 'SESSREP_ADVERTISE_URL']) delete env[name];
        const child = this.#group.spawn({
          name: node,
          command: process.execPath,
          args,
          cwd: REPO_ROOT,
          env,
          logFile: join(this.dir, `${node}.log`),
          onLine: (line) => out(`[${node}] ${formatLogLine(line)}`),
        });
        this.#nodes.push(child);
      }
      out(`${label(nodes.map((n) => n.node).join(', '))}starting on ports ${nodes[0]!.port}-${nodes.at(-1)!.port}`);
      await Promise.all(
        nodes.map(async ({ node, port }, i) => {
          const child = this.#nodes[i]!;
          const url = `http://${host}:${port}`;
          await waitUntil(`${node} to answer /readyz with 200`, async () => ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200 ? true : undefined), {
            timeoutMs: 120_000,
            signal,
            child,
            intervalMs: 150,
          });
          urls.push({ node, url, port, pid: child.pid });
          out(`${label(node)}ready  ${url}/  (pid ${child.pid})`);
        }),
      );
      urls.sort((a, b) => a.port - b.port);
    }
    this.#watchExits();

    if (plan.haproxyBinary) {
      out(`${label('haproxy')}starting`);
      this.#haproxy = await startHaproxy(
        this.#group,
        plan.haproxyBinary,
        this.dir,
        { bindHost: base.host, port: plan.lbPort, servers: urls.map(({ node, port }) => ({ node, host, port })), stats: true },
        signal,
      );
      out(`${label('haproxy')}ready  ${this.#haproxy.url}/  (pid ${this.#haproxy.child.pid})`);
    }

    const first = urls[0]!.url;
    const entry = this.#haproxy?.url ?? first;
    out('');
    out(`cluster "${base.cluster}" is up${nats ? ' on nats-server' : plan.inProcess ? ' on the in-process channel' : ` on NATS ${natsUrl}`}${dynamoEndpoint && table ? ` with DynamoDB snapshots (table ${table})` : ''}`);
    if (this.#haproxy) out(`  load balancer  ${this.#haproxy.url}/   (HAProxy, sticky on the SESSIONID route${this.#haproxy.statsUrl ? `; stats ${this.#haproxy.statsUrl}` : ''})`);
    for (const { node, url, pid } of urls) out(`  node ${node.padEnd(9)} ${url}/${pid ? `   (pid ${pid})` : ''}`);
    out(`  dashboard      ${first}/cluster/ui`);
    out(`  admin token    ${base.adminToken}   (the dashboard's password, any user; Bearer for curl and drain)`);
    const pids = [`supervisor=${process.pid}`, ...(this.#watchdog ? [`watchdog=${this.#watchdog.pid}`] : []), ...this.#group.children.filter((c) => c.running).map((c) => `${c.name}=${c.pid}`)];
    out(`pids: ${pids.join(' ')}`);
    out('');
    out('Try:');
    out(`  curl -c jar -b jar -X POST ${entry}/counter`);
    out(`  curl -H "authorization: Bearer ${base.adminToken}" ${first}/cluster`);
    out(`  SESSREP_ADMIN_TOKEN=${base.adminToken} session-replication drain --url ${urls.at(-1)!.url}    # then stop that node: kill -TERM <its pid>`);
    out('Ctrl-C stops everything.');
  }

  /** Reports a child that ends while the cluster runs; the rest keeps serving. */
  #watchExits(): void {
    for (const child of this.#group.children) {
      void child.exited.then((exit) => {
        if (this.#stopping) return;
        out(`session-replication cluster: ${child.name} (pid ${child.pid}) exited (code ${exit.code}, signal ${exit.signal}); the others keep running${child.logFile ? `; log ${child.logFile}` : ''}`);
      });
    }
  }

  /** Stops everything (HAProxy, then the nodes, then the servers), removes the directory it owns, and exits. */
  shutdown(reason: string, code: number): Promise<void> {
    this.#stopping ??= (async () => {
      this.#abort.abort();
      const started = Date.now();
      await this.#haproxy?.child.stop(3000);
      const haproxy = this.#group.children.filter((c) => c.name === 'haproxy');
      await Promise.all(haproxy.map((c) => c.stop(3000)));
      await Promise.all([...this.#nodes.map((c) => c.stop(10_000)), ...this.#inProcessNodes.map((n) => n.close().catch(() => undefined))]);
      await Promise.all(this.#servers.map((c) => c.stop(5000)));
      // Anything else still running (a child spawned while start-up was cut short).
      await Promise.all(this.#group.children.map((c) => c.stop(3000)));
      if (this.#ownsDir) rmSync(this.dir, { recursive: true, force: true });
      await this.#watchdog?.done();
      const stopped = this.#group.children.map((c) => `${c.name}=${c.pid}`).join(' ');
      out(`stopped${stopped ? `: ${stopped}` : ''} (${reason}, ${Date.now() - started} ms)`);
    })();
    return this.#stopping.then(() => process.exit(code));
  }
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A pino JSON line as `LEVEL message {fields}`; anything else unchanged. */
export function formatLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const { level, time: _time, msg, ...fields } = JSON.parse(line) as { level?: number; time?: number; msg?: string } & Record<string, unknown>;
    const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    return `${LEVELS[level ?? 30] ?? level} ${msg ?? ''}${rest}`;
  } catch {
    return line;
  }
}
