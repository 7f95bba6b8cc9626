/**
 * The supervisor behind `session-replication cluster`: it owns the temporary directory, the servers
 * (nats-server, DynamoDB Local, HAProxy), the node processes or in-process nodes, and stops every one
 * it started, by PID, on every exit path (signals, a failed start-up, its own death via a watchdog).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MemoryBus } from 'session-replication';
import type { NodeServer } from 'session-replication/node';
import {
  abortable,
  dynamoDbLocalDir,
  findExecutable,
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
import type { ServeConfig } from './config.ts';
import { loadDynamoDB } from './dynamodb.ts';
import { createLogger, startNode } from './node-server.ts';

/** Writes one line to stdout. */
export const out = (line = '') => process.stdout.write(`${line}\n`);
const label = (name: string) => `  ${name.padEnd(15)}`;
/** What to start: validated settings, node count and ports, and the binaries found. */
export interface RunPlan {
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
export class Supervisor {
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
    else if (plan.dynamodb && !dynamoEndpoint && plan.natsBinary)
      out(`${label('dynamodb-local')}not started (${java ? 'jar not found: npm ci' : 'no java'}): no snapshot store`);
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
      out(
        `${label('dynamodb-local')}failed, continuing without a snapshot store: ${(dynamoResult.reason as Error).message}`,
      );
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
        out(
          `${label(dynamo ? 'dynamodb-local' : 'dynamodb')}${dynamoEndpoint}, table ${table} (${outcome})${dynamo ? `  (pid ${dynamo.pid})` : ''}`,
        );
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
        const node = await Promise.race([
          startNode(config, logger.child({ node: config.node }), { bus }),
          abortable(signal),
        ]);
        this.#inProcessNodes.push(node);
        urls.push({ node: config.node, url: `http://${host}:${node.port}`, port: node.port });
        out(`${label(config.node)}ready  http://${host}:${node.port}/  (in this process)`);
      }
    } else {
      const jetstream = base.manager === 'delta' && nats !== undefined;
      const nodes = Array.from({ length: count }, (_, i) => ({ node: `n${i + 1}`, port: plan.basePort + i }));
      for (const { node, port } of nodes) {
        // The command this supervisor runs as (bin/session-replication.js, or the built CLI).
        const args = [
          process.argv[1]!,
          'serve',
          '--cluster',
          base.cluster,
          '--node',
          node,
          '--port',
          String(port),
          '--host',
          base.host,
        ];
        args.push('--nats', natsUrl, '--manager', base.manager, '--send', base.send, '--log-level', base.logLevel);
        if (jetstream || base.jetstream) args.push('--jetstream', 'true');
        if (table && dynamoEndpoint && base.manager === 'delta')
          args.push('--dynamodb-table', table, '--dynamodb-endpoint', dynamoEndpoint);
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
          await waitFor(
            `${node} to answer /readyz with 200`,
            async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200,
            {
              timeoutMs: 120_000,
              signal,
              process: child,
              intervalMs: 150,
            },
          );
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
    out(
      `cluster "${base.cluster}" is up${nats ? ' on nats-server' : plan.inProcess ? ' on the in-process channel' : ` on NATS ${natsUrl}`}${dynamoEndpoint && table ? ` with DynamoDB snapshots (table ${table})` : ''}`,
    );
    if (this.#haproxy)
      out(
        `  load balancer  ${this.#haproxy.url}/   (HAProxy, sticky on the SESSIONID route; stats ${this.#haproxy.statsUrl})`,
      );
    for (const { node, url, pid } of urls) out(`  node ${node.padEnd(9)} ${url}/${pid ? `   (pid ${pid})` : ''}`);
    out(`  dashboard      ${first}/cluster/ui`);
    out(`  admin token    ${base.adminToken}   (the dashboard's password, any user; Bearer for curl and drain)`);
    const pids = [
      `supervisor=${process.pid}`,
      ...(this.#watchdog ? [`watchdog=${this.#watchdog.pid}`] : []),
      ...this.#group.live().map((c) => `${c.name}=${c.pid}`),
    ];
    out(`pids: ${pids.join(' ')}`);
    out('');
    out('Try:');
    out(`  curl -c jar -b jar -X POST ${entry}/counter`);
    out(`  curl -H "authorization: Bearer ${base.adminToken}" ${first}/cluster`);
    out(
      `  SESSREP_ADMIN_TOKEN=${base.adminToken} session-replication drain --url ${urls.at(-1)!.url}    # then stop that node: kill -TERM <its pid>`,
    );
    out('Ctrl-C stops everything.');
  }

  /** Reports a child that ends while the cluster runs; the rest keeps serving. */
  #watchExits(): void {
    for (const child of this.#group.children) {
      void child.exited.then((exit) => {
        if (this.#stopping) return;
        out(
          `session-replication cluster: ${child.name} (pid ${child.pid}) exited (code ${exit.code}, signal ${exit.signal}); the others keep running${child.logFile ? `; log ${child.logFile}` : ''}`,
        );
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
      await Promise.all([
        ...this.#nodes.map((c) => c.stop(10_000)),
        ...this.#inProcessNodes.map((n) => n.close().catch(() => undefined)),
      ]);
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
    const {
      level,
      time: _time,
      msg,
      ...fields
    } = JSON.parse(line) as { level?: number; time?: number; msg?: string } & Record<string, unknown>;
    const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    return `${LEVELS[level ?? 30] ?? level} ${msg ?? ''}${rest}`;
  } catch {
    return line;
  }
}
