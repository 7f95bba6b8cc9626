/** The `session-replication` command line: `serve` runs one node, `cluster` a local cluster, `drain` drains a node. */
import { flagHelp, parseFlags, readServeConfig, SERVE_FLAGS, serveOptions, UsageError } from './config.ts';
import { createDynamoClient, createLogger, startNode } from './node-server.ts';
import { createSnapshotTable } from '../../lib/store/dynamodb.ts';
import { CLUSTER_HELP, runLocalCluster } from './local-cluster.ts';
import { DRAIN_HELP, drainCommand } from './drain-command.ts';

const USAGE = `session-replication: replicated sessions for Hono over NATS

Usage:
  session-replication serve   [options]   run one node
  session-replication cluster [options]   run a local cluster: nats-server, DynamoDB Local, N node
                                          processes and HAProxy, whichever are installed (npm start)
  session-replication drain (--url URL | --node ID) [--timeout S]
                                          drain one node and wait until it is safe to stop
  session-replication table create --dynamodb-table NAME [--dynamodb-endpoint URL] [--aws-region R]
                                          create the snapshot table with TTL (for local use)
  session-replication help                this text

serve options (each also read from the environment variable shown):
${flagHelp(SERVE_FLAGS)}

${CLUSTER_HELP}

${DRAIN_HELP}

Endpoints of every node: GET /session, PUT|DELETE /session/attributes/:name, POST /counter,
POST /session/invalidate, POST /session/regenerate; open probes GET /healthz (alive) and GET /readyz
(503 while joining or draining); with SESSREP_ADMIN_TOKEN (Bearer, or the Basic-auth password):
GET /cluster, GET /cluster/sessions, GET /cluster/ui, GET /metrics, POST /cluster/drain (start
draining), GET /cluster/drain ({state, remaining}).
SIGTERM or Ctrl-C leaves the cluster gracefully (after a drain: without moving any session).`;

function fail(message: string): never {
  process.stderr.write(`session-replication: ${message}\n`);
  process.exit(2);
}

async function serveCommand(args: string[]): Promise<void> {
  const { values } = parseFlags(args, serveOptions());
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const config = readServeConfig(values, process.env);
  await startNode(config, createLogger(config.logLevel), { handleSignals: true });
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
      return runLocalCluster(rest, USAGE);
    case 'drain':
      return drainCommand(rest, USAGE);
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
