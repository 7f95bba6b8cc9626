/** The `session-replication` command line: `serve` runs one node, `cluster` runs a local cluster in one process. */
import { defaultMemoryBus, MemoryBus } from '../../lib/index.ts';
import { flagHelp, parseFlags, readServeConfig, SERVE_FLAGS, serveOptions, UsageError, type ServeConfig } from './config.ts';
import { createDynamoClient, createLogger, startNode, type RunningNode } from './node-server.ts';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';

const USAGE = `session-replication: replicated sessions for Hono over NATS

Usage:
  session-replication serve   [options]   run one node
  session-replication cluster [options]   run a local cluster of nodes in this process
  session-replication table create --dynamodb-table NAME [--dynamodb-endpoint URL] [--aws-region R]
                                          create the snapshot table with TTL (for local use)
  session-replication help                this text

serve options (each also read from the environment variable shown):
${flagHelp(SERVE_FLAGS)}

cluster options:
  --nodes N          number of nodes (default 3)
  --base-port P      first HTTP port; node i listens on P+i-1 (default 8081)
  --nats URL         use this NATS server instead of the in-process channel
  plus --cluster, --manager, --send, --max-inactive, --host, --log-level as for serve

Endpoints of every node: GET /session, PUT|DELETE /session/attributes/:name, POST /counter,
POST /session/invalidate, POST /session/regenerate, GET /cluster, GET /healthz.
SIGTERM or Ctrl-C leaves the cluster gracefully.`;

function fail(message: string): never {
  process.stderr.write(`session-replication: ${message}\n`);
  process.exit(2);
}

/** Stops the nodes on SIGTERM/SIGINT, leaving the cluster gracefully. */
function stopOnSignals(nodes: RunningNode[]): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`session-replication: ${signal}, leaving the cluster\n`);
    const timer = setTimeout(() => process.exit(1), 5000);
    await Promise.allSettled(nodes.map((node) => node.close()));
    clearTimeout(timer);
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

async function serveCommand(args: string[]): Promise<void> {
  const { values } = parseFlags(args, serveOptions());
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const config = readServeConfig(values, process.env);
  const logger = createLogger(config.logLevel);
  const nodes: RunningNode[] = [];
  stopOnSignals(nodes);
  nodes.push(await startNode(config, logger));
}

async function clusterCommand(args: string[]): Promise<void> {
  const { values } = parseFlags(args, { ...serveOptions(), nodes: { type: 'string' }, 'base-port': { type: 'string' } });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const count = Number(values.nodes ?? '3');
  if (!Number.isInteger(count) || count < 1 || count > 32) throw new UsageError(`--nodes must be an integer from 1 to 32, got "${values.nodes}"`);
  const basePort = Number(values['base-port'] ?? '8081');
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + count - 1 > 65535) throw new UsageError(`--base-port must be a port number, got "${values['base-port']}"`);
  const base: ServeConfig = readServeConfig({ ...values, 'log-level': values['log-level'] ?? 'warn' }, process.env);
  const logger = createLogger(base.logLevel);
  const bus = base.nats.length > 0 ? undefined : new MemoryBus();
  const nodes: RunningNode[] = [];
  stopOnSignals(nodes);
  const channel = bus ? 'in-process channel' : `NATS ${base.nats.join(',')}`;
  process.stdout.write(`starting ${count} node(s) of cluster "${base.cluster}" (${base.manager} manager, ${base.send} send) on the ${channel}\n`);
  for (let i = 1; i <= count; i++) {
    const config = { ...base, node: `n${i}`, port: basePort + i - 1 };
    const node = await startNode(config, logger.child({ node: config.node }), bus ?? defaultMemoryBus);
    nodes.push(node);
    process.stdout.write(`  node ${config.node}: http://${config.host}:${node.port}/  (ready, ${node.sessions.status().sessions.total} sessions)\n`);
  }
  const first = `http://${base.host}:${nodes[0]!.port}`;
  process.stdout.write(`\nTry:\n  curl -c jar -b jar -X POST ${first}/counter\n  curl -b jar http://${base.host}:${nodes[nodes.length - 1]!.port}/session\n  curl ${first}/cluster\nCtrl-C stops every node.\n`);
}

async function tableCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action !== 'create') throw new UsageError(`unknown table action "${action ?? ''}": try "table create --dynamodb-table NAME"`);
  const { values } = parseFlags(rest, { 'dynamodb-table': { type: 'string' }, 'dynamodb-endpoint': { type: 'string' }, 'aws-region': { type: 'string' } });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const table = values['dynamodb-table'] ?? process.env.SESSREP_DYNAMODB_TABLE;
  if (!table) throw new UsageError('table create needs --dynamodb-table NAME (or SESSREP_DYNAMODB_TABLE)');
  const endpoint = values['dynamodb-endpoint'] ?? process.env.DYNAMODB_ENDPOINT;
  const client = createDynamoClient({ awsRegion: values['aws-region'] ?? process.env.AWS_REGION ?? 'us-east-1', ...(endpoint ? { dynamodbEndpoint: endpoint } : {}) });
  const outcome = await createSnapshotTable(client, table);
  process.stdout.write(outcome === 'created' ? `created table ${table} (keys pk/sk, on-demand, TTL on "ttl")\n` : `table ${table} already exists: left as it is\n`);
  client.destroy();
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serveCommand(rest);
    case 'cluster':
      return clusterCommand(rest);
    case 'table':
      return tableCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new UsageError(`unknown command "${command}" (try --help)`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) fail(error.message);
  if (error instanceof Error && error.name === 'InvalidOptionsError') fail(error.message);
  process.stderr.write(`session-replication: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
