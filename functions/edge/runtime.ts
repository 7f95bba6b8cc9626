/** What the edge entries need from their runtime, found through `globalThis` so the code stays runtime-neutral. */

/** The few Deno APIs the Deno entry uses (Deno's own types are not part of this project). */
export interface DenoApi {
  env: { toObject(): Record<string, string> };
  serve(
    options: { hostname?: string; port?: number; onListen?: (address: { hostname: string; port: number }) => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void> };
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code?: number): never;
}

/** Deno's namespace, when running on Deno. */
export function deno(): DenoApi | undefined {
  return (globalThis as { Deno?: DenoApi }).Deno;
}

/**
 * The environment as strings: `bindings` (a Workers-style `env` argument) over Deno's environment
 * (needs --allow-env) or `process.env` (Bun, Node). Non-string bindings are left out.
 */
export function runtimeEnv(bindings?: Readonly<Record<string, unknown>>): Record<string, string | undefined> {
  const base: Record<string, string | undefined> =
    deno()?.env.toObject() ?? (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
  const out: Record<string, string | undefined> = { ...base };
  for (const [key, value] of Object.entries(bindings ?? {})) if (typeof value === 'string') out[key] = value;
  return out;
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0: on Deno through `Deno.addSignalListener`, on
 * Bun (and Node) through `process.on`. Without either (an isolate) it does nothing: the platform
 * ends the isolate, and the other members drop this node when its heartbeats stop.
 */
export function onTermination(stop: () => Promise<unknown>): void {
  let stopping = false;
  const once = (exit: (code: number) => void) => () => {
    if (stopping) return;
    stopping = true;
    void stop()
      .catch(() => undefined)
      .finally(() => exit(0));
  };
  const denoApi = deno();
  if (denoApi) {
    const handler = once((code) => denoApi.exit(code));
    for (const signal of ['SIGTERM', 'SIGINT'] as const) denoApi.addSignalListener(signal, handler);
    return;
  }
  const proc = (globalThis as { process?: { on(signal: string, handler: () => void): void; exit(code: number): never } }).process;
  if (proc) {
    const handler = once((code) => proc.exit(code));
    for (const signal of ['SIGTERM', 'SIGINT']) proc.on(signal, handler);
  }
}
