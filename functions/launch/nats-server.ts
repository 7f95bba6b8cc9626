/**
 * Starting nats-server on loopback: random ports (read back from its ports file), optional JetStream,
 * a plain WebSocket listener and cluster routes, configuration and store in a directory it owns (or
 * one it is given).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  defaultGroup,
  findExecutable,
  type LaunchedServer,
  type LaunchOptions,
  type TrackedProcess,
} from './processes.ts';
import { tail, waitFor } from './wait.ts';

/** Routes joining this server to others (ports picked up front, since every peer needs them). */
export interface NatsRoutes {
  /** The cluster name the servers share. */
  name: string;
  /** This server's route port. */
  port: number;
  /** Every server's route port (this one's may be included). */
  routes: readonly number[];
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions extends LaunchOptions {
  /** JetStream with its store in the server's directory. @default false */
  jetstream?: boolean;
  /** A plain (no TLS) WebSocket listener. @default false */
  websocket?: boolean;
  /** Client listen address; the returned `url` stays on 127.0.0.1 when it is a wildcard. @default '127.0.0.1' */
  host?: string;
  /** Client port; pass a previous server's port to restart "the same" server. @default a random port */
  port?: number;
  /** WebSocket port. @default a random port */
  wsPort?: number;
  /** `server_name` (needed with routes and JetStream). */
  serverName?: string;
  /** Cluster routes to other servers. */
  cluster?: NatsRoutes;
  /** Appended verbatim to the generated configuration. */
  extraConfig?: string;
  /** Directory for the configuration, ports file, log and store, kept on stop. @default a temporary directory, removed on stop */
  dir?: string;
  /** The binary. @default nats-server on PATH */
  binary?: string;
  /** How long to wait for the ports file. @default 15000 */
  timeoutMs?: number;
}

/** A running nats-server. */
export interface NatsServerHandle extends LaunchedServer {
  /** Client URL, e.g. nats://127.0.0.1:41234. */
  url: string;
  /** WebSocket URL, with `websocket: true`. */
  wsUrl?: string;
  /** The directory holding the configuration, ports file and store. */
  dir: string;
  /** SIGTERM, SIGKILL after 3 s, then removes the directory it created. Idempotent. */
  stop(): Promise<void>;
}

/** The nats-server binary, or a clear error telling how to install it. */
export function natsServerBinary(): string {
  const binary = findExecutable('nats-server');
  if (!binary) throw new Error('nats-server not found on PATH: apt-get install nats-server');
  return binary;
}

/** The configuration text for `options` with its store under `dir`. */
export function natsServerConfig(options: NatsServerOptions, dir: string): string {
  const lines = [`listen: "${options.host ?? '127.0.0.1'}:${options.port ?? -1}"`];
  if (options.serverName) lines.push(`server_name: ${options.serverName}`);
  if (options.jetstream) lines.push(`jetstream { store_dir: ${JSON.stringify(join(dir, 'jetstream'))} }`);
  if (options.websocket) lines.push(`websocket { listen: "127.0.0.1:${options.wsPort ?? -1}", no_tls: true }`);
  if (options.cluster) {
    const routes = options.cluster.routes.map((port) => `nats-route://127.0.0.1:${port}`).join(', ');
    lines.push(
      `cluster { name: ${options.cluster.name}, listen: "127.0.0.1:${options.cluster.port}", routes: [${routes}] }`,
    );
  }
  if (options.extraConfig) lines.push(options.extraConfig);
  return `${lines.join('\n')}\n`;
}

/** Starts nats-server on 127.0.0.1 and resolves once its ports file names its listeners. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = options.binary ?? natsServerBinary();
  const group = options.group ?? defaultGroup();
  const { dir, remove: removeDir } = group.workDir(options.dir, 'nats-');
  const config = natsServerConfig(options, dir);
  const configFile = join(dir, 'nats-server.conf');
  writeFileSync(configFile, config);
  let proc: TrackedProcess;
  try {
    proc = group.spawn(binary, ['-c', configFile, '--ports_file_dir', dir], {
      name: 'nats-server',
      maxOutputChars: 64 * 1024,
      ...(options.logFile ? { logFile: options.logFile } : {}),
    });
  } catch (error) {
    removeDir();
    throw error;
  }
  const stop = async () => {
    await proc.stop(3000);
    removeDir();
  };
  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  type Ports = { nats?: string[]; websocket?: string[] };
  let ports: Ports;
  try {
    ports = await waitFor(
      'nats-server to report its ports',
      () => {
        const parsed = JSON.parse(readFileSync(portsFile, 'utf8')) as Ports;
        return parsed.nats?.[0] && (!options.websocket || parsed.websocket?.[0]) ? parsed : undefined;
      },
      { timeoutMs: options.timeoutMs ?? 15_000, process: proc, ...(options.signal ? { signal: options.signal } : {}) },
    );
  } catch (error) {
    await stop();
    if ((error as Error).name === 'AbortError') throw error;
    const message = (error as Error).message.replace(
      /^nats-server exited while waiting/,
      'nats-server exited early while waiting',
    );
    throw new Error(`${message.split('\n')[0]}\nconfig:\n${config}nats-server output:\n${tail(proc.output())}`);
  }
  const url = ports.nats!.find((candidate) => candidate.includes('//127.0.0.1:')) ?? ports.nats![0]!;
  return {
    url,
    ...(ports.websocket?.[0] ? { wsUrl: ports.websocket[0] } : {}),
    port: Number(new URL(url).port),
    pid: proc.pid,
    dir,
    process: proc,
    stop,
    kill: (signal = 'SIGTERM') => proc.kill(signal),
  };
}
