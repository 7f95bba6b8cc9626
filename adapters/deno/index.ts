/**
 * `session-replication/deno`: the user's Hono app as a full cluster member on Deno, over NATS
 * WebSocket. Run with `--allow-net` (and `--allow-env` if the app reads its environment).
 *
 * ```ts
 * const node = await serveDeno(app, { nats: { servers: 'wss://nats.example.com' }, cluster: { cluster: 'shop', node: 'fra1' }, port: 8000 });
 * ```
 */
import { UnsupportedRuntimeError } from '../../lib/errors.ts';
import {
  hostMember,
  httpUrl,
  lazilyHosted,
  type HostOptions,
  type ServedMember,
  type SignalApi,
} from '../edge/host.ts';
import { createEdgeMember, type EdgeMemberOptions, type MemberApp } from '../edge/member.ts';

export * from '../edge/exports.ts';

/** The part of Deno's namespace this adapter uses (declared here so the library needs no Deno types). */
interface DenoNamespace {
  serve(
    options: { hostname?: string; port?: number; onListen?: (address: { hostname: string; port: number }) => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { readonly addr: { hostname: string; port: number }; shutdown(): Promise<void> };
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  removeSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void;
  exit(code?: number): never;
}

/** Options of `serveDeno`: the member node's options, where to listen, and shutdown. */
export interface DenoServeOptions extends EdgeMemberOptions, HostOptions {
  /** Port to listen on (0: any free port). @default 8000 (Deno's default) */
  port?: number;
  /** Address to listen on. @default "0.0.0.0" (Deno's default) */
  hostname?: string;
}

/** Deno's namespace; `UnsupportedRuntimeError` off Deno. */
function denoNamespace(): DenoNamespace {
  const deno = (globalThis as { Deno?: DenoNamespace }).Deno;
  if (!deno?.serve) throw new UnsupportedRuntimeError('session-replication/deno', 'Deno');
  return deno;
}

/** Deno's signal API in the shape the host uses. */
function denoSignals(deno: DenoNamespace): SignalApi {
  return {
    listen: (signal, handler) => deno.addSignalListener(signal, handler),
    unlisten: (signal, handler) => deno.removeSignalListener(signal, handler),
    exit: (code) => deno.exit(code),
  };
}

/**
 * Serves `app` with `Deno.serve` as a member node: listens, then connects to NATS over WebSocket,
 * joins the cluster and runs state transfer (requests answer 503 until the connection is up). On
 * SIGTERM or SIGINT it stops taking requests, leaves the cluster gracefully and exits 0.
 */
export async function serveDeno(app: MemberApp, options: DenoServeOptions): Promise<ServedMember> {
  const deno = denoNamespace();
  const member = createEdgeMember(app, options);
  let listened: () => void = () => undefined;
  const listening = new Promise<void>((resolve) => (listened = resolve));
  const server = deno.serve(
    {
      ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
      onListen: () => listened(),
    },
    (request) => member.fetch(request),
  );
  await listening;
  return hostMember(
    member,
    { url: httpUrl(server.addr.hostname, server.addr.port), shutdown: () => server.shutdown() },
    denoSignals(deno),
    options,
  );
}

/**
 * The default export for `deno serve` (which owns the HTTP server): `export default denoServeHandler(app, options)`.
 * The node starts on the first request; SIGTERM or SIGINT make it leave the cluster and exit 0.
 */
export function denoServeHandler(
  app: MemberApp,
  options: EdgeMemberOptions & HostOptions,
): { fetch(request: Request): Promise<Response> } {
  const deno = denoNamespace();
  return lazilyHosted(createEdgeMember(app, options), denoSignals(deno), options);
}
