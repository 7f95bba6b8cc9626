// Owns: Lambda execution environments of a user's app as separate Node processes (tests freeze them with SIGSTOP, as Lambda does).
import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { waitFor } from "../../kit/index.ts";

/** The counters a `LambdaSessionHandler` keeps. */
export interface InstanceStats {
  invocations: number;
  connections: number;
  catchUps: number;
  catchUpsRestarted: number;
  catchUpsFailed: number;
  sweeps: number;
}

/** What an invocation returned (payload 2.0 or 1.0 result). */
export interface InvokeResult {
  statusCode: number;
  body: string;
  headers?: Record<string, unknown>;
  cookies?: string[];
  multiValueHeaders?: Record<string, unknown[]>;
}

/** One execution environment in its own process. */
export interface LambdaInstance {
  readonly child: ChildProcess;
  readonly node: string;
  /** Invokes the handler; with `freezeAfter` the process stops itself once the handler returned and answers after `thaw()`. */
  invoke(event: unknown, options?: { freezeAfter?: boolean }): Promise<{ result: InvokeResult; stats: InstanceStats }>;
  /** Resolves once the process is stopped (state T in /proc). */
  frozen(): Promise<void>;
  freeze(): void;
  thaw(): void;
  kill(): void;
}

/** Starts `script` (the instance fixture) with `env` in `cwd`; resolves when its handler has started. */
export async function startInstance(script: string, options: { cwd: string; env: Record<string, string>; execArgv?: string[] }): Promise<LambdaInstance> {
  const child = fork(script, [], { cwd: options.cwd, execArgv: options.execArgv ?? [], env: { PATH: process.env.PATH ?? "", NODE_NO_WARNINGS: "1", ...options.env }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const pending = new Map<number, (reply: Record<string, unknown>) => void>();
  let next = 0;
  const node = await new Promise<string>((resolve, reject) => {
    child.on("message", (raw) => {
      const message = raw as Record<string, unknown>;
      if (message.ready) resolve(message.node as string);
      else pending.get(message.id as number)?.(message);
    });
    void exited.then((code) => reject(new Error(`lambda instance exited with ${code} before it was ready`)));
  });
  const state = () => readFileSync(`/proc/${child.pid}/stat`, "utf8").replace(/^.*\) /, "")[0];
  return {
    child,
    node,
    invoke: (event, { freezeAfter = false } = {}) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, (reply) => {
          pending.delete(id);
          if (reply.error) reject(new Error(String(reply.error)));
          else resolve({ result: reply.result as InvokeResult, stats: reply.stats as InstanceStats });
        });
        child.send({ id, event, freezeAfter });
      }),
    frozen: async () => void (await waitFor("the instance to be stopped", () => state() === "T", { timeoutMs: 5000 })),
    freeze: () => void child.kill("SIGSTOP"),
    thaw: () => void child.kill("SIGCONT"),
    kill: () => void child.kill("SIGKILL"),
  };
}
