/**
 * Child processes owned by a group: output captured (a bounded tail, optionally a log file and a
 * line callback), stopped by PID with SIGTERM then SIGKILL, and killed when the owner exits. The
 * `cluster` command uses its own group with a watchdog (see `watchdog.ts`); tests and scripts use the
 * default group, which kills its children when this process exits, is signalled, or loses its
 * parent's IPC channel (a test worker whose runner died).
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { tail } from './wait.ts';
import type { Watchdog } from './watchdog.ts';

/** How a process ended: `code` is null when a signal killed it; `error` is set when spawning or I/O failed. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** Options of {@link ProcessGroup.spawn}: Node's spawn options (stdio is always piped) plus these. */
export interface SpawnTrackedOptions extends Omit<SpawnOptions, 'stdio'> {
  /** Label in messages. @default the command's base name */
  name?: string;
  /** Keep only the last N characters of stdout and stderr. @default 1 MiB */
  maxOutputChars?: number;
  /** Mirror the output to this process's stderr. @default env KIT_ECHO=1 */
  echo?: boolean;
  /** Append every output chunk to this file. */
  logFile?: string;
  /** Called with each complete, non-blank output line. */
  onLine?: (line: string) => void;
}

/** A child process owned by a group. */
export interface TrackedProcess {
  /** Node's ChildProcess. */
  readonly child: import('node:child_process').ChildProcess;
  readonly pid: number;
  /** Label in messages. */
  readonly name: string;
  /** The log file, when one was asked for. */
  readonly logFile?: string;
  /** stdout and stderr so far, interleaved in arrival order (the last `maxOutputChars`). */
  output(): string;
  /** Resolves with the first match of `pattern` in the output; rejects on timeout or when the process exits first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` (default SIGTERM); false when the process is already gone. */
  kill(signal?: NodeJS.Signals): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 3000); resolves once it exited. Idempotent. */
  stop(graceMs?: number): Promise<ExitInfo>;
  /** Resolves once the process exited and its output drained. */
  readonly exited: Promise<ExitInfo>;
  /** True once the process exited. */
  readonly hasExited: boolean;
}

/** Options every server launcher takes (nats-server, DynamoDB Local). */
export interface LaunchOptions {
  /** The group that owns the server's process. @default the default group */
  group?: ProcessGroup;
  /** Append the server's output to this file. */
  logFile?: string;
  /** Stop waiting for start-up when this aborts. */
  signal?: AbortSignal;
}

/** A server a launcher started (nats-server, DynamoDB Local); each handle adds its addresses and its `stop()`. */
export interface LaunchedServer {
  /** The client port. */
  port: number;
  pid: number;
  process: TrackedProcess;
  /** Sends a signal (default SIGTERM) without cleanup, e.g. SIGSTOP to make it unreachable for a while; call stop() later. */
  kill(signal?: NodeJS.Signals): boolean;
}

/** The processes (and temporary directories) of one owner. */
export class ProcessGroup {
  readonly #children: TrackedProcess[] = [];
  readonly #live = new Set<TrackedProcess>();
  readonly #dirs = new Set<string>();
  readonly #watchdog: Watchdog | undefined;
  readonly #detached: boolean;

  /**
   * With a `watchdog`, every child's PID is reported to it, so they die with this process even on
   * SIGKILL. With `detached`, each child gets its own process group (a terminal's Ctrl-C reaches only
   * this process, which can then stop the children in order).
   */
  constructor(options: { watchdog?: Watchdog; detached?: boolean } = {}) {
    this.#watchdog = options.watchdog;
    this.#detached = options.detached ?? false;
  }

  /** Every child started so far, in start order. */
  get children(): readonly TrackedProcess[] {
    return this.#children;
  }

  /** Children that have not exited yet. */
  live(): TrackedProcess[] {
    return [...this.#live];
  }

  /** Spawns `command args` with piped output; throws when the command cannot be spawned. */
  spawn(command: string, args: readonly string[] = [], options: SpawnTrackedOptions = {}): TrackedProcess {
    const {
      name = command.split('/').pop() ?? command,
      maxOutputChars = 1 << 20,
      echo = process.env.KIT_ECHO === '1',
      logFile,
      onLine,
      ...spawnOptions
    } = options;
    const child = spawn(command, [...args], {
      detached: this.#detached,
      ...spawnOptions,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) {
      // The 'error' event follows; without a listener it would be thrown.
      child.once('error', () => undefined);
      throw new Error(
        `failed to spawn ${command}: not found or not executable (cwd ${String(spawnOptions.cwd ?? process.cwd())})`,
      );
    }
    const pid = child.pid;
    this.#watchdog?.watch(pid);
    let log: WriteStream | undefined;
    if (logFile) {
      log = createWriteStream(logFile, { flags: 'a' });
      log.on('error', () => undefined);
    }
    let buffer = '';
    let partial = '';
    const watchers = new Set<() => void>();
    const append = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (echo) process.stderr.write(`[${name}] ${text}`);
      log?.write(text);
      buffer += text;
      if (buffer.length > maxOutputChars) buffer = buffer.slice(buffer.length - maxOutputChars);
      if (onLine) {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim() !== '') onLine(line);
      }
      for (const watcher of watchers) watcher();
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);

    let done = false;
    let spawnError: Error | undefined;
    let resolveExit!: (exit: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((resolve) => (resolveExit = resolve));
    const finish = (exit: ExitInfo) => {
      if (done) return;
      done = true;
      this.#live.delete(handle);
      this.#watchdog?.unwatch(pid);
      // Give the pipes a moment to drain before the log closes.
      setTimeout(() => log?.end(), 50).unref();
      resolveExit(exit);
      for (const watcher of watchers) watcher();
    };
    child.on('error', (error) => {
      spawnError = error;
      buffer += `\n[${name}] ${error.message}\n`;
    });
    // 'close' waits for stdio to drain; fall back to 'exit' in case a grandchild keeps the pipes open.
    child.on('close', (code, signal) => finish({ code, signal, ...(spawnError ? { error: spawnError } : {}) }));
    child.on('exit', (code, signal) => void setTimeout(() => finish({ code, signal }), 500).unref());

    const handle: TrackedProcess = {
      child,
      pid,
      name,
      ...(logFile ? { logFile } : {}),
      exited,
      get hasExited() {
        return done;
      },
      output: () => buffer,
      kill: (signal = 'SIGTERM') => !done && child.kill(signal),
      async stop(graceMs = 3000) {
        if (done) return exited;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      },
      waitForOutput(pattern, timeoutMs = 10_000) {
        return new Promise<RegExpMatchArray>((resolve, reject) => {
          const settle = (action: () => void) => {
            clearTimeout(timer);
            watchers.delete(check);
            action();
          };
          const check = () => {
            const match = buffer.match(pattern);
            if (match) settle(() => resolve(match));
            else if (done)
              settle(() =>
                reject(new Error(`${name} (pid ${pid}) exited before printing ${pattern}; output:\n${tail(buffer)}`)),
              );
          };
          const timer = setTimeout(
            () =>
              settle(() =>
                reject(
                  new Error(
                    `timed out after ${timeoutMs}ms waiting for ${name} to print ${pattern}; output:\n${tail(buffer)}`,
                  ),
                ),
              ),
            timeoutMs,
          );
          watchers.add(check);
          check();
        });
      },
    };
    this.#children.push(handle);
    this.#live.add(handle);
    return handle;
  }

  /** Removes `dir` when this process exits (or on `killAll`), unless the returned function is called first. */
  removeDirOnExit(dir: string): () => void {
    this.#dirs.add(dir);
    return () => void this.#dirs.delete(dir);
  }

  /**
   * The working directory of a server: `given` (kept), or a fresh temporary one named `prefix…` that
   * is removed when this process exits; `remove()` removes a directory it created now.
   */
  workDir(given: string | undefined, prefix: string): { dir: string; remove(): void } {
    if (given !== undefined) return { dir: given, remove: () => undefined };
    const dir = mkdtempSync(join(tmpdir(), prefix));
    const keep = this.removeDirOnExit(dir);
    return {
      dir,
      remove: () => {
        rmSync(dir, { recursive: true, force: true });
        keep();
      },
    };
  }

  /** SIGKILLs every live child and removes the registered directories, at once (for exit paths). */
  killAll(): void {
    for (const child of this.#live) child.kill('SIGKILL');
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }

  /** Stops every live child (SIGTERM, then SIGKILL after `graceMs`) and waits for all of them. */
  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all(this.live().map((child) => child.stop(graceMs)));
  }
}

const DEFAULT_GROUP = Symbol.for('session-replication.launch.default-group');

/**
 * The group of tests and scripts, created once per process (even if this module is loaded twice):
 * its children are killed when this process exits, gets SIGINT/SIGTERM/SIGHUP, or loses its IPC parent.
 */
export function defaultGroup(): ProcessGroup {
  const holder = globalThis as { [DEFAULT_GROUP]?: ProcessGroup };
  let group = holder[DEFAULT_GROUP];
  if (group) return group;
  const created = new ProcessGroup();
  holder[DEFAULT_GROUP] = group = created;
  const killAll = () => created.killAll();
  process.on('exit', killAll);
  // In a forked test worker, losing the IPC channel means the runner died: do not outlive it.
  if (process.connected) process.once('disconnect', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      // Re-raise with the default disposition unless someone else handles the signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
  return group;
}

/** Spawns a process in the default group (see {@link ProcessGroup.spawn}). */
export function spawnTracked(
  command: string,
  args: readonly string[] = [],
  options: SpawnTrackedOptions = {},
): TrackedProcess {
  return defaultGroup().spawn(command, args, options);
}

/** The default group's processes that have not exited yet. */
export function trackedProcesses(): TrackedProcess[] {
  return defaultGroup().live();
}

/** Stops every live process of the default group and waits for all of them. */
export function stopAllTracked(graceMs = 3000): Promise<void> {
  return defaultGroup().stopAll(graceMs);
}

/** Removes `dir` when this process exits, unless the returned function is called first (default group). */
export function removeDirOnExit(dir: string): () => void {
  return defaultGroup().removeDirOnExit(dir);
}

/** The absolute path of `command` on PATH (plus /usr/local/sbin, /usr/sbin and /sbin, where Debian puts servers), or undefined. */
export function findExecutable(command: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Keep looking.
    }
  }
  return undefined;
}
