// Owns: cluster nodes on the in-process channel for unit tests (stopped after each test), a test Hono app, a delaying channel.
import { Hono, type Context } from 'hono';
import { afterEach } from 'vitest';
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from '../../lib/channel/channel.ts';
import { MemoryChannel, type MemoryBus } from '../../lib/channel/memory.ts';
import { decodeValue } from '../../lib/session/values.ts';
import {
  clusterNode,
  resolveOptions,
  wireNode,
  type ClusterNode,
  type ClusterOptions,
  type NodeParts,
  type ResolvedOptions,
} from '../../lib/cluster/index.ts';
import type { SessionMiddlewareOptions, SessionVariables } from '../../lib/middleware/session-middleware.ts';
import { waitFor } from '../../functions/launch/index.ts';
import { CookieClient } from './cookie-client.ts';
import { silentLogger } from './logger.ts';
import { FASTER } from './timings.ts';

const running = new Set<ClusterNode>();
const partsByNode = new WeakMap<ClusterNode, NodeParts>();
const cleanups: Array<() => void | Promise<void>> = [];

/** Registers a cleanup that runs after the current test (in reverse order, after nodes stop). */
export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn);
}

// Only inside a vitest worker: scripts (bench, soak) import the kit too.
if (process.env.VITEST_WORKER_ID !== undefined) {
  afterEach(async () => {
    const nodes = [...running];
    running.clear();
    await Promise.all(nodes.map((node) => stopNode(node).catch(() => undefined)));
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
}

/**
 * Creates (not starts) a node on `bus` with the {@link FASTER} timings, wired as `createCluster` wires
 * it; `overrides` replace resolved options no `ClusterOptions` field reaches (page limits). The node
 * is stopped, and its channel closed, after the test.
 */
export function makeNode(
  bus: MemoryBus,
  node: string,
  options: Partial<ClusterOptions> = {},
  overrides: Partial<ResolvedOptions> = {},
): ClusterNode {
  const resolved = resolveOptions({
    cluster: 'test',
    node,
    channel: new MemoryChannel(bus),
    logger: silentLogger,
    ...FASTER,
    ...options,
  });
  const parts = wireNode({ ...resolved, ...overrides });
  const cluster = clusterNode(parts);
  partsByNode.set(cluster, parts);
  running.add(cluster);
  return cluster;
}

/** The wired parts of a node made by `makeNode` (membership, clock, the concrete manager). */
export function partsOf(node: ClusterNode): NodeParts {
  const parts = partsByNode.get(node);
  if (!parts) throw new Error(`${node.node} was not made by makeNode`);
  return parts;
}

/** Creates and starts nodes one after the other, then waits until every node sees every other as ready. */
export async function startNodes(
  bus: MemoryBus,
  names: string[],
  options: Partial<ClusterOptions> = {},
): Promise<ClusterNode[]> {
  const nodes: ClusterNode[] = [];
  for (const name of names) {
    const node = makeNode(bus, name, options);
    await node.start();
    nodes.push(node);
  }
  await waitFor(`${names.join(', ')} to see each other ready`, () =>
    nodes.every((node) => node.membership.readyMembers().length === nodes.length - 1),
  );
  return nodes;
}

/** Stops a node now and closes the channel `makeNode` gave it (and forgets it for the after-test cleanup). */
export async function stopNode(node: ClusterNode): Promise<void> {
  running.delete(node);
  try {
    await node.stop();
  } finally {
    await node.channel.close();
  }
}

/** The attributes a node holds for a live session, decoded, or undefined when it holds none. */
export function attributesOn(node: ClusterNode, key: string): Record<string, unknown> | undefined {
  const state = node.manager.find(key);
  if (!state) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, register] of state.attributes)
    if (register.value !== undefined) out[name] = decodeValue(register.value);
  return out;
}

/**
 * A Hono app over one node's middleware with a few routes:
 * `POST /set` and `POST /set/*` (JSON object body: every entry is set), `POST /delete` (JSON array of
 * names), `GET /get` (all attributes and the id), `GET /noop` (never touches the session),
 * `POST /invalidate`, `POST /regenerate`.
 */
export function sessionApp(
  node: ClusterNode,
  options?: SessionMiddlewareOptions,
): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.onError((error, c) => c.text(`error: ${error.message}`, 500));
  app.use(node.middleware(options));
  const set = async (c: Context<{ Variables: SessionVariables }>) => {
    const body = await c.req.json<Record<string, unknown>>();
    const session = c.get('session');
    for (const [name, value] of Object.entries(body)) session.set(name, value);
    return c.json({ id: session.id });
  };
  app.post('/set', set);
  app.post('/set/*', set);
  app.post('/delete', async (c) => {
    const names = await c.req.json<string[]>();
    for (const name of names) c.get('session').delete(name);
    return c.json({ id: c.get('session').id });
  });
  app.get('/get', (c) => c.json({ id: c.get('session').id, attributes: c.get('session').attributes() }));
  app.get('/noop', (c) => c.text('ok'));
  app.post('/invalidate', (c) => {
    c.get('session').invalidate();
    return c.text('bye');
  });
  app.post('/regenerate', (c) => {
    c.get('session').regenerateId();
    return c.json({ id: c.get('session').id });
  });
  return app;
}

/** What {@link call} returns. */
export interface CallResult {
  status: number;
  text: string;
  /** Every Set-Cookie line. */
  setCookie: string[];
  /** The SESSIONID value from Set-Cookie, if one was set (empty string when deleted). */
  cookie: string | undefined;
  /** The session version cookie (SESSIONID_v) from Set-Cookie, if one was set (empty string when deleted). */
  version: string | undefined;
  /** The Set-Cookie lines of the session cookie only (the version cookie left out). */
  sessionLines: string[];
}

/**
 * Sends one request to `app` (no network) with an optional SESSIONID cookie, an optional session version
 * cookie (SESSIONID_v) and a body (a string as-is, anything else as JSON); keeps no cookie.
 */
export async function call(
  app: Hono<{ Variables: SessionVariables }>,
  method: string,
  path: string,
  {
    cookie,
    version,
    body,
    origin = 'http://app.test',
  }: { cookie?: string; version?: string; body?: unknown; origin?: string } = {},
): Promise<CallResult> {
  const client = new CookieClient({ origin, ...(cookie !== undefined ? { cookie } : {}) });
  if (version !== undefined) client.version = version;
  const reply = await client.request(app, method, path, body);
  const value = (name: string) => {
    const line = reply.setCookie.find((l) => l.startsWith(`${name}=`));
    return line === undefined ? undefined : line.slice(name.length + 1).split(';')[0];
  };
  return {
    status: reply.status,
    text: reply.text,
    setCookie: reply.setCookie,
    cookie: value('SESSIONID'),
    version: value('SESSIONID_v'),
    sessionLines: reply.setCookie.filter((l) => l.startsWith('SESSIONID=')),
  };
}

/**
 * A channel that hands every message to its subscribers `delayMs` late, like a slow link, so tests can
 * tell "the response waited for replicas" from "the replicas were fast".
 */
export class DelayedChannel implements Channel {
  readonly kind = 'delayed';
  readonly #inner: MemoryChannel;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    bus: MemoryBus,
    readonly delayMs: number,
  ) {
    this.#inner = new MemoryChannel(bus);
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    this.#inner.publish(subject, data, options);
  }

  subscribe(
    subject: string,
    handler: (message: ChannelMessage) => void,
    options?: { queue?: string },
  ): ChannelSubscription {
    return this.#inner.subscribe(
      subject,
      (message) => {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          handler(message);
        }, this.delayMs);
        this.#timers.add(timer);
      },
      options,
    );
  }

  request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    return this.#inner.request(subject, data, options);
  }

  flush(): Promise<void> {
    return this.#inner.flush();
  }

  onStatus(listener: (status: ChannelStatus) => void): void {
    this.#inner.onStatus(listener);
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    await this.#inner.close();
  }
}

const apps = new WeakMap<ClusterNode, Hono<{ Variables: SessionVariables }>>();

/** The default {@link sessionApp} of a node, created once. */
export function appFor(node: ClusterNode): Hono<{ Variables: SessionVariables }> {
  let app = apps.get(node);
  if (!app) apps.set(node, (app = sessionApp(node)));
  return app;
}

/** Sets attributes through `node`'s app and returns the session cookie (the given one when unchanged). */
export async function setOn(
  node: ClusterNode,
  cookie: string | undefined,
  values: Record<string, unknown>,
  path = '/set',
): Promise<string> {
  const res = await call(appFor(node), 'POST', path, { ...(cookie !== undefined ? { cookie } : {}), body: values });
  if (res.status !== 200) throw new Error(`POST ${path} on ${node.node}: ${res.status} ${res.text}`);
  const current = res.cookie ?? cookie;
  if (current === undefined) throw new Error(`POST ${path} on ${node.node} gave no session cookie`);
  return current;
}

/**
 * Writes `body` to every session at once (started in one event-loop turn, like concurrent requests)
 * and expects 200 for each; returns the messages `node` sent and received meanwhile, by kind.
 */
export async function writeAllAtOnce(
  node: ClusterNode,
  cookies: readonly string[],
  body: Record<string, unknown>,
): Promise<{ sent: Record<string, number>; received: Record<string, number> }> {
  const counts = () => ({ sent: { ...node.stats.sent }, received: { ...node.stats.received } });
  const before = counts();
  const app = appFor(node);
  const replies = await Promise.all(cookies.map((cookie) => call(app, 'POST', '/set', { cookie, body })));
  if (replies.some((r) => r.status !== 200))
    throw new Error(`a write failed: ${replies.map((r) => r.status).join(', ')}`);
  const after = counts();
  const diff = (a: Record<string, number | undefined>, b: Record<string, number | undefined>) =>
    Object.fromEntries(Object.keys(a).map((kind) => [kind, (a[kind] ?? 0) - (b[kind] ?? 0)]));
  return { sent: diff(after.sent, before.sent), received: diff(after.received, before.received) };
}

/**
 * A counter app on one node: `POST /counter` increments the session's `n` and answers `{ n, node }`, `GET /counter`
 * answers `{ n }`.
 */
export function counterApp(node: ClusterNode) {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.use(node.middleware());
  app.post('/counter', (c) => {
    const session = c.get('session');
    const n = (session.get<number>('n') ?? 0) + 1;
    session.set('n', n);
    return c.json({ n, node: node.node });
  });
  app.get('/counter', (c) => c.json({ n: c.get('session').get<number>('n') ?? 0 }));
  return app;
}
