/**
 * `createTestCluster`: several cluster nodes in one process over an in-process bus, each serving the
 * user's app, with a cookie-keeping client and a fault injector, for users' own unit tests.
 */
import { MemoryBus, MemoryChannel } from '../channel/memory.ts';
import { InvalidOptionsError, SessionReplicationError } from '../errors.ts';
import { createCluster, consoleLogger, type ClusterOptions, type ClusterNode } from '../index.ts';
import { FaultInjector, faultyChannel } from './faults.ts';

/** What a node serves in a test cluster: a Hono app, or anything with Hono's `request`. */
export interface TestApp {
  /** Answers one request, as Hono's `app.request(path, init)` does. */
  request(path: string, init?: RequestInit): Response | Promise<Response>;
}

/** Options of {@link createTestCluster}: any `createCluster` option except `channel` and `node`. */
export interface TestClusterOptions extends Omit<ClusterOptions, 'channel' | 'node' | 'cluster'> {
  /** How many nodes (named n1, n2, ...), or their names. */
  readonly nodes: number | readonly string[];
  /**
   * The cluster name.
   * @default 'test'
   */
  readonly cluster?: string;
  /** Builds the app each node serves, from that node (mount `node.middleware()` in it); needed by `request`. */
  readonly app?: (node: ClusterNode) => TestApp;
  /** The fault injector every node's channel goes through. @default a new `FaultInjector` */
  readonly faults?: FaultInjector;
}

/**
 * Timings small enough for unit tests; each can be overridden.
 * heartbeat 50 ms, member dropped after 300 ms, ping 100 ms, sweep 50 ms, state transfer 3 s.
 */
const FAST: Partial<ClusterOptions> = {
  heartbeatIntervalMs: 50,
  memberDropMs: 300,
  pingTimeoutMs: 100,
  sweepIntervalMs: 50,
  stateTransferTimeoutMs: 3000,
};

/** A browser's cookie store, enough for session cookies: name to value, removed when expired. */
export class CookieJar {
  readonly #cookies = new Map<string, string>();

  /** The `Cookie` header for the stored cookies, or undefined when there are none. */
  header(): string | undefined {
    return this.#cookies.size === 0
      ? undefined
      : [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  /** The value of one cookie. */
  get(name: string): string | undefined {
    return this.#cookies.get(name);
  }

  /** Takes in every `Set-Cookie` of a response. */
  absorb(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => {
        const [key = '', v = ''] = a.split('=').map((part) => part.trim());
        return (
          (key.toLowerCase() === 'max-age' && Number(v) <= 0) ||
          (key.toLowerCase() === 'expires' && Date.parse(v) <= Date.now())
        );
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
}

/** A client with its own cookies, like one browser moving between nodes. */
export interface TestClient {
  /** The cookies this client holds. */
  readonly cookies: CookieJar;
  /** Sends a request to node `index` (0-based) with this client's cookies and keeps the cookies it sets. */
  request(index: number, path: string, init?: RequestInit): Promise<Response>;
}

/** A running test cluster. */
export interface TestCluster {
  /** The nodes, started and ready, in order. */
  readonly nodes: readonly ClusterNode[];
  /** The faults every node's channel goes through. */
  readonly faults: FaultInjector;
  /** A request through the cluster's default client (one cookie jar shared across nodes). */
  request(index: number, path: string, init?: RequestInit): Promise<Response>;
  /** A new client with its own cookies. */
  client(): TestClient;
  /** Stops every node (idempotent). */
  stop(): Promise<void>;
}

/**
 * Starts a test cluster: every node on one in-process bus, through one fault injector, started one
 * after the other; resolves once every node sees every other as ready.
 *
 * @example
 * const cluster = await createTestCluster({ nodes: 2, app: (node) => createApp(node) });
 * await cluster.request(0, '/login', { method: 'POST' });
 * expect(await (await cluster.request(1, '/me')).json()).toEqual({ user: 'ada' });
 * await cluster.stop();
 */
export async function createTestCluster(options: TestClusterOptions): Promise<TestCluster> {
  const { nodes: count, cluster = 'test', app, faults = new FaultInjector(), ...clusterOptions } = options;
  const names = typeof count === 'number' ? Array.from({ length: count }, (_, i) => `n${i + 1}`) : [...count];
  if (names.length === 0) throw new InvalidOptionsError('a test cluster needs at least one node');
  const bus = new MemoryBus();
  const nodes: ClusterNode[] = [];
  // The test cluster made each node's channel, so it closes them once the nodes have left.
  const stopAll = () =>
    Promise.all(
      nodes.map((node) =>
        node
          .stop()
          .finally(() => node.channel.close())
          .catch(() => undefined),
      ),
    ).then(() => undefined);
  try {
    for (const name of names) {
      const node = createCluster({
        logger: consoleLogger('silent'),
        ...FAST,
        ...clusterOptions,
        cluster,
        node: name,
        channel: faultyChannel(new MemoryChannel(bus), name, faults),
      });
      nodes.push(node);
      await node.start();
    }
    await untilAllReady(nodes, 10_000);
  } catch (error) {
    await stopAll();
    throw error;
  }
  const apps = app ? nodes.map((node) => app(node)) : [];

  const client = (): TestClient => {
    const cookies = new CookieJar();
    return {
      cookies,
      async request(index, path, init = {}) {
        const target = apps[index];
        if (!target)
          throw new InvalidOptionsError(
            app
              ? `no node ${index}: the cluster has ${nodes.length}`
              : 'pass `app` to createTestCluster to send requests',
          );
        const headers = new Headers(init.headers);
        const cookie = cookies.header();
        if (cookie !== undefined && !headers.has('cookie')) headers.set('cookie', cookie);
        const response = await target.request(path, { ...init, headers });
        cookies.absorb(response);
        return response;
      },
    };
  };
  const main = client();
  let stopped: Promise<void> | undefined;
  return {
    nodes,
    faults,
    request: (index, path, init) => main.request(index, path, init),
    client,
    stop: () => (stopped ??= stopAll()),
  };
}

/** Resolves once every node sees all the others as ready members. */
async function untilAllReady(nodes: readonly ClusterNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const others = nodes.length - 1;
  while (!nodes.every((node) => node.status().members.filter((m) => !m.self && m.ready).length === others)) {
    if (Date.now() > deadline)
      throw new SessionReplicationError('TEST_CLUSTER_TIMEOUT', `the test cluster did not form within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
