// Owns: the integration-test harness: in-process cluster nodes, each with its own NATS connection to the
// shared nats-server, a cookie-carrying request helper over `app.request`, and convergence checks.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "vitest";
import type { Hono } from "hono";
import { createDemoApp } from "../../functions/demo-app.ts";
import { NatsChannel } from "../../lib/channel/nats.ts";
import { createCluster, type ClusterOptions, type Logger, type ClusterNode, type SessionVariables } from "../../lib/index.ts";
import type { SessionState } from "../../lib/session/state.ts";
import { SessionClient, waitFor } from "../kit/index.ts";

/** A cluster name no other test uses, so every test can share the one nats-server. */
export function uniqueCluster(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 64);
}

/** One captured log line. */
export interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that keeps every line in memory (so tests stay quiet and can assert on warnings). */
export function memoryLogger(lines: LogLine[] = [], bound: Record<string, unknown> = {}): Logger & { lines: LogLine[] } {
  const at = (level: LogLine["level"]) => (fields: Record<string, unknown>, message: string) => void lines.push({ level, fields: { ...bound, ...fields }, message });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), child: (fields) => memoryLogger(lines, { ...bound, ...fields }) };
}

/** Fast timings for tests: failure detection in well under a second, sweeps every 100 ms. */
export const FAST: Partial<ClusterOptions> = { heartbeatIntervalMs: 100, memberDropMs: 600, pingTimeoutMs: 300, sweepIntervalMs: 100 };

/** A response of the demo app, with the cookie the client holds afterwards. */
export interface Reply {
  status: number;
  json: any;
  text: string;
  setCookie: string[];
}

/** A cluster node running in this process over its own NATS connection. */
export interface TestNode {
  readonly name: string;
  readonly sessions: ClusterNode;
  /** The demo app on this node. */
  readonly app: Hono<{ Variables: SessionVariables }>;
  /** This node's own NATS connection (also usable to publish raw bytes). */
  readonly nc: NatsConnection;
  readonly logs: LogLine[];
  stop(): Promise<void>;
}

/** Creates (but does not start) a node of `cluster` on its own connection to `natsUrl`. */
export async function createNatsNode(natsUrl: string, cluster: string, name: string, options: Partial<ClusterOptions> = {}): Promise<TestNode> {
  // noEcho as in functions/node/node-server.ts: a node never receives its own messages.
  const nc = await connect({ servers: natsUrl, name: `it-${cluster}-${name}`, noEcho: true });
  const logger = memoryLogger();
  const sessions = createCluster({ ...FAST, logger, ...options, cluster, node: name, channel: new NatsChannel(nc) });
  let stopped: Promise<void> | undefined;
  return {
    name,
    sessions,
    app: createDemoApp(sessions),
    nc,
    logs: logger.lines,
    stop: () => (stopped ??= sessions.stop().finally(() => (nc.isClosed() ? undefined : nc.close()))),
  };
}

/** A browser-like client for in-process apps: keeps the SESSIONID cookie across nodes (reuses the kit's cookie parsing). */
export class Client {
  readonly jar = new SessionClient();

  get cookie(): string | undefined {
    return this.jar.cookie;
  }

  /** The session key (cookie value without the route). */
  get key(): string {
    const cookie = this.jar.cookie;
    if (!cookie) throw new Error("the client holds no session cookie");
    return cookie.slice(0, cookie.lastIndexOf("."));
  }

  /**
   * Sends `method path` to `node`'s demo app (or any Hono app), carrying the cookie. As with the kit's
   * `SessionClient`, a string body is sent as-is and anything else as JSON (so a JSON string value
   * must be passed as `JSON.stringify("text")`).
   */
  async request(target: TestNode | Hono<any>, method: string, path: string, body?: unknown): Promise<Reply> {
    const app = "app" in target ? target.app : target;
    const headers: Record<string, string> = {};
    if (this.jar.cookie !== undefined) headers.cookie = `SESSIONID=${this.jar.cookie}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const res = await app.request(path, init);
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const setCookie = res.headers.getSetCookie();
    for (const line of setCookie) this.jar.absorb(line);
    return { status: res.status, json, text, setCookie };
  }
}

/** Starts nodes of one cluster in the given order (each joins the ones before it) and tracks them for `stopAll`. */
export class Harness {
  readonly nodes: TestNode[] = [];

  constructor(
    readonly natsUrl: string,
    readonly cluster: string,
    readonly options: Partial<ClusterOptions> = {},
  ) {}

  /** Starts one node and waits for its `start()` (state transfer included). */
  async add(name: string, options: Partial<ClusterOptions> = {}): Promise<TestNode> {
    const node = await createNatsNode(this.natsUrl, this.cluster, name, { ...this.options, ...options });
    this.nodes.push(node);
    await node.sessions.start();
    return node;
  }

  /** Starts `names` one after another, then waits until every node sees every other as a ready member. */
  async start(...names: string[]): Promise<TestNode[]> {
    const started: TestNode[] = [];
    for (const name of names) started.push(await this.add(name));
    await waitForMembership(this.nodes);
    return started;
  }

  /** Stops every node this harness started (idempotent). */
  async stopAll(): Promise<void> {
    await Promise.allSettled(this.nodes.splice(0).map((node) => node.stop()));
  }
}

/** Waits until each node lists exactly the other given nodes as ready members. */
export async function waitForMembership(nodes: TestNode[], timeoutMs = 5000): Promise<void> {
  await waitFor(
    `membership of ${nodes.map((n) => n.name).join(",")} to converge`,
    () =>
      nodes.every((node) => {
        const others = node.sessions.membership.readyMembers().map((m) => m.node).sort();
        const expected = nodes.filter((n) => n !== node).map((n) => n.name).sort();
        return JSON.stringify(others) === JSON.stringify(expected);
      }),
    { timeoutMs },
  );
}

/**
 * A plain, comparable form of a session state: attributes sorted by name with their stamps and
 * encoded values. With `access: false` the last-access fields are left out (reads replicate them
 * only as rate-limited touches, so replicas may legitimately differ there).
 */
export function canonical(state: SessionState | undefined, { access = true } = {}): unknown {
  if (!state) return undefined;
  const attributes = [...state.attributes.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, r]) => [name, [...r.stamp], r.value ?? null]);
  return {
    key: state.key,
    createdAt: state.createdAt,
    ...(access ? { lastAccessedAt: state.lastAccessedAt, lastAccessedBy: state.lastAccessedBy } : {}),
    maxInactive: [state.maxInactive.seconds, [...state.maxInactive.stamp]],
    attributes,
    ended: state.ended ? [[...state.ended.stamp], state.ended.reason] : null,
  };
}

/** Every live key any of the nodes holds, plus `extra`. */
export function allKeys(nodes: TestNode[], extra: Iterable<string> = []): string[] {
  const keys = new Set(extra);
  for (const node of nodes) for (const state of node.sessions.manager.liveSessions()) keys.add(state.key);
  return [...keys].sort();
}

/**
 * Waits until every node holds the same canonical state for each key (`keys` defaults to every
 * live key on any node) and that state exists; resolves with the agreed states by key.
 */
export async function waitForConvergence(
  nodes: TestNode[],
  keys?: Iterable<string>,
  { access = true, timeoutMs = 10000 }: { access?: boolean; timeoutMs?: number } = {},
): Promise<Map<string, unknown>> {
  return waitFor(
    `sessions to converge on ${nodes.map((n) => n.name).join(",")}`,
    () => {
      const wanted = keys ? [...keys] : allKeys(nodes);
      const agreed = new Map<string, unknown>();
      for (const key of wanted) {
        const views = nodes.map((node) => JSON.stringify(canonical(node.sessions.manager.inspect(key), { access })));
        if (views[0] === undefined || views.some((view) => view !== views[0])) throw new Error(`key ${key.slice(0, 8)} differs: ${views.join(" | ").slice(0, 600)}`);
        agreed.set(key, JSON.parse(views[0]));
      }
      return agreed;
    },
    { timeoutMs },
  );
}

/** Asserts that `node` holds no state at all (not even a tombstone) for `key`. */
export function expectUnknown(node: TestNode, key: string): void {
  expect(node.sessions.manager.inspect(key), `${node.name} should not know ${key.slice(0, 8)}`).toBeUndefined();
}

/** The attributes the demo app reports for the client's session on `node` (an empty object for a new session). */
export async function attributesOn(client: Client, node: TestNode): Promise<Record<string, unknown>> {
  const reply = await client.request(node, "GET", "/session");
  expect(reply.status).toBe(200);
  return reply.json.attributes as Record<string, unknown>;
}
