/**
 * `session-replication/bun`: the user's Hono app as a full cluster member on Bun, over NATS WebSocket.
 *
 * ```ts
 * const node = await serveBun(app, { nats: { servers: 'wss://nats.example.com' }, cluster: { cluster: 'shop', node: 'fra1' }, port: 3000 });
 * ```
 */
import { UnsupportedRuntimeError } from '../../lib/errors.ts';
import { hostMember, httpUrl, type HostOptions, type ServedMember, type SignalApi } from '../edge/host.ts';
import { createEdgeMember, type EdgeMemberOptions, type MemberApp } from '../edge/member.ts';

export * from '../edge/exports.ts';

/** The part of Bun's API this adapter uses (declared here so the library needs no Bun types). */
interface BunNamespace {
  serve(options: { hostname?: string; port?: number; fetch(request: Request): Response | Promise<Response> }): {
    readonly hostname: string;
    readonly port: number;
    stop(closeActiveConnections?: boolean): Promise<void>;
  };
}

/** The part of Bun's `process` this adapter uses. */
interface BunProcess {
  on(signal: string, handler: () => void): void;
  off(signal: string, handler: () => void): void;
  exit(code?: number): never;
}

/** Options of `serveBun`: the member node's options, where to listen, and shutdown. */
export interface BunServeOptions extends EdgeMemberOptions, HostOptions {
  /** Port to listen on (0: any free port). @default 3000 (Bun's default) */
  port?: number;
  /** Address to listen on. @default "0.0.0.0" (Bun's default) */
  hostname?: string;
}

/**
 * Serves `app` with `Bun.serve` as a member node: listens, then connects to NATS over WebSocket,
 * joins the cluster and runs state transfer (requests answer 503 until the connection is up). On
 * SIGTERM or SIGINT it stops taking requests, leaves the cluster gracefully and exits 0.
 */
export async function serveBun(app: MemberApp, options: BunServeOptions): Promise<ServedMember> {
  const bun = (globalThis as { Bun?: BunNamespace }).Bun;
  if (!bun?.serve) throw new UnsupportedRuntimeError('session-replication/bun', 'Bun');
  const member = createEdgeMember(app, options);
  const server = bun.serve({
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    fetch: (request) => member.fetch(request),
  });
  const process = (globalThis as { process?: BunProcess }).process;
  const signals: SignalApi | undefined = process && {
    listen: (signal, handler) => process.on(signal, handler),
    unlisten: (signal, handler) => process.off(signal, handler),
    exit: (code) => process.exit(code),
  };
  return hostMember(
    member,
    { url: httpUrl(server.hostname, server.port), shutdown: () => server.stop() },
    signals,
    options,
  );
}
