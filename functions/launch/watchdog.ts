/**
 * A watchdog for a process group: a tiny detached Node process connected to the supervisor by IPC. The
 * supervisor tells it every child PID (and the temporary directory); when the IPC channel closes
 * without a `done` message (the supervisor was SIGKILLed or crashed), the watchdog stops those PIDs
 * (SIGTERM, SIGKILL after 5 s) and removes the directory, so nothing is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Runs in the watchdog process (`node -e`, CommonJS). */
const WATCHDOG_SOURCE = `
const fs = require('fs');
const pids = new Set();
let dir = '';
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.on('message', (m) => {
  if (m.watch) pids.add(m.watch);
  if (m.unwatch) pids.delete(m.unwatch);
  if (typeof m.removeDir === 'string') dir = m.removeDir;
  if (m.done) { pids.clear(); dir = ''; }
});
process.on('disconnect', () => {
  const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  for (const pid of pids) { try { process.kill(pid, 'SIGTERM'); } catch {} }
  const deadline = Date.now() + 5000;
  const check = () => {
    const left = [...pids].filter(alive);
    if (left.length > 0 && Date.now() < deadline) return setTimeout(check, 100);
    for (const pid of left) { try { process.kill(pid, 'SIGKILL'); } catch {} }
    if (dir) { try { fs.rmSync(dir, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  };
  check();
});
`;

/** The supervisor's side of the watchdog. */
export interface Watchdog {
  readonly pid: number;
  watch(pid: number): void;
  unwatch(pid: number): void;
  /** The directory to remove if the supervisor dies. */
  removeDirOnDeath(dir: string): void;
  /** Everything was cleaned up: the watchdog exits without touching anything. */
  done(): Promise<void>;
}

/** Starts the watchdog; it never keeps the supervisor's event loop alive. */
export function startWatchdog(): Watchdog {
  const child: ChildProcess = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  child.on('error', () => undefined);
  child.unref();
  (child.channel as { unref?: () => void } | undefined)?.unref?.();
  const send = (message: object) => {
    try {
      if (child.connected) child.send(message);
    } catch {
      // The watchdog is gone: nothing to tell it.
    }
  };
  return {
    pid: child.pid ?? 0,
    watch: (pid) => send({ watch: pid }),
    unwatch: (pid) => send({ unwatch: pid }),
    removeDirOnDeath: (dir) => send({ removeDir: dir }),
    done() {
      return new Promise<void>((resolve) => {
        if (!child.connected) return resolve();
        const close = () => {
          if (child.connected) child.disconnect();
          resolve();
        };
        try {
          child.send({ done: true }, close);
        } catch {
          close();
        }
      });
    },
  };
}
