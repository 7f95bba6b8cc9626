// Owns: real faults for black-box tests: a TCP forwarder between one node and nats-server that can reset or
// black-hole the link, a network-namespace partition (root only) that drops packets on a real interface,
// pausing a node process, restarting the broker, and a DynamoDB endpoint nobody answers on.
//
// Which fault uses which mechanism:
//   reset            forwarder: both sides of every connection closed, new connections refused (listener closed)
//   silent partition network namespace + veth pair, host end set down (packets dropped, sockets left half-open);
//                    the forwarder's blackhole() (no byte forwarded, sockets left open) where netns is unavailable
//   stall            SIGSTOP / SIGCONT of the node process
//   broker restart   SIGKILL of nats-server, a new one on the same port (and store directory)
//   DynamoDB outage  DynamoDB Local stopped, or a node pointed at a port nobody listens on
import { execFileSync } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import {
  freePort,
  startNatsServer,
  type NatsServerHandle,
  type NatsServerOptions,
} from '../../functions/launch/index.ts';
import type { NodeHandle, StartNodeOptions } from './node-process.ts';

/** What a {@link TcpForwarder} does with traffic right now. */
export type LinkState = 'up' | 'reset' | 'blackhole';

/** A TCP forwarder on 127.0.0.1 between one node and its target (nats-server). */
export interface TcpForwarder {
  /** The forwarder's listening port. */
  readonly port: number;
  /** `nats://127.0.0.1:<port>`: the URL the node is given. */
  readonly url: string;
  readonly state: LinkState;
  /** Closes both sides of every connection and refuses new ones (the listener is closed). */
  reset(): Promise<void>;
  /** Stops forwarding: nothing is read or written, connections stay open, new ones are accepted and left hanging. */
  blackhole(): void;
  /** Forwards again: after a reset it listens again; after a blackhole the held connections resume, unless a side closed meanwhile (then both are closed). */
  heal(): Promise<void>;
  /** Closes everything for good. */
  close(): Promise<void>;
}

/**
 * Starts a forwarder from a free port on 127.0.0.1 to `target` (a port on 127.0.0.1, or host and port).
 * With `latencyMs`, what the node receives arrives that much later, in order (a slow link, or a node
 * whose deliveries lag behind).
 */
export async function startForwarder(
  target: number | { host: string; port: number },
  { latencyMs = 0 }: { latencyMs?: number } = {},
): Promise<TcpForwarder> {
  const to = typeof target === 'number' ? { host: '127.0.0.1', port: target } : target;
  const port = await freePort();
  const pairs = new Set<{ client: Socket; upstream: Socket; closedWhileHeld: boolean }>();
  let state: LinkState = 'up';
  let server: Server | undefined;

  const wire = (client: Socket) => {
    const upstream = connect(to.port, to.host);
    const pair = { client, upstream, closedWhileHeld: false };
    pairs.add(pair);
    const end = () => {
      if (state === 'blackhole') {
        // A silent partition: the other side learns nothing until the link heals.
        pair.closedWhileHeld = true;
        return;
      }
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
    client.pipe(upstream);
    downstream(pair);
    if (state === 'blackhole') hold(pair);
  };
  /** Upstream to the node: piped, or each chunk `latencyMs` late (pausing the upstream socket still holds it). */
  const downstream = (pair: { client: Socket; upstream: Socket }) => {
    if (latencyMs === 0) pair.upstream.pipe(pair.client);
    else if (pair.upstream.listenerCount('data') === 0)
      pair.upstream.on('data', (chunk: Buffer) => setTimeout(() => pair.client.write(chunk), latencyMs));
  };
  const hold = (pair: { client: Socket; upstream: Socket }) => {
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  };
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const created = createServer(wire);
      created.once('error', reject);
      created.listen(port, '127.0.0.1', () => {
        server = created;
        resolve();
      });
    });
  const closeListener = () =>
    new Promise<void>((resolve) => {
      const closing = server;
      server = undefined;
      if (!closing) return resolve();
      closing.close(() => resolve());
    });
  const destroyAll = () => {
    for (const pair of pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    pairs.clear();
  };

  await listen();
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get state() {
      return state;
    },
    async reset() {
      state = 'reset';
      destroyAll();
      await closeListener();
    },
    blackhole() {
      state = 'blackhole';
      for (const pair of pairs) hold(pair);
    },
    async heal() {
      const was = state;
      state = 'up';
      if (was === 'reset') return listen();
      for (const pair of [...pairs]) {
        if (pair.closedWhileHeld) {
          pair.client.destroy();
          pair.upstream.destroy();
          pairs.delete(pair);
          continue;
        }
        pair.client.pipe(pair.upstream);
        downstream(pair);
        pair.client.resume();
        pair.upstream.resume();
      }
    },
    async close() {
      state = 'reset';
      destroyAll();
      await closeListener();
    },
  };
}

/**
 * A network namespace for one node with two veth pairs to the host: one carries NATS (the one that
 * partitions), one carries the node's HTTP (so the test can still ask the node during a partition).
 */
export interface NetnsLink {
  /** The namespace name. */
  readonly ns: string;
  /** Prefix that runs a command inside the namespace (`StartNodeOptions.wrapper`). */
  readonly wrapper: readonly string[];
  /** The host's address on the NATS link: the node's `--nats nats://<natsHostIp>:<port>`. */
  readonly natsHostIp: string;
  /** The node's address on the HTTP link: its `--host`. */
  readonly httpIp: string;
  /** Drops every packet on the NATS link (the host end is set down): TCP connections stay half-open, nothing is reset. */
  partition(): void;
  /** Brings the NATS link back up. */
  heal(): void;
  /** Deletes the namespace and the veth pairs (idempotent). */
  dispose(): void;
}

/** Whether this process can create network namespaces (root and `ip` from iproute2). */
export function canUseNetns(): boolean {
  return process.getuid?.() === 0 && ipAvailable();
}

function ipAvailable(): boolean {
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * Creates a namespace with its two links. Throws when it cannot (not root, no `ip`, no namespaces):
 * a test that needs a silent partition fails rather than skipping.
 */
export function createNetnsLink(): NetnsLink {
  if (!canUseNetns())
    throw new Error(
      `a network-namespace partition needs root and iproute2 (uid ${process.getuid?.()}, ip ${ipAvailable() ? 'present' : 'missing'})`,
    );
  const id = Math.random().toString(36).slice(2, 7);
  const ns = `sr-${id}`;
  // Two /30 subnets picked at random in 10.200.0.0/14 (a clash with another test is unlikely and fails loudly).
  const block = () =>
    `10.${200 + Math.floor(Math.random() * 4)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 64) * 4}`;
  const at = (base: string, host: number) => base.replace(/\d+$/, (last) => String(Number(last) + host));
  const natsNet = block();
  let httpNet = block();
  while (httpNet === natsNet) httpNet = block();
  const links = [
    { host: `srn${id}h`, inside: `srn${id}n`, net: natsNet },
    { host: `srh${id}h`, inside: `srh${id}n`, net: httpNet },
  ];
  let disposed = false;
  const dispose = () => {
    if (disposed) return;
    disposed = true;
    for (const link of links) {
      try {
        ip('link', 'del', link.host);
      } catch {
        // Already gone with the namespace.
      }
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      // Already gone.
    }
  };
  try {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    for (const link of links) {
      ip('link', 'add', link.host, 'type', 'veth', 'peer', 'name', link.inside);
      ip('link', 'set', link.inside, 'netns', ns);
      ip('addr', 'add', `${at(link.net, 1)}/30`, 'dev', link.host);
      ip('link', 'set', link.host, 'up');
      ip('-n', ns, 'addr', 'add', `${at(link.net, 2)}/30`, 'dev', link.inside);
      ip('-n', ns, 'link', 'set', link.inside, 'up');
    }
  } catch (error) {
    dispose();
    throw new Error(
      `creating network namespace ${ns} failed: ${(error as { stderr?: Buffer }).stderr?.toString().trim() || (error as Error).message}`,
    );
  }
  process.once('exit', dispose);
  const nats = links[0]!;
  return {
    ns,
    wrapper: ['ip', 'netns', 'exec', ns],
    natsHostIp: at(nats.net, 1),
    httpIp: at(links[1]!.net, 2),
    partition: () => ip('link', 'set', nats.host, 'down'),
    heal: () => {
      ip('link', 'set', nats.host, 'up');
      // Setting a link down drops its addresses' routes; they come back with the link, the address stays.
    },
    dispose,
  };
}

/** Pauses `node` (SIGSTOP) for `ms`, then resumes it (SIGCONT); resolves when resumed. */
export async function stallNode(node: NodeHandle, ms: number): Promise<void> {
  node.kill('SIGSTOP');
  try {
    await new Promise((resolve) => setTimeout(resolve, ms));
  } finally {
    node.kill('SIGCONT');
  }
}

/**
 * Kills nats-server (SIGKILL) and starts a new one on the same port with the same options, after
 * `downMs`. Pass `dir` in `options` to keep a JetStream store across the restart.
 */
export async function restartBroker(
  broker: NatsServerHandle,
  options: NatsServerOptions = {},
  downMs = 0,
): Promise<NatsServerHandle> {
  broker.kill('SIGKILL');
  await broker.process.exited;
  if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
  return startNatsServer({ ...options, port: broker.port });
}

/** An http://127.0.0.1:<port> endpoint nobody listens on: a DynamoDB endpoint that refuses every connection. */
export async function deadEndpoint(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/** A node's way to the broker that a test cuts and heals (see {@link cuttableLink}). */
export interface CuttableLink {
  /** What to spread into `startNode`'s options: the NATS URL, and for a network namespace the HTTP host and the wrapper. */
  readonly nodeOptions: Pick<StartNodeOptions, 'nats' | 'host' | 'wrapper'>;
  cut(): Promise<void> | void;
  heal(): Promise<void> | void;
  /** Removes the forwarder or the namespace. */
  dispose(): Promise<void> | void;
}

/**
 * A link from one node to the nats-server on `natsPort` that is cut by a `reset` (a forwarder: connections closed,
 * new ones refused) or `silent`ly (a network namespace: packets dropped, connections left half-open; root only,
 * and the server must listen on 0.0.0.0).
 */
export async function cuttableLink(kind: 'reset' | 'silent', natsPort: number): Promise<CuttableLink> {
  if (kind === 'reset') {
    const forwarder = await startForwarder(natsPort);
    return {
      nodeOptions: { nats: forwarder.url },
      cut: () => forwarder.reset(),
      heal: () => forwarder.heal(),
      dispose: () => forwarder.close(),
    };
  }
  const netns = createNetnsLink();
  return {
    nodeOptions: { nats: `nats://${netns.natsHostIp}:${natsPort}`, host: netns.httpIp, wrapper: netns.wrapper },
    cut: () => netns.partition(),
    heal: () => netns.heal(),
    dispose: () => netns.dispose(),
  };
}
