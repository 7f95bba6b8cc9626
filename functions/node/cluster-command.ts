/**
 * `session-replication cluster`: a real local cluster from one command. With no servers given it
 * starts `nats-server` (JetStream, WebSocket) when installed, DynamoDB Local when Java is there (delta
 * manager), N node processes, and HAProxy in front when installed; without nats-server every node
 * runs in this process on the in-process channel. Everything lives in a temporary directory it owns
 * (or `--data-dir`), and every process it started is stopped by PID on Ctrl-C, SIGTERM, SIGHUP, an
 * error, or, through a watchdog process, when the supervisor itself is killed.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { MemoryBus } from 'session-replication';
import type { NodeServer } from 'session-replication/node';
import {
  abortable,
  dynamoDbLocalDir,
  findExecutable,
  portIsFree,
  ProcessGroup,
  startDynamoDbLocal,
  startHaproxy,
  startNatsServer,
  startWatchdog,
  waitFor,
  type DynamoDbLocalHandle,
  type HaproxyHandle,
  type NatsServerHandle,
  type TrackedProcess,
  type Watchdog,
} from '../launch/index.ts';
import { ConfigError, SETTINGS, type SettingName } from '../shared/config.ts';
import { addServeOptions, nameIn, rawSettings, readServeConfig, SERVE_SETTINGS, type ServeConfig } from './config.ts';
import { loadDynamoDB } from './dynamodb.ts';
import { createLogger, startNode } from './node-server.ts';

/** Options of `cluster` besides the serve settings, as commander parsed them. */
interface ClusterCommandOptions {
  nodes: string;
  basePort: string;
  lbPort?: string;
  lb: boolean;
  dynamodb: boolean;
  inProcess?: boolean;
  dataDir?: string;
}

/** Settings the supervisor sets per node itself. */
const PER_NODE_SETTINGS: readonly SettingName[] = ['node', 'port', 'advertiseUrl'];
/** Settings the supervisor passes on the command line; every other one travels as its environment variable (secrets stay off `ps`). */
const ARG_SETTINGS = new Set<SettingName>(['cluster', 'host', 'nats', 'manager', 'send', 'logLevel', 'jetstream', 'dynamodbTable', 'dynamodbEndpoint', ...PER_NODE_SETTINGS]);

const out = (line = '') => process.stdout.write(`${line}\n`);
const label = (name: string) => `  ${name.padEnd(15)}`;

/** The `cluster` command: its own options plus every serve setting, passed to each node. */
export function clusterCommand(): Command {
  const command = new Command('cluster')
    .summary('run a local cluster: nats-server, DynamoDB Local, N node processes and HAProxy, whichever are installed (npm start)')
    .description(
      'Runs a local cluster. With no servers given it starts nats-server when installed (else runs every node in this process), ' +
        'DynamoDB Local when Java and the jar are there (delta manager), and HAProxy when installed; Ctrl-C stops them all. ' +
        'The serve options are passed to every node.',
    )
    .addOption(new Option('--nodes <n>', 'number of nodes').default('3'))
    .addOption(new Option('--base-port <port>', "first node's HTTP port; node i listens on base-port + i - 1").default('8081'))
    .addOption(new Option('--lb-port <port>', "HAProxy's port (default: base-port - 1 when free, else a free port)"))
    .addOption(new Option('--no-lb', 'no HAProxy in front'))
    .addOption(new Option('--no-dynamodb', 'no snapshot store (nodes still keep the JetStream log)'))
    .addOption(new Option('--in-process', 'every node in this process on the in-process channel (no servers)'))
    .addOption(new Option('--data-dir <dir>', 'keep configuration, logs, the JetStream store and DynamoDB data here (default: a temporary directory, removed on exit)'));
  addServeOptions(command);
  return command.action((options: ClusterCommandOptions, self: Command) => runLocalCluster(options, self));
}

/** An integer option in [min, max], or a `ConfigError`. */
function integerOption(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new ConfigError(`${flag} must be an integer from ${min} to ${max}, got "${text}"`);
  return value;
}

/** Validates the options, starts the cluster, and runs until a signal stops it. */
async function runLocalCluster(options: ClusterCommandOptions, command: Command): Promise<void> {
  for (const name of PER_NODE_SETTINGS) {
    if (command.getOptionValueSource(name) === 'cli') throw new ConfigError(`--${SETTINGS[name].flag} is set per node by "cluster" (use --base-port)`);
  }
  const count = integerOption('--nodes', options.nodes, 1, 32);
  const basePort = integerOption('--base-port', options.basePort, 1, 65535 - count + 1);
  const lbPort = options.lbPort !== undefined ? integerOption('--lb-port', options.lbPort, 0, 65535) : basePort - 1;

  const raw = rawSettings(command);
  for (const name of PER_NODE_SETTINGS) delete raw[name];
  const externalNats = raw.nats;
  const natsBinary = externalNats || options.inProcess ? undefined : findExecutable('nats-server');
  const inProcess = !externalNats && !natsBinary;
  // Validate every serve setting now (a placeholder stands in for the nats-server started below).
  const base: ServeConfig = readServeConfig({ ...raw, logLevel: raw.logLevel ?? 'warn', ...(natsBinary ? { nats: 'nats://127.0.0.1:4222' } : {}) }, nameIn(command));
  // Every node of a local cluster shares one admin token: the given one, else a fresh one printed below.
  base.adminToken ??= randomBytes(18).toString('base64url');
  if (inProcess && options.inProcess !== true) {
    out('nats-server not found (apt-get install nats-server): every node runs in this process on the in-process channel');
  }
  const haproxyBinary = options.lb ? findExecutable('haproxy') : undefined;
  if (options.lb && !haproxyBinary) out('haproxy not found (apt-get install haproxy): no load balancer in front');

  for (let i = 0; i < count; i++) {
    if (!(await portIsFree(basePort + i, base.host))) throw new ConfigError(`port ${basePort + i} on ${base.host} is in use: pass another --base-port`);
  }

  const supervisor = new Supervisor(options.dataDir, haproxyBinary !== undefined || natsBinary !== undefined);
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
      dynamodb: base.manager === 'delta' && options.dynamodb,
      explicitDynamoTable: raw.dynamodbTable,
      // Settings given on the command line that are not passed as flags travel as environment variables.
      passEnv: {
        ...Object.fromEntries(
          SERVE_SETTINGS.filter((name) => !ARG_SETTINGS.has(name) && command.getOptionValueSource(name) === 'cli' && raw[name] !== undefined).map((name) => [SETTINGS[name].env, raw[name]!]),
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
  #nodes: TrackedProcess[] = [];
  #haproxy?: HaproxyHandle;
  #servers: TrackedProcess[] = [];
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
    // Children in their own process groups: a terminal's Ctrl-C reaches only the supervisor, which stops them in order.
    this.#group = new ProcessGroup({ ...(this.#watchdog ? { watchdog: this.#watchdog } : {}), detached: true });
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
    let nats: NatsServerHandle | undefined;
    let dynamo: DynamoDbLocalHandle | undefined;
    let dynamoEndpoint = base.dynamodbEndpoint;
    const java = plan.dynamodb && !dynamoEndpoint && plan.natsBinary ? findExecutable('java') : undefined;
    const jarDir = java ? dynamoDbLocalDir() : undefined;
    const startingDynamo = java !== undefined && jarDir !== undefined;
    if (plan.natsBinary) out(`${label('nats-server')}starting`);
    if (startingDynamo) out(`${label('dynamodb-local')}starting (a JVM: a few seconds)`);
    else if (plan.dynamodb && !dynamoEndpoint && plan.natsBinary) out(`${label('dynamodb-local')}not started (${java ? 'jar not found: npm ci' : 'no java'}): no snapshot store`);
    const [natsResult, dynamoResult] = await Promise.allSettled([
      plan.natsBinary
        ? startNatsServer({
            group: this.#group,
            binary: plan.natsBinary,
            dir: this.dir,
            serverName: 'sessrep_local',
            jetstream: true,
            websocket: true,
            logFile: join(this.dir, 'nats-server.log'),
            signal,
            timeoutMs: 20_000,
          })
        : Promise.resolve(undefined),
      startingDynamo
        ? startDynamoDbLocal({
            group: this.#group,
            // Anything the JVM writes next to itself lands in the cluster's directory, which its command line names.
            cwd: this.dir,
            properties: { 'sessrep.dir': this.dir },
            ...(this.#ownsDir ? {} : { dataDir: this.dir }),
            logFile: join(this.dir, 'dynamodb-local.log'),
            signal,
            timeoutMs: 90_000,
          })
        : Promise.resolve(undefined),
    ]);
    if (natsResult.status === 'fulfilled' && natsResult.value) this.#servers.push(natsResult.value.process);
    if (dynamoResult.status === 'fulfilled' && dynamoResult.value) this.#servers.push(dynamoResult.value.process);
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
      out(`${label('nats-server')}${nats.url}${nats.wsUrl ? `, ${nats.wsUrl}` : ''}, JetStream  (pid ${nats.pid})`);
    }
    const table = plan.explicitDynamoTable ?? (dynamo || dynamoEndpoint ? `sessrep-${base.cluster}` : undefined);
    if (dynamo) dynamoEndpoint = dynamo.endpoint;
    if (dynamoEndpoint && table && base.manager === 'delta') {
      const dynamodb = await loadDynamoDB();
      const client = dynamodb.createClient({ dynamodbEndpoint: dynamoEndpoint, awsRegion: base.awsRegion });
      try {
        const outcome = await Promise.race([dynamodb.createSnapshotTable(client, table), abortable(signal)]);
        out(`${label(dynamo ? 'dynamodb-local' : 'dynamodb')}${dynamoEndpoint}, table ${table} (${outcome})${dynamo ? `  (pid ${dynamo.pid})` : ''}`);
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
        // The command this supervisor runs as (bin/session-replication.js, or the built CLI).
        const args = [process.argv[1]!, 'serve', '--cluster', base.cluster, '--node', node, '--port', String(port), '--host', base.host];
        args.push('--nats', natsUrl, '--manager', base.manager, '--send', base.send, '--log-level', base.logLevel);
        if (jetstream || base.jetstream) args.push('--jetstream', 'true');
        if (table && dynamoEndpoint && base.manager === 'delta') args.push('--dynamodb-table', table, '--dynamodb-endpoint', dynamoEndpoint);
        const env: NodeJS.ProcessEnv = { ...process.env, ...plan.passEnv, NODE_NO_WARNINGS: '1' };
        for (const name of ['SESSREP_NODE', 'PORT', 'SESSREP_ADVERTISE_URL']) delete env[name];
        const child = this.#group.spawn(process.execPath, args, {
          name: node,
          env,
          maxOutputChars: 8192,
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
          await waitFor(`${node} to answer /readyz with 200`, async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, {
            timeoutMs: 120_000,
            signal,
            process: child,
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
      this.#haproxy = await startHaproxy({
        group: this.#group,
        binary: plan.haproxyBinary,
        dir: this.dir,
        bindHost: base.host,
        port: plan.lbPort,
        servers: urls.map(({ node, port }) => ({ node, host, port })),
        signal,
      });
      out(`${label('haproxy')}ready  ${this.#haproxy.url}/  (pid ${this.#haproxy.pid})`);
    }

    const first = urls[0]!.url;
    const entry = this.#haproxy?.url ?? first;
    out('');
    out(`cluster "${base.cluster}" is up${nats ? ' on nats-server' : plan.inProcess ? ' on the in-process channel' : ` on NATS ${natsUrl}`}${dynamoEndpoint && table ? ` with DynamoDB snapshots (table ${table})` : ''}`);
    if (this.#haproxy) out(`  load balancer  ${this.#haproxy.url}/   (HAProxy, sticky on the SESSIONID route; stats ${this.#haproxy.statsUrl})`);
    for (const { node, url, pid } of urls) out(`  node ${node.padEnd(9)} ${url}/${pid ? `   (pid ${pid})` : ''}`);
    out(`  dashboard      ${first}/cluster/ui`);
    out(`  admin token    ${base.adminToken}   (the dashboard's password, any user; Bearer for curl and drain)`);
    const pids = [`supervisor=${process.pid}`, ...(this.#watchdog ? [`watchdog=${this.#watchdog.pid}`] : []), ...this.#group.live().map((c) => `${c.name}=${c.pid}`)];
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
      await this.#haproxy?.stop();
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
