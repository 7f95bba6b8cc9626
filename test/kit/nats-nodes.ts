// Owns: in-process cluster nodes, each with its own NATS connection to the shared nats-server (the integration
// tests' harness), and the convergence checks that compare what every node holds.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { Hono } from 'hono';
import { createDemoApp } from '../../functions/demo-app.ts';
import type { Channel } from '../../lib/channel/channel.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { createCluster, type ClusterOptions, type ClusterNode, type SessionVariables } from '../../lib/index.ts';
import { waitFor } from '../../functions/launch/index.ts';
import type { CookieClient } from './cookie-client.ts';
import { memoryLogger, type LogLine } from './logger.ts';
import { canonical } from './snapshots.ts';
import { FAST } from './timings.ts';

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

/**
 * Creates (but does not start) a node of `cluster` on its own connection to `natsUrl`; `wrap` puts a
 * test channel (a fault or a hold) around its `NatsChannel`.
 */
export async function createNatsNode(
  natsUrl: string,
  cluster: string,
  name: string,
  options: Partial<ClusterOptions> = {},
  wrap: (channel: Channel) => Channel = (channel) => channel,
): Promise<TestNode> {
  // noEcho as in functions/node/node-server.ts: a node never receives its own messages.
  const nc = await connect({ servers: natsUrl, name: `it-${cluster}-${name}`, noEcho: true });
  const logger = memoryLogger();
  const channel = wrap(new NatsChannel(nc));
  const sessions = createCluster({ ...FAST, logger, ...options, cluster, node: name, channel });
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
    `membership of ${nodes.map((n) => n.name).join(',')} to converge`,
    () =>
      nodes.every((node) => {
        const others = node.sessions.membership
          .readyMembers()
          .map((m) => m.node)
          .sort();
        const expected = nodes
          .filter((n) => n !== node)
          .map((n) => n.name)
          .sort();
        return JSON.stringify(others) === JSON.stringify(expected);
      }),
    { timeoutMs },
  );
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
    `sessions to converge on ${nodes.map((n) => n.name).join(',')}`,
    () => {
      const wanted = keys ? [...keys] : allKeys(nodes);
      const agreed = new Map<string, unknown>();
      for (const key of wanted) {
        const views = nodes.map((node) => JSON.stringify(canonical(node.sessions.manager.inspect(key), { access })));
        if (views[0] === undefined || views.some((view) => view !== views[0]))
          throw new Error(`key ${key.slice(0, 8)} differs: ${views.join(' | ').slice(0, 600)}`);
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

/** The attributes the demo app on `node` reports for the client's session (an empty object for a new session). */
export async function sessionAttributes(client: CookieClient, node: TestNode): Promise<Record<string, unknown>> {
  const reply = await client.request(node, 'GET', '/session');
  expect(reply.status).toBe(200);
  return reply.json.attributes as Record<string, unknown>;
}
