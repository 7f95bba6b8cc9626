/**
 * HAProxy in front of a local cluster: sticky on the route suffix of the session cookie
 * (`SESSIONID=<key>.<node>` goes to server `<node>`), health checks on `/readyz` (a joining or
 * draining node answers 503 and gets no traffic), and quick failover: a 100 ms connect timeout, and
 * a refused connection, an empty answer or a 503 (a draining node refusing a new session) is retried
 * on another server (`option redispatch`, `retry-on`). Verified with HAProxy 2.6.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, portIsFree } from './local-servers.ts';
import { waitUntil, type Child, type ProcessGroup } from './local-processes.ts';

/** One backend server: the node id is also the cookie route. */
export interface HaproxyServer {
  readonly node: string;
  readonly host: string;
  readonly port: number;
}

/** What the configuration needs. */
export interface HaproxyConfigOptions {
  /** Address and port of the load balancer. */
  readonly bindHost: string;
  readonly port: number;
  /** Port of the HAProxy stats page (`/`, CSV at `/;csv`), on the same address; omitted: none. */
  readonly statsPort?: number;
  readonly servers: readonly HaproxyServer[];
  /** The session cookie's name; default SESSIONID. */
  readonly cookieName?: string;
  /** Health check period in ms; default 500 (a node is taken out after 2 failed checks). */
  readonly checkIntervalMs?: number;
}

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** The haproxy.cfg text. */
export function haproxyConfig(options: HaproxyConfigOptions): string {
  const cookie = options.cookieName ?? 'SESSIONID';
  if (!TOKEN.test(cookie)) throw new Error(`cookie name "${cookie}" is not a token`);
  for (const server of options.servers) if (!TOKEN.test(server.node)) throw new Error(`node id "${server.node}" is not a token`);
  const inter = options.checkIntervalMs ?? 500;
  const lines = [
    '# Written by session-replication cluster; removed when it stops.',
    'global',
    '  maxconn 4096',
    '',
    'defaults',
    '  mode http',
    '  timeout connect 100ms',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout http-request 10s',
    '  timeout queue 5s',
    '  timeout check 1s',
    // A refused connection (node gone), an empty answer (connection closed under a request) or a 503
    // (a draining node refusing a session it does not serve) is retried, each time on another server.
    '  retries 3',
    '  option redispatch 1',
    '  retry-on conn-failure empty-response 503',
    '',
    'frontend sessions',
    `  bind ${options.bindHost}:${options.port}`,
    // Draining is per node: through the load balancer it would reach an arbitrary one.
    '  http-request deny deny_status 403 if { path_beg /cluster/drain }',
    '  default_backend nodes',
    '',
    'backend nodes',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server inter ${inter}ms fastinter ${Math.max(100, Math.floor(inter / 2))}ms downinter ${inter}ms fall 2 rise 2`,
    // Sticky routing on the cookie's route: the text after the last dot names the node. A rule naming
    // a server that is down is skipped, so the session goes to another node, which takes it over and
    // rewrites the route.
    ...options.servers.map((s) => `  use-server ${s.node} if { req.cook(${cookie}) -m end .${s.node} }`),
    ...options.servers.map((s) => `  server ${s.node} ${s.host}:${s.port} check`),
  ];
  if (options.statsPort !== undefined) {
    lines.push('', 'frontend stats', `  bind ${options.bindHost}:${options.statsPort}`, '  stats enable', '  stats uri /', '  stats refresh 2s');
  }
  return `${lines.join('\n')}\n`;
}

/** A running HAProxy. */
export interface LocalHaproxy {
  readonly url: string;
  readonly statsUrl?: string;
  readonly port: number;
  readonly child: Child;
  readonly configFile: string;
}

/** Where to bind and what to route to. */
export interface StartHaproxyOptions {
  readonly bindHost: string;
  /** Preferred port; when taken (or 0), a free one is used. */
  readonly port: number;
  readonly servers: readonly HaproxyServer[];
  readonly stats?: boolean;
  readonly cookieName?: string;
}

/**
 * Writes `dir/haproxy.cfg` and runs `haproxy -db` (foreground, one process) until the load balancer
 * answers `/readyz` with 200. A port taken in the meantime is retried with another free one.
 */
export async function startHaproxy(group: ProcessGroup, binary: string, dir: string, options: StartHaproxyOptions, signal: AbortSignal): Promise<LocalHaproxy> {
  const host = options.bindHost === '0.0.0.0' || options.bindHost === '::' ? '127.0.0.1' : options.bindHost;
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = attempt === 0 && options.port > 0 && (await portIsFree(options.port, options.bindHost)) ? options.port : await freePort(options.bindHost);
    const statsPort = options.stats ? await freePort(options.bindHost) : undefined;
    const configFile = join(dir, 'haproxy.cfg');
    writeFileSync(
      configFile,
      haproxyConfig({ bindHost: options.bindHost, port, servers: options.servers, ...(statsPort !== undefined ? { statsPort } : {}), ...(options.cookieName ? { cookieName: options.cookieName } : {}) }),
    );
    const child = group.spawn({ name: 'haproxy', command: binary, args: ['-db', '-f', configFile], logFile: join(dir, 'haproxy.log') });
    const url = `http://${host}:${port}`;
    try {
      await waitUntil(
        'HAProxy to route /readyz to a node',
        async () => ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200 ? true : undefined),
        { timeoutMs: 30_000, signal, child, intervalMs: 100 },
      );
      return { url, port, child, configFile, ...(statsPort !== undefined ? { statsUrl: `http://${host}:${statsPort}/` } : {}) };
    } catch (error) {
      lastError = error as Error;
      await child.stop(2000);
      if ((error as Error).name === 'AbortError' || !/exited/.test(lastError.message)) throw error;
    }
  }
  throw lastError ?? new Error('HAProxy did not start');
}
