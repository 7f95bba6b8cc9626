/**
 * `session-replication sessions list|kill --principal ID`: a user's sessions cluster-wide, and ending
 * them on every node ("log out everywhere", a password change), through one node's admin routes
 * (`GET|DELETE /cluster/principals/:id/sessions`). The admin token is sent as a bearer token.
 */
import { Command, Option } from 'commander';
import { ConfigError } from '../shared/config.ts';
import { settingOption } from './config.ts';
import { adminHeaders, getJson } from './drain-command.ts';

/** Options of `sessions list` and `sessions kill`, as commander parsed them. */
interface SessionsOptions {
  principal: string;
  url: string;
  adminToken?: string;
}

/** The `sessions` command with `list` and `kill`. */
export function sessionsCommand(): Command {
  const withOptions = (command: Command) =>
    command
      .requiredOption('--principal <id>', 'the user: the id the app passed to session.setPrincipal()')
      .addOption(new Option('--url <url>', 'any member of the cluster').default('http://127.0.0.1:8081'))
      .addOption(settingOption('adminToken'));
  const list = withOptions(
    new Command('list').description("list a user's sessions on every node (key prefixes only)"),
  ).action((options: SessionsOptions) => listSessions(options));
  const kill = withOptions(
    new Command('kill').description('end every session of a user on every node (log out everywhere)'),
  ).action((options: SessionsOptions) => killSessions(options));
  return new Command('sessions')
    .summary("list or end a user's sessions cluster-wide")
    .addCommand(list)
    .addCommand(kill);
}

function endpoint({ url, principal }: SessionsOptions): string {
  if (!/^https?:\/\/\S+$/.test(url)) throw new ConfigError(`--url must be an http(s) URL, got "${url}"`);
  if (principal.trim() === '') throw new ConfigError('--principal must not be empty');
  return `${url.replace(/\/+$/, '')}/cluster/principals/${encodeURIComponent(principal)}/sessions`;
}

async function listSessions(options: SessionsOptions): Promise<void> {
  const { status, body } = await getJson<{
    total?: number;
    sessions?: { key: string; lastAccessedBy?: string; lastAccessedAt?: number }[];
    error?: string;
  }>(endpoint(options), adminHeaders(options.adminToken));
  if (status !== 200) throw new Error(`the node answered ${status}: ${body.error ?? JSON.stringify(body)}`);
  process.stdout.write(`${body.total ?? 0} session(s) of ${options.principal}\n`);
  for (const s of body.sessions ?? [])
    process.stdout.write(
      `  ${s.key}…  last used on ${s.lastAccessedBy ?? '?'} at ${s.lastAccessedAt ? new Date(s.lastAccessedAt).toISOString() : '?'}\n`,
    );
}

async function killSessions(options: SessionsOptions): Promise<void> {
  const { status, body } = await getJson<{ ended?: number; error?: string }>(
    endpoint(options),
    adminHeaders(options.adminToken),
    { method: 'DELETE' },
  );
  if (status !== 200) throw new Error(`the node answered ${status}: ${body.error ?? JSON.stringify(body)}`);
  process.stdout.write(`ended ${body.ended ?? 0} session(s) of ${options.principal} on every node\n`);
}
