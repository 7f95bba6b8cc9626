// Owns: spawning child processes that are tracked, output-captured and always cleaned up.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { rmSync } from "node:fs";

/** How a tracked process ended. `code` is null when killed by a signal; `error` is set if spawning/IO failed. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** Options for {@link spawnTracked}: node's SpawnOptions (stdio is forced to pipes) plus kit options. */
export interface SpawnTrackedOptions extends Omit<SpawnOptions, "stdio"> {
  /** Label used in error messages (default: the command's basename). */
  name?: string;
  /** Keep only the last N characters of stdout+stderr (default 1 MiB). */
  maxOutputChars?: number;
  /** Mirror the child's output to this process's stderr (default: env KIT_ECHO=1). */
  echo?: boolean;
}

/** A child process owned by the test kit. */
export interface TrackedProcess {
  /** The underlying node ChildProcess. */
  readonly child: ChildProcess;
  /** OS process id. */
  readonly pid: number;
  /** Label used in error messages. */
  readonly name: string;
  /** stdout and stderr collected so far, interleaved in arrival order (tail only, see maxOutputChars). */
  output(): string;
  /** Resolves with the first match of `re` in the output; rejects on timeout (default 10000 ms) or if the process exits first. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` (default SIGTERM); returns false if the process is already gone. */
  kill(signal?: NodeJS.Signals): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 3000); resolves once the process has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves once the process has exited and its output is drained. */
  readonly exited: Promise<ExitInfo>;
  /** True once the process has exited. */
  readonly hasExited: boolean;
}

const REGISTRY = Symbol.for("session-replication.test-kit.tracked");
type Registry = { live: Set<TrackedProcess>; dirs: Set<string> };
const g = globalThis as unknown as { [REGISTRY]?: Registry };

/** Returns the per-process registry, installing exit/signal cleanup hooks the first time. */
function registry(): Registry {
  let reg = g[REGISTRY];
  if (reg) return reg;
  const created: Registry = { live: new Set(), dirs: new Set() };
  g[REGISTRY] = reg = created;
  const killAll = () => {
    for (const p of created.live) p.kill("SIGKILL");
    for (const d of created.dirs) rmSync(d, { recursive: true, force: true });
  };
  process.on("exit", killAll);
  // In a forked test worker, losing the IPC channel means the runner died: don't outlive it.
  if (process.connected) process.once("disconnect", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      killAll();
      // Re-raise with the default disposition unless someone else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
  return created;
}

/** Spawns `cmd args` with piped output, tracks it until exit, and kills it if the test process exits first. */
export function spawnTracked(cmd: string, args: readonly string[] = [], opts: SpawnTrackedOptions = {}): TrackedProcess {
  const { name = cmd.split("/").pop() ?? cmd, maxOutputChars = 1 << 20, echo = process.env.KIT_ECHO === "1", ...spawnOpts } = opts;
  const reg = registry();
  const child = spawn(cmd, args, { ...spawnOpts, stdio: ["ignore", "pipe", "pipe"] });
  let buf = "";
  const watchers = new Set<() => void>();
  let done = false;
  let handle: TrackedProcess | undefined; // assigned once spawning succeeded
  let spawnError: Error | undefined;

  const append = (chunk: Buffer) => {
    const s = chunk.toString("utf8");
    if (echo) process.stderr.write(`[${name}] ${s}`);
    buf += s;
    if (buf.length > maxOutputChars) buf = buf.slice(buf.length - maxOutputChars);
    for (const w of watchers) w();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);

  let resolveExit!: (e: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((r) => (resolveExit = r));
  const finish = (info: ExitInfo) => {
    if (done) return;
    done = true;
    if (handle) reg.live.delete(handle);
    resolveExit(info);
    for (const w of watchers) w();
  };
  child.on("error", (e) => {
    spawnError = e;
    buf += `\n[spawn error] ${e.message}\n`;
    if (child.pid === undefined || child.exitCode !== null) finish({ code: child.exitCode, signal: child.signalCode, error: e });
  });
  // 'close' waits for stdio to drain; fall back to 'exit' in case a grandchild keeps the pipes open.
  child.on("close", (code, signal) => finish({ code, signal, ...(spawnError ? { error: spawnError } : {}) }));
  child.on("exit", (code, signal) => {
    setTimeout(() => finish({ code, signal }), 500).unref();
  });

  if (child.pid === undefined) {
    throw new Error(`failed to spawn ${cmd}: not found or not executable (cwd ${String(spawnOpts.cwd ?? process.cwd())})`);
  }

  const tracked: TrackedProcess = {
    child,
    pid: child.pid,
    name,
    exited,
    get hasExited() {
      return done;
    },
    output: () => buf,
    kill: (signal = "SIGTERM") => !done && child.kill(signal),
    async stop(graceMs = 3000) {
      if (done) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    waitForOutput(re, timeoutMs = 10000) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const m = buf.match(re);
          if (m) return settle(() => resolve(m));
          if (done) return settle(() => reject(new Error(`${name} (pid ${child.pid}) exited before printing ${re}; output:\n${tail(buf)}`)));
        };
        const timer = setTimeout(
          () => settle(() => reject(new Error(`timed out after ${timeoutMs}ms waiting for ${name} to print ${re}; output:\n${tail(buf)}`))),
          timeoutMs,
        );
        const settle = (f: () => void) => {
          clearTimeout(timer);
          watchers.delete(check);
          f();
        };
        watchers.add(check);
        check();
      });
    },
  };
  handle = tracked;
  reg.live.add(tracked);
  return tracked;
}

/** Removes `dir` (recursively) when this test process exits, unless the returned function is called first. */
export function removeDirOnExit(dir: string): () => void {
  const { dirs } = registry();
  dirs.add(dir);
  return () => void dirs.delete(dir);
}

/** The last `n` characters of `s` (for error messages). */
export function tail(s: string, n = 4000): string {
  return s.length > n ? `...${s.slice(s.length - n)}` : s;
}

/** Processes spawned by {@link spawnTracked} in this test process that have not exited yet. */
export function trackedProcesses(): TrackedProcess[] {
  return [...registry().live];
}

/** Stops every live tracked process (SIGTERM, then SIGKILL after `graceMs`) and waits for all of them. */
export async function stopAllTracked(graceMs = 3000): Promise<void> {
  await Promise.all(trackedProcesses().map((p) => p.stop(graceMs)));
}
