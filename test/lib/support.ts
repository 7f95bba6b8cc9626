// Owns: helpers shared by the unit tests of lib/: fast cluster nodes on a MemoryBus, a test Hono app, a delaying channel.
import { Hono, type Context } from "hono";
import { afterEach } from "vitest";
import type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from "../../lib/channel/channel.ts";
import { MemoryChannel, type MemoryBus } from "../../lib/channel/memory.ts";
import { decodeValue } from "../../lib/session/values.ts";
import { createCluster, type ClusterOptions, type ReplicatedSessions } from "../../lib/cluster.ts";
import { consoleLogger } from "../../lib/logger.ts";
import type { SessionMiddlewareOptions, SessionVariables } from "../../lib/middleware/session-middleware.ts";
import { waitFor } from "../kit/index.ts";

/** A logger that writes nothing, so expected warnings do not clutter test output. */
export const silentLogger = consoleLogger("silent");

/** Membership and sweep timings small enough for unit tests. */
export const FAST = {
  heartbeatIntervalMs: 50,
  memberDropMs: 300,
  pingTimeoutMs: 100,
  sweepIntervalMs: 50,
  stateTransferTimeoutMs: 3000,
  ackTimeoutMs: 2000,
} as const;

const running = new Set<ReplicatedSessions>();
const cleanups: Array<() => void | Promise<void>> = [];

/** Registers a cleanup that runs after the current test (in reverse order, after nodes stop). */
export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn);
}

afterEach(async () => {
  const nodes = [...running];
  running.clear();
  await Promise.all(nodes.map((node) => node.stop().catch(() => undefined)));
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Creates (not starts) a node on `bus` with the fast timings; it is stopped after the test. */
export function makeNode(bus: MemoryBus, node: string, options: Partial<ClusterOptions> = {}): ReplicatedSessions {
  const cluster = createCluster({ cluster: "test", node, channel: new MemoryChannel(bus), logger: silentLogger, ...FAST, ...options });
  running.add(cluster);
  return cluster;
}

/** Creates and starts nodes one after the other, then waits until every node sees every other as ready. */
export async function startNodes(bus: MemoryBus, names: string[], options: Partial<ClusterOptions> = {}): Promise<ReplicatedSessions[]> {
  const nodes: ReplicatedSessions[] = [];
  for (const name of names) {
    const node = makeNode(bus, name, options);
    await node.start();
    nodes.push(node);
  }
  await waitFor(`${names.join(", ")} to see each other ready`, () =>
    nodes.every((node) => node.membership.readyMembers().length === nodes.length - 1),
  );
  return nodes;
}

/** Stops a node now (and forgets it for the after-test cleanup). */
export async function stopNode(node: ReplicatedSessions): Promise<void> {
  running.delete(node);
  await node.stop();
}

/** The attributes a node holds for a live session, decoded, or undefined when it holds none. */
export function attributesOn(node: ReplicatedSessions, key: string): Record<string, unknown> | undefined {
  const state = node.manager.find(key);
  if (!state) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, register] of state.attributes) if (register.value !== undefined) out[name] = decodeValue(register.value);
  return out;
}

/**
 * A Hono app over one node's middleware with a few routes:
 * `POST /set` and `POST /set/*` (JSON object body: every entry is set), `POST /delete` (JSON array of
 * names), `GET /get` (all attributes and the id), `GET /noop` (never touches the session),
 * `POST /invalidate`, `POST /regenerate`.
 */
export function sessionApp(node: ReplicatedSessions, options?: SessionMiddlewareOptions): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.onError((error, c) => c.text(`error: ${error.message}`, 500));
  app.use(node.middleware(options));
  const set = async (c: Context<{ Variables: SessionVariables }>) => {
    const body = await c.req.json<Record<string, unknown>>();
    const session = c.get("session");
    for (const [name, value] of Object.entries(body)) session.set(name, value);
    return c.json({ id: session.id });
  };
  app.post("/set", set);
  app.post("/set/*", set);
  app.post("/delete", async (c) => {
    const names = await c.req.json<string[]>();
    for (const name of names) c.get("session").delete(name);
    return c.json({ id: c.get("session").id });
  });
  app.get("/get", (c) => c.json({ id: c.get("session").id, attributes: c.get("session").attributes() }));
  app.get("/noop", (c) => c.text("ok"));
  app.post("/invalidate", (c) => {
    c.get("session").invalidate();
    return c.text("bye");
  });
  app.post("/regenerate", (c) => {
    c.get("session").regenerateId();
    return c.json({ id: c.get("session").id });
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
}

/** Sends one request to `app` (no network) with an optional SESSIONID cookie and JSON body. */
export async function call(
  app: Hono<{ Variables: SessionVariables }>,
  method: string,
  path: string,
  { cookie, body, origin = "http://app.test" }: { cookie?: string; body?: unknown; origin?: string } = {},
): Promise<CallResult> {
  const headers: Record<string, string> = {};
  if (cookie !== undefined) headers.cookie = `SESSIONID=${cookie}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await app.request(`${origin}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const setCookie = res.headers.getSetCookie();
  const line = setCookie.find((l) => l.startsWith("SESSIONID="));
  const cookieValue = line === undefined ? undefined : line.slice("SESSIONID=".length).split(";")[0];
  return { status: res.status, text: await res.text(), setCookie, cookie: cookieValue };
}

/** The key part of a `<key>.<route>` cookie value. */
export function keyOf(cookie: string): string {
  return cookie.slice(0, cookie.lastIndexOf("."));
}

/**
 * A channel that hands every message to its subscribers `delayMs` late, like a slow link, so tests can
 * tell "the response waited for replicas" from "the replicas were fast".
 */
export class DelayedChannel implements Channel {
  readonly kind = "delayed";
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

  subscribe(subject: string, handler: (message: ChannelMessage) => void, options?: { queue?: string }): ChannelSubscription {
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

const apps = new WeakMap<ReplicatedSessions, Hono<{ Variables: SessionVariables }>>();

/** The default {@link sessionApp} of a node, created once. */
export function appFor(node: ReplicatedSessions): Hono<{ Variables: SessionVariables }> {
  let app = apps.get(node);
  if (!app) apps.set(node, (app = sessionApp(node)));
  return app;
}

/** Sets attributes through `node`'s app and returns the session cookie (the given one when unchanged). */
export async function setOn(node: ReplicatedSessions, cookie: string | undefined, values: Record<string, unknown>, path = "/set"): Promise<string> {
  const res = await call(appFor(node), "POST", path, { ...(cookie !== undefined ? { cookie } : {}), body: values });
  if (res.status !== 200) throw new Error(`POST ${path} on ${node.node}: ${res.status} ${res.text}`);
  const current = res.cookie ?? cookie;
  if (current === undefined) throw new Error(`POST ${path} on ${node.node} gave no session cookie`);
  return current;
}
