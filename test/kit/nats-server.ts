// Owns: starting throwaway nats-server processes (random loopback ports, temp dir) for tests.
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { removeDirOnExit, spawnTracked, tail, type TrackedProcess } from "./processes.ts";
import { waitFor } from "./wait.ts";

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Enable JetStream with its store inside the server's temp dir. */
  jetstream?: boolean;
  /** Enable a plain (no TLS) WebSocket listener. */
  websocket?: boolean;
  /** Client port (default: random). Pass a previous server's port to restart "the same" server. */
  port?: number;
  /** WebSocket port (default: random). */
  wsPort?: number;
  /** Appended verbatim to the generated config. */
  extraConfig?: string;
  /** How long to wait for the server to write its ports file (default 15000 ms). */
  timeoutMs?: number;
}

/** A running nats-server owned by a test. */
export interface NatsServerHandle {
  /** Client URL, e.g. nats://127.0.0.1:41234. */
  url: string;
  /** WebSocket URL when started with `websocket: true`. */
  wsUrl?: string;
  /** Client port. */
  port: number;
  /** OS process id. */
  pid: number;
  /** Temp dir holding the config, ports file and JetStream store (removed by stop()). */
  dir: string;
  /** The tracked process (output(), exited, ...). */
  process: TrackedProcess;
  /** SIGTERM, SIGKILL after 3 s, then removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGTERM) without cleanup; call stop() later to remove the dir. */
  kill(signal?: NodeJS.Signals): boolean;
}

/** Absolute path of `nats-server` on PATH, or a clear error telling how to install it. */
export function natsServerBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "nats-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* keep looking */
    }
  }
  throw new Error("nats-server not found on PATH: apt-get install nats-server");
}

/** Starts a nats-server on 127.0.0.1 with random ports and resolves once its ports file reports them. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const bin = natsServerBinary();
  const dir = mkdtempSync(join(tmpdir(), "nats-test-"));
  const keepDir = removeDirOnExit(dir);
  const conf = join(dir, "nats.conf");
  const lines = [`listen: "127.0.0.1:${opts.port ?? -1}"`];
  if (opts.jetstream) lines.push(`jetstream { store_dir: ${JSON.stringify(join(dir, "js"))} }`);
  if (opts.websocket) lines.push(`websocket { listen: "127.0.0.1:${opts.wsPort ?? -1}", no_tls: true }`);
  if (opts.extraConfig) lines.push(opts.extraConfig);
  writeFileSync(conf, lines.join("\n") + "\n");

  let proc: TrackedProcess;
  try {
    proc = spawnTracked(bin, ["-c", conf, "--ports_file_dir", dir], { name: "nats-server", maxOutputChars: 64 * 1024 });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    keepDir();
    throw e;
  }
  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  const stop = async () => {
    await proc.stop(3000);
    rmSync(dir, { recursive: true, force: true });
    keepDir();
  };

  type Ports = { nats?: string[]; websocket?: string[] };
  const earlyExit = proc.exited.then((x): never => {
    throw new Error(`nats-server exited early (code ${x.code}, signal ${x.signal})`);
  });
  earlyExit.catch(() => {}); // only meaningful while racing below
  let ports: Ports;
  try {
    ports = await Promise.race([
      waitFor(
        "nats-server ports file",
        () => {
          const p = JSON.parse(readFileSync(portsFile, "utf8")) as Ports;
          return p.nats?.[0] && (!opts.websocket || p.websocket?.[0]) ? p : undefined;
        },
        { timeoutMs: opts.timeoutMs ?? 15000 },
      ),
      earlyExit,
    ]);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\nconfig:\n${lines.join("\n")}\nnats-server output:\n${tail(proc.output())}`);
  }

  const url = ports.nats![0]!;
  return {
    url,
    ...(ports.websocket?.[0] ? { wsUrl: ports.websocket[0] } : {}),
    port: Number(new URL(url).port),
    pid: proc.pid,
    dir,
    process: proc,
    stop,
    kill: (signal = "SIGTERM") => proc.kill(signal),
  };
}
