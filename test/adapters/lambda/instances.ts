// Owns: Lambda execution environments of a user's app as separate Node processes (tests freeze them with SIGSTOP, as Lambda does).
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { waitFor } from '../../kit/index.ts';
import { functionUrlEvent, nextCookies, restApiEvent } from './events.ts';

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
export async function startInstance(
  script: string,
  options: { cwd: string; env: Record<string, string>; execArgv?: string[] },
): Promise<LambdaInstance> {
  const child = fork(script, [], {
    cwd: options.cwd,
    execArgv: options.execArgv ?? [],
    env: { PATH: process.env.PATH ?? '', NODE_NO_WARNINGS: '1', ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pending = new Map<number, (reply: Record<string, unknown>) => void>();
  let next = 0;
  const node = await new Promise<string>((resolve, reject) => {
    child.on('message', (raw) => {
      const message = raw as Record<string, unknown>;
      if (message.ready) resolve(message.node as string);
      else pending.get(message.id as number)?.(message);
    });
    void exited.then((code) => reject(new Error(`lambda instance exited with ${code} before it was ready`)));
  });
  const state = () => readFileSync(`/proc/${child.pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
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
    frozen: async () => void (await waitFor('the instance to be stopped', () => state() === 'T', { timeoutMs: 5000 })),
    freeze: () => void child.kill('SIGSTOP'),
    thaw: () => void child.kill('SIGCONT'),
    kill: () => void child.kill('SIGKILL'),
  };
}

const items = (result: { body: string }) => (JSON.parse(result.body) as { items: string[] }).items;
const add = (item: string, cookies: string[] = []) =>
  functionUrlEvent('POST', '/cart/items', { cookies, body: JSON.stringify({ item }) });

/**
 * Two environments of the cart app (test/package/fixtures/lambda-app): a write on `a` is read on `b`
 * while `a` is frozen the moment it answered (flush before freeze); `b` writes while `a` is frozen,
 * and the thawed `a`, asked with the client's cookies (the session version `b` set), serves the newer
 * value (read-your-writes: the catch-up before serving); with the older version it would not need to.
 */
export async function expectFreezeSafe(a: LambdaInstance, b: LambdaInstance): Promise<void> {
  // a answers and Lambda freezes it at once: the write must already have left a.
  const { result: first } = await a.invoke(add('book'), { freezeAfter: true });
  expect(items(first)).toEqual(['book']);
  let cookies = nextCookies([], first);
  await a.frozen();
  // Read at b while a stays frozen (REST API event: the cookies in the Cookie header).
  const { result: atB, stats: statsB } = await b.invoke(restApiEvent('GET', '/cart/items', { cookies }));
  expect(items(atB)).toEqual(['book']);
  expect(statsB.catchUpsFailed).toBe(0);
  cookies = nextCookies(cookies, atB);

  // b writes while a is frozen; a thaws and is asked with the client's cookies: it serves the newer value.
  const { result: second } = await b.invoke(add('pen', cookies));
  expect(items(second)).toEqual(['book', 'pen']);
  cookies = nextCookies(cookies, second);
  a.thaw();
  const { result: thawed, stats: statsA } = await a.invoke(functionUrlEvent('GET', '/cart/items', { cookies }));
  expect(items(thawed)).toEqual(['book', 'pen']);
  expect(statsA.catchUpsFailed).toBe(0);
  expect(statsA.connections).toBe(1);
}
