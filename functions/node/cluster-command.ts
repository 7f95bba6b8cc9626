/**
 * `session-replication cluster`: a real local cluster from one command. With no servers given it
 * starts `nats-server` (JetStream, WebSocket) when installed, DynamoDB Local when Java is there (delta
 * manager), N node processes, and HAProxy in front when installed; without nats-server every node
 * runs in this process on the in-process channel. Everything lives in a temporary directory it owns
 * (or `--data-dir`), and every process it started is stopped by PID on Ctrl-C, SIGTERM, SIGHUP, an
 * error, or, through a watchdog process, when the supervisor itself is killed.
 */
import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';
import { findExecutable, portIsFree } from '../launch/index.ts';
import { ConfigError, SETTINGS, type SettingName } from '../shared/config.ts';
import { out, Supervisor } from './cluster-supervisor.ts';
import { addServeOptions, nameIn, rawSettings, readServeConfig, SERVE_SETTINGS, type ServeConfig } from './config.ts';

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
const ARG_SETTINGS = new Set<SettingName>([
  'cluster',
  'host',
  'nats',
  'manager',
  'send',
  'logLevel',
  'jetstream',
  'dynamodbTable',
  'dynamodbEndpoint',
  ...PER_NODE_SETTINGS,
]);

/** The `cluster` command: its own options plus every serve setting, passed to each node. */
export function clusterCommand(): Command {
  const command = new Command('cluster')
    .summary(
      'run a local cluster: nats-server, DynamoDB Local, N node processes and HAProxy, whichever are installed (npm start)',
    )
    .description(
      'Runs a local cluster. With no servers given it starts nats-server when installed (else runs every node in this process), ' +
        'DynamoDB Local when Java and the jar are there (delta manager), and HAProxy when installed; Ctrl-C stops them all. ' +
        'The serve options are passed to every node.',
    )
    .addOption(new Option('--nodes <n>', 'number of nodes').default('3'))
    .addOption(
      new Option('--base-port <port>', "first node's HTTP port; node i listens on base-port + i - 1").default('8081'),
    )
    .addOption(new Option('--lb-port <port>', "HAProxy's port (default: base-port - 1 when free, else a free port)"))
    .addOption(new Option('--no-lb', 'no HAProxy in front'))
    .addOption(new Option('--no-dynamodb', 'no snapshot store (nodes still keep the JetStream log)'))
    .addOption(new Option('--in-process', 'every node in this process on the in-process channel (no servers)'))
    .addOption(
      new Option(
        '--data-dir <dir>',
        'keep configuration, logs, the JetStream store and DynamoDB data here (default: a temporary directory, removed on exit)',
      ),
    );
  addServeOptions(command);
  return command.action((options: ClusterCommandOptions, self: Command) => runLocalCluster(options, self));
}

/** An integer option in [min, max], or a `ConfigError`. */
function integerOption(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max)
    throw new ConfigError(`${flag} must be an integer from ${min} to ${max}, got "${text}"`);
  return value;
}

/** Validates the options, starts the cluster, and runs until a signal stops it. */
async function runLocalCluster(options: ClusterCommandOptions, command: Command): Promise<void> {
  for (const name of PER_NODE_SETTINGS) {
    if (command.getOptionValueSource(name) === 'cli')
      throw new ConfigError(`--${SETTINGS[name].flag} is set per node by "cluster" (use --base-port)`);
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
  const base: ServeConfig = readServeConfig(
    { ...raw, logLevel: raw.logLevel ?? 'warn', ...(natsBinary ? { nats: 'nats://127.0.0.1:4222' } : {}) },
    nameIn(command),
  );
  // Every node of a local cluster shares one admin token: the given one, else a fresh one printed below.
  base.adminToken ??= randomBytes(18).toString('base64url');
  if (inProcess && options.inProcess !== true) {
    out(
      'nats-server not found (apt-get install nats-server): every node runs in this process on the in-process channel',
    );
  }
  const haproxyBinary = options.lb ? findExecutable('haproxy') : undefined;
  if (options.lb && !haproxyBinary) out('haproxy not found (apt-get install haproxy): no load balancer in front');

  for (let i = 0; i < count; i++) {
    if (!(await portIsFree(basePort + i, base.host)))
      throw new ConfigError(`port ${basePort + i} on ${base.host} is in use: pass another --base-port`);
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
          SERVE_SETTINGS.filter(
            (name) =>
              !ARG_SETTINGS.has(name) && command.getOptionValueSource(name) === 'cli' && raw[name] !== undefined,
          ).map((name) => [SETTINGS[name].env, raw[name]!]),
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
