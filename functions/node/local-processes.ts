/**
 * Child processes of the local cluster supervisor: spawned in their own process group (so a
 * terminal's Ctrl-C reaches only the supervisor, which stops them in order), output kept in a log
 * file and a short tail, stopped by PID with SIGTERM then SIGKILL. A watchdog process (see
 * `local-watchdog.ts`) learns every PID and stops them if the supervisor itself is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, type WriteStream } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Watchdog } from './local-watchdog.ts';

/** How a child ended. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What to start. */
export interface ChildSpec {
  /** Short label: `nats-server`, `n1`, `haproxy`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Every output line is appended here. */
  readonly logFile?: string;
  /** Called with each complete output line (for echoing node logs). */
  readonly onLine?: (line: string) => void;
}

/** A running (or ended) child. */
export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly process: ChildProcess;
  readonly logFile?: string;
  readonly exited: Promise<ChildExit>;
  /** True until the process exited. */
  readonly running: boolean;
  /** The last ~8 KB of output. */
  tail(): string;
  /** SIGTERM, SIGKILL after `graceMs`; resolves when it exited. */
  stop(graceMs: number): Promise<ChildExit>;
  /** Sends a signal to the process, if it still runs. */
  kill(signal: NodeJS.Signals): void;
}

const TAIL_CHARS = 8192;

/** The children of one supervisor. */
export class ProcessGroup {
  readonly #children: Child[] = [];

  constructor(private readonly watchdog?: Watchdog) {}

  /** Every child started so far, in start order. */
  get children(): readonly Child[] {
    return this.#children;
  }

  /** Starts a child; throws when the command cannot be spawned. */
  spawn(spec: ChildSpec): Child {
    const child = spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    if (child.pid === undefined) {
      // The 'error' event follows; without a listener it would be thrown.
      child.once('error', () => undefined);
      throw new Error(`cannot start ${spec.name}: ${spec.command} not found or not executable`);
    }
    const pid = child.pid;
    this.watchdog?.watch(pid);
    let log: WriteStream | undefined;
    if (spec.logFile) {
      log = createWriteStream(spec.logFile, { flags: 'a' });
      log.on('error', () => undefined);
    }
    let tail = '';
    let partial = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log?.write(text);
      tail = (tail + text).slice(-TAIL_CHARS);
      if (!spec.onLine) return;
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') spec.onLine(line);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    let running = true;
    const exited = new Promise<ChildExit>((resolve) => {
      child.once('error', (error) => {
        tail += `\n[${spec.name}] ${error.message}\n`;
      });
      child.once('exit', (code, signal) => {
        running = false;
        this.watchdog?.unwatch(pid);
        // Give the pipes a moment to drain before the log closes.
        setTimeout(() => log?.end(), 50).unref();
        resolve({ code, signal });
      });
    });
    const handle: Child = {
      name: spec.name,
      pid,
      process: child,
      ...(spec.logFile ? { logFile: spec.logFile } : {}),
      exited,
      get running() {
        return running;
      },
      tail: () => tail,
      kill(signal) {
        if (!running) return;
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      },
      async stop(graceMs) {
        if (!running) return exited;
        handle.kill('SIGTERM');
        const timer = setTimeout(() => handle.kill('SIGKILL'), graceMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      },
    };
    this.#children.push(handle);
    return handle;
  }

  /** SIGKILLs every child still running (a second Ctrl-C). */
  killAll(): void {
    for (const child of this.#children) child.kill('SIGKILL');
  }
}

/** The absolute path of `command` on PATH (plus /usr/sbin and /sbin, where Debian puts servers), or undefined. */
export function findExecutable(command: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
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

/** Rejects with `AbortError` once `signal` aborts. */
export function abortable(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/**
 * Polls `check` until it returns a value (not undefined), the child exits, `signal` aborts, or
 * `timeoutMs` passes; errors thrown by `check` count as "not yet" and are reported on timeout.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs: number; signal: AbortSignal; child?: Child; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let last = '';
  for (;;) {
    if (options.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    if (options.child && !options.child.running) {
      const exit = await options.child.exited;
      throw new Error(`${options.child.name} exited while waiting for ${what} (code ${exit.code}, signal ${exit.signal})\n${options.child.tail().trimEnd()}`);
    }
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}
