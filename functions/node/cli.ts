/**
 * The `session-replication` command line, on commander: `serve` runs one node, `cluster` a local
 * cluster, `drain` drains a node, `sessions list|kill --principal` a user's sessions, `table create` makes the snapshot table. Every serve setting is a
 * flag with an environment variable and a default (functions/shared/config.ts); `--help` is generated
 * from them. A bad flag or setting exits 2 with one line on stderr.
 */
import { Command, CommanderError } from 'commander';
import { InvalidOptionsError, MissingPeerDependencyError } from 'session-replication';
import { ConfigError } from '../shared/config.ts';
import { clusterCommand } from './cluster-command.ts';
import { addServeOptions, nameIn, rawSettings, readServeConfig, settingOption } from './config.ts';
import { drainCommand } from './drain-command.ts';
import { loadDynamoDB } from './dynamodb.ts';
import { createLogger, startNode } from './node-server.ts';
import { sessionsCommand } from './sessions-command.ts';

const ENDPOINTS = `Endpoints of every node: GET /session, PUT|DELETE /session/attributes/:name, POST /counter,
POST /session/invalidate, POST /session/regenerate; open probes GET /healthz (alive) and GET /readyz
(503 while joining or draining); with SESSREP_ADMIN_TOKEN (Bearer, or the Basic-auth password):
GET /cluster, GET /cluster/sessions, GET /cluster/ui, GET /metrics, POST /cluster/drain (start
draining), GET /cluster/drain ({state, remaining}), GET|DELETE /cluster/principals/:id/sessions
(a user's sessions; DELETE ends them on every node).
SIGTERM or Ctrl-C leaves the cluster gracefully (after a drain: without moving any session).`;

/** The `serve` command. */
function serveCommand(): Command {
  const command = new Command('serve')
    .summary('run one node')
    .description('Runs one cluster node: the demo app over HTTP, replicated over NATS (or the in-process channel).');
  return addServeOptions(command).action(async (_options: unknown, self: Command) => {
    const config = readServeConfig(rawSettings(self), nameIn(self));
    await startNode(config, createLogger(config.logLevel), { handleSignals: true });
  });
}

/** The `table` command (`table create`). */
function tableCommand(): Command {
  const create = new Command('create')
    .description('create the snapshot table with TTL (for local use)')
    .addOption(settingOption('dynamodbTable'))
    .addOption(settingOption('dynamodbEndpoint'))
    .addOption(settingOption('awsRegion'))
    .action(async (_options: unknown, self: Command) => {
      const raw = rawSettings(self);
      const table = raw.dynamodbTable;
      if (table === undefined)
        throw new ConfigError('table create needs --dynamodb-table NAME (or SESSREP_DYNAMODB_TABLE)');
      const dynamodb = await loadDynamoDB();
      const client = dynamodb.createClient({
        awsRegion: raw.awsRegion ?? 'us-east-1',
        ...(raw.dynamodbEndpoint ? { dynamodbEndpoint: raw.dynamodbEndpoint } : {}),
      });
      try {
        const outcome = await dynamodb.createSnapshotTable(client, table);
        process.stdout.write(
          outcome === 'created'
            ? `created table ${table} (keys pk/sk, on-demand, TTL on "ttl")\n`
            : `table ${table} already exists: left as it is\n`,
        );
      } finally {
        client.destroy();
      }
    });
  return new Command('table').summary('create the snapshot table with TTL (for local use)').addCommand(create);
}

/** The whole command line; `--help` shows every command's options. */
export function program(): Command {
  const root = new Command('session-replication')
    .description('Replicated sessions for Hono over NATS.')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError(false);
  const commands = [serveCommand(), clusterCommand(), drainCommand(), sessionsCommand(), tableCommand()];
  // addCommand does not pass settings down: every command reports errors (and exits) through the root.
  const inherit = (command: Command) => {
    command.copyInheritedSettings(root);
    command.commands.forEach(inherit);
  };
  for (const command of commands) {
    inherit(command);
    root.addCommand(command);
  }
  root.addHelpText('after', () => {
    const details = commands.map((command) => command.helpInformation().trimEnd()).join('\n\n');
    return `\nRun "session-replication help <command>" for one command's options.\n\n${details}\n\n${ENDPOINTS}`;
  });
  return root;
}

function fail(message: string): never {
  process.stderr.write(`session-replication: ${message}\n`);
  process.exit(2);
}

/** Runs the command line `argv` (without node and the script). */
async function main(argv: string[]): Promise<void> {
  const root = program();
  if (argv.length === 0) return root.outputHelp();
  await root.parseAsync(argv, { from: 'user' });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof CommanderError) {
    if (error.exitCode === 0) process.exit(0);
    fail(error.message.replace(/^error: /, '').split('\n')[0]!);
  }
  if (error instanceof ConfigError || error instanceof InvalidOptionsError) fail(error.message.split('\n')[0]!);
  if (error instanceof MissingPeerDependencyError) {
    process.stderr.write(`session-replication: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(
    `session-replication: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
