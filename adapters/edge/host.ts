/**
 * A member node hosted by a long-lived process (Deno, Bun): start the node once the HTTP server
 * listens, leave the cluster gracefully on SIGTERM/SIGINT, and a `close()` for the caller. The
 * runtime adapters supply the server and the signal API; nothing here names a runtime.
 */
import type { ClusterNode } from '../../lib/index.ts';
import type { EdgeMember } from './member.ts';

/** The signals a hosted member leaves the cluster on. */
export const TERMINATION_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** The HTTP server a runtime started for the member. */
export interface MemberServer {
  /** Base URL the server listens at, e.g. `http://127.0.0.1:8000`. */
  readonly url: string;
  /** Stops accepting connections and resolves when open requests finished. */
  shutdown(): Promise<void>;
}

/** A runtime's signal API. */
export interface SignalApi {
  listen(signal: (typeof TERMINATION_SIGNALS)[number], handler: () => void): void;
  unlisten(signal: (typeof TERMINATION_SIGNALS)[number], handler: () => void): void;
  exit(code: number): void;
}

/** Options of a member node served by a long-lived process. */
export interface HostOptions {
  /** Leave the cluster and exit 0 on SIGTERM or SIGINT. @default true */
  handleSignals?: boolean;
  /** How long `close()` waits for open requests before leaving the cluster anyway. @default 3000 */
  shutdownTimeoutMs?: number;
}

/** A member node serving HTTP in this process. */
export interface ServedMember {
  /** Base URL the server listens at. */
  readonly url: string;
  /** The cluster node once the NATS connection is up. */
  readonly node: ClusterNode | undefined;
  /** Resolves when the node has joined and finished state transfer (the node starts by itself; this only waits). */
  ready(): Promise<ClusterNode>;
  /** Stops taking requests, leaves the cluster gracefully and closes the NATS connection (idempotent). */
  close(): Promise<void>;
}

/** `http://host:port`, with an IPv6 host in brackets. */
export function httpUrl(hostname: string, port: number): string {
  return `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}`;
}

/** Starts `member` behind `server` and wires graceful shutdown. */
export function hostMember(
  member: EdgeMember,
  server: MemberServer,
  signals: SignalApi | undefined,
  options: HostOptions,
): ServedMember {
  // Failures are logged by the member; the next request (or `ready()`) tries again.
  member.start(server.url).catch(() => undefined);
  let closing: Promise<void> | undefined;
  const onSignal = () => {
    void close().finally(() => signals?.exit(0));
  };
  function close(): Promise<void> {
    closing ??= (async () => {
      for (const signal of TERMINATION_SIGNALS) signals?.unlisten(signal, onSignal);
      // Requests still running after the timeout (or idle keep-alive connections) do not hold up the leave.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.shutdownTimeoutMs ?? 3000)));
      await Promise.race([server.shutdown().catch(() => undefined), timeout]);
      clearTimeout(timer);
      await member.stop();
    })();
    return closing;
  }
  if (options.handleSignals !== false) for (const signal of TERMINATION_SIGNALS) signals?.listen(signal, onSignal);
  return {
    url: server.url,
    get node() {
      return member.node;
    },
    ready: () => member.start(server.url),
    close,
  };
}

/**
 * The `export default` object of a module-worker entry (`deno serve`, `bun run`): the runtime owns
 * the HTTP server, the node starts on the first request (which also tells it its base URL), and
 * SIGTERM or SIGINT make it leave the cluster gracefully and exit 0.
 */
export function lazilyHosted(
  member: EdgeMember,
  signals: SignalApi | undefined,
  options: HostOptions,
): { fetch(request: Request): Promise<Response> } {
  let watching = false;
  const onSignal = () => {
    void member
      .stop()
      .catch(() => undefined)
      .finally(() => signals?.exit(0));
  };
  return {
    fetch(request) {
      if (!watching && options.handleSignals !== false) {
        watching = true;
        for (const signal of TERMINATION_SIGNALS) signals?.listen(signal, onSignal);
      }
      return member.fetch(request);
    },
  };
}
