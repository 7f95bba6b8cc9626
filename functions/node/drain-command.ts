/**
 * `session-replication drain`: asks one node to drain (`POST /cluster/drain`) and waits, printing
 * progress, until it reports `drained` (`GET /cluster/drain`): then it is safe to stop it. The admin
 * token (`--admin-token` or `SESSREP_ADMIN_TOKEN`) is sent as a bearer token.
 */
import { Command, Option } from 'commander';
import type { DrainStatus } from 'session-replication';
import { ConfigError } from '../shared/config.ts';
import { settingOption } from './config.ts';

/** Options of `drain`, as commander parsed them. */
interface DrainOptions {
  url?: string;
  node?: string;
  via: string;
  timeout: string;
  /** The node's admin token (prefer SESSREP_ADMIN_TOKEN over the flag). */
  adminToken?: string;
}

/** The `drain` command. */
export function drainCommand(): Command {
  return new Command('drain')
    .summary('drain one node and wait until it is safe to stop')
    .description(
      'Drains one node (POST /cluster/drain) and waits until it reports drained. Exit code 0 once the node is drained: stop it then (SIGTERM); it leaves the cluster cleanly.',
    )
    .addOption(
      new Option('--url <url>', "the node to drain (its own address, not the load balancer's)").conflicts('node'),
    )
    .addOption(new Option('--node <id>', 'the node to drain, found by its advertised URL on /cluster of --via'))
    .addOption(new Option('--via <url>', 'any member, to look --node up').default('http://127.0.0.1:8081'))
    .addOption(new Option('--timeout <seconds>', 'give up after this many seconds (exit code 1)').default('120'))
    .addOption(settingOption('adminToken'))
    .action((options: DrainOptions) => drain(options));
}

const URL_PATTERN = /^https?:\/\/\S+$/;

/** The admin token as an Authorization header (none without a token); `sessions` uses it too. */
export function adminHeaders(token: string | undefined): Record<string, string> {
  const trimmed = token?.trim();
  return trimmed ? { authorization: `Bearer ${trimmed}` } : {};
}

/** Fetches JSON from a node's admin route (5 s timeout); a 401 becomes a `ConfigError` naming the admin token. */
export async function getJson<T>(
  url: string,
  headers: Record<string, string>,
  init: RequestInit = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(5000) });
  if (response.status === 401)
    throw new ConfigError(`${url} answered 401: set SESSREP_ADMIN_TOKEN (or --admin-token) to the node's admin token`);
  const text = await response.text();
  let body: T;
  try {
    body = JSON.parse(text) as T;
  } catch {
    throw new Error(`${url} answered ${response.status} without JSON: ${text.slice(0, 200)}`);
  }
  return { status: response.status, body };
}

/** Finds the advertised URL of `node` on `/cluster` of `via`. */
async function urlOf(node: string, via: string, headers: Record<string, string>): Promise<string> {
  const { body } = await getJson<{ node: string; url?: string; members?: { node: string; url?: string }[] }>(
    `${via.replace(/\/+$/, '')}/cluster`,
    headers,
  );
  const member = body.members?.find((m) => m.node === node);
  if (!member)
    throw new ConfigError(
      `node "${node}" is not a member of the cluster ${via} belongs to (members: ${(body.members ?? []).map((m) => m.node).join(', ')})`,
    );
  if (!member.url) throw new ConfigError(`node "${node}" does not advertise its URL: use --url`);
  return member.url;
}

/** Drains the node; resolves when drained, throws on timeout or error. */
async function drain(values: DrainOptions): Promise<void> {
  if ((values.url === undefined) === (values.node === undefined))
    throw new ConfigError('drain needs exactly one of --url URL or --node ID');
  for (const name of ['url', 'via'] as const) {
    const value = values[name];
    if (value !== undefined && !URL_PATTERN.test(value))
      throw new ConfigError(`--${name} must be an http(s) URL, got "${value}"`);
  }
  const timeoutS = Number(values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0)
    throw new ConfigError(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
  const headers = adminHeaders(values.adminToken);
  const base = (values.url ?? (await urlOf(values.node!, values.via, headers))).replace(/\/+$/, '');
  const started = Date.now();
  const post = await getJson<DrainStatus & { error?: string }>(`${base}/cluster/drain`, headers, { method: 'POST' });
  if (post.status !== 202)
    throw new Error(`${base}/cluster/drain answered ${post.status}: ${post.body.error ?? JSON.stringify(post.body)}`);
  process.stdout.write(`draining ${base}: ${post.body.remaining} remaining\n`);
  let last = post.body.remaining;
  let lastPrinted = Date.now();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { body } = await getJson<DrainStatus>(`${base}/cluster/drain`, headers);
    if (body.state === 'drained') {
      process.stdout.write(
        `drained ${base} in ${((Date.now() - started) / 1000).toFixed(1)} s: safe to stop it now (SIGTERM)\n`,
      );
      return;
    }
    if (body.state !== 'draining') throw new Error(`${base} is not draining (state ${body.state}): was it restarted?`);
    if (body.remaining !== last || Date.now() - lastPrinted >= 2000) {
      process.stdout.write(
        `draining ${base}: ${body.remaining} remaining${body.inFlight > 0 ? ` (${body.inFlight} requests in flight)` : ''}\n`,
      );
      last = body.remaining;
      lastPrinted = Date.now();
    }
    if (Date.now() - started > timeoutS * 1000)
      throw new Error(`${base} still draining after ${timeoutS} s: ${body.remaining} remaining`);
  }
}
