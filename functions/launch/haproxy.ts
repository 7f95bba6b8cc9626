/**
 * HAProxy in front of a local cluster: sticky on the route suffix of the session cookie
 * (`SESSIONID=<key>.<node>` goes to server `<node>`), health checks on `/readyz` (a joining or
 * draining node answers 503 and gets no traffic), and quick failover: a 100 ms connect timeout, and
 * a refused connection, an empty answer or a 503 (a draining node refusing a new session) is retried
 * on another server (`option redispatch`, `retry-on`). Verified with HAProxy 2.6. Its stats page
 * tells tests each server's state and the retry counters.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, portIsFree } from './ports.ts';
import { defaultGroup, findExecutable, type ProcessGroup, type TrackedProcess } from './processes.ts';
import { tail, waitFor } from './wait.ts';

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
  /** The session cookie's name. @default 'SESSIONID' */
  readonly cookieName?: string;
  /** Health check period in ms (a node is taken out after 2 failed checks). @default 500 */
  readonly checkIntervalMs?: number;
  /**
   * Route a request to the node its session cookie names; false: plain round-robin (read-your-writes
   * keeps a session consistent without stickiness). @default true
   */
  readonly sticky?: boolean;
}

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** The haproxy.cfg text. */
export function haproxyConfig(options: HaproxyConfigOptions): string {
  const cookie = options.cookieName ?? 'SESSIONID';
  if (!TOKEN.test(cookie)) throw new Error(`cookie name "${cookie}" is not a token`);
  for (const server of options.servers)
    if (!TOKEN.test(server.node)) throw new Error(`node id "${server.node}" is not a token`);
  const inter = options.checkIntervalMs ?? 500;
  const lines = [
    '# Written by the session-replication launcher.',
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
    ...(options.sticky === false
      ? []
      : options.servers.map((s) => `  use-server ${s.node} if { req.cook(${cookie}) -m end .${s.node} }`)),
    ...options.servers.map((s) => `  server ${s.node} ${s.host}:${s.port} check`),
  ];
  if (options.statsPort !== undefined) {
    lines.push(
      '',
      'frontend stats',
      `  bind ${options.bindHost}:${options.statsPort}`,
      '  stats enable',
      '  stats uri /',
      '  stats refresh 2s',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** A running HAProxy. */
export interface HaproxyHandle {
  /** http://HOST:PORT of the load balancer. */
  readonly url: string;
  readonly port: number;
  /** The stats page (`/`, CSV at `/;csv`). */
  readonly statsUrl: string;
  readonly pid: number;
  readonly process: TrackedProcess;
  readonly configFile: string;
  /** Server name -> HAProxy status (UP, DOWN, MAINT, "UP 1/2", ...). */
  serverStates(): Promise<Record<string, string>>;
  /** The backend's retry and redispatch counters (requests HAProxy sent again, and to another server). */
  backendCounters(): Promise<{ retries: number; redispatches: number }>;
  /** Waits until `node` has status `state` in HAProxy; resolves with the time it took. */
  waitForServer(node: string, state: 'UP' | 'DOWN', timeoutMs?: number): Promise<number>;
  /** SIGTERM, SIGKILL after 2 s, then removes the directory it created. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startHaproxy}. */
export interface StartHaproxyOptions {
  readonly servers: readonly HaproxyServer[];
  /** @default '127.0.0.1' */
  readonly bindHost?: string;
  /** Preferred port; when taken (or 0), a free one is used. @default 0 */
  readonly port?: number;
  /** @default 'SESSIONID' */
  readonly cookieName?: string;
  /** Route by the cookie's route (see `HaproxyConfigOptions.sticky`). @default true */
  readonly sticky?: boolean;
  /** Directory for haproxy.cfg and its log, kept on stop. @default a temporary directory, removed on stop */
  readonly dir?: string;
  /** @default haproxy on PATH (or /usr/sbin) */
  readonly binary?: string;
  /** The group that owns the process. @default the default group */
  readonly group?: ProcessGroup;
  /** Stop waiting for start-up when this aborts. */
  readonly signal?: AbortSignal;
}

/** The haproxy binary, or undefined when it is not installed. */
export function haproxyBinary(): string | undefined {
  return findExecutable('haproxy');
}

/**
 * Writes haproxy.cfg and runs `haproxy -db` (foreground, one process) until the load balancer answers
 * `/readyz` with 200. A port taken in the meantime is retried with another free one.
 */
export async function startHaproxy(options: StartHaproxyOptions): Promise<HaproxyHandle> {
  const binary = options.binary ?? haproxyBinary();
  if (!binary) throw new Error('haproxy not installed: apt-get install haproxy');
  const group = options.group ?? defaultGroup();
  const bindHost = options.bindHost ?? '127.0.0.1';
  const host = bindHost === '0.0.0.0' || bindHost === '::' ? '127.0.0.1' : bindHost;
  const { dir, remove: removeDir } = group.workDir(options.dir, 'haproxy-');
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const preferred = options.port ?? 0;
    const port =
      attempt === 0 && preferred > 0 && (await portIsFree(preferred, bindHost)) ? preferred : await freePort(bindHost);
    const statsPort = await freePort(bindHost);
    const configFile = join(dir, 'haproxy.cfg');
    writeFileSync(
      configFile,
      haproxyConfig({
        bindHost,
        port,
        statsPort,
        servers: options.servers,
        ...(options.cookieName ? { cookieName: options.cookieName } : {}),
        ...(options.sticky === false ? { sticky: false } : {}),
      }),
    );
    const proc = group.spawn(binary, ['-db', '-f', configFile], {
      name: 'haproxy',
      maxOutputChars: 64 * 1024,
      logFile: join(dir, 'haproxy.log'),
    });
    const url = `http://${host}:${port}`;
    const statsUrl = `http://${host}:${statsPort}/`;
    try {
      await waitFor(
        'HAProxy to route /readyz to a node',
        async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200,
        {
          timeoutMs: 30_000,
          intervalMs: 100,
          process: proc,
          ...(options.signal ? { signal: options.signal } : {}),
        },
      );
    } catch (error) {
      lastError = error as Error;
      await proc.stop(2000);
      if (lastError.name === 'AbortError' || !/exited/.test(lastError.message)) {
        removeDir();
        if (lastError.name === 'AbortError') throw lastError;
        throw new Error(`${lastError.message.split('\n')[0]}\nhaproxy output:\n${tail(proc.output())}`);
      }
      continue;
    }
    const stop = async () => {
      await proc.stop(2000);
      removeDir();
    };
    return haproxyHandle({ url, port, statsUrl, proc, configFile, stop });
  }
  removeDir();
  throw lastError ?? new Error('HAProxy did not start');
}

function haproxyHandle(parts: {
  url: string;
  port: number;
  statsUrl: string;
  proc: TrackedProcess;
  configFile: string;
  stop(): Promise<void>;
}): HaproxyHandle {
  /** Rows of the backend `nodes` in the stats CSV, by server name (BACKEND for the backend's own row). */
  const statsRows = async () => {
    const csv = await (await fetch(`${parts.statsUrl};csv`, { signal: AbortSignal.timeout(2000) })).text();
    const [header = '', ...rows] = csv.trim().split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const byServer: Record<string, Record<string, string>> = {};
    for (const row of rows) {
      const cells = row.split(',');
      const record = Object.fromEntries(columns.map((column, i) => [column, cells[i] ?? '']));
      if (record.pxname === 'nodes' && record.svname) byServer[record.svname] = record;
    }
    return byServer;
  };
  const serverStates = async () => {
    const states: Record<string, string> = {};
    for (const [server, record] of Object.entries(await statsRows()))
      if (server !== 'BACKEND') states[server] = record.status ?? '';
    return states;
  };
  return {
    url: parts.url,
    port: parts.port,
    statsUrl: parts.statsUrl,
    pid: parts.proc.pid,
    process: parts.proc,
    configFile: parts.configFile,
    serverStates,
    async backendCounters() {
      const backend = (await statsRows()).BACKEND ?? {};
      return { retries: Number(backend.wretr ?? 0), redispatches: Number(backend.wredis ?? 0) };
    },
    async waitForServer(node, state, timeoutMs = 20_000) {
      const started = Date.now();
      await waitFor(`HAProxy to see ${node} ${state}`, async () => (await serverStates())[node] === state, {
        timeoutMs,
        intervalMs: 50,
      });
      return Date.now() - started;
    },
    stop: parts.stop,
  };
}
