/**
 * `session-replication/cloudflare`: cluster members as Durable Objects. Each Durable Object (one per
 * member name) is a full member over an outbound NATS WebSocket: it subscribes, holds replicas and
 * heartbeats between requests, and an alarm keeps waking it while it is a member. A Worker routes
 * each request to the member its session cookie names (any member for a new visitor).
 *
 * ```ts
 * export const SessionNode = createSessionNodeClass(app, (env: Env) => ({ nats: { servers: env.NATS_URL }, cluster: { cluster: 'shop' } }));
 * export default sessionNodeRouter({ binding: 'SESSION_NODE', members: ['a', 'b'] });
 * ```
 */
import { Hono } from 'hono';
import { getCookie } from 'hono/cookie';
import { InvalidOptionsError } from '../../lib/errors.ts';
import { parseSessionId } from '../../lib/index.ts';
import { TOKEN_PATTERN } from '../../lib/session/ids.ts';
import { createEdgeMember, type EdgeMember, type EdgeMemberOptions, type MemberApp } from '../edge/member.ts';

export type { EdgeMemberOptions, FetchHandler, MemberApp } from '../edge/member.ts';

/** Request header that tells a Durable Object its member name (set by the router, never by clients). */
export const MEMBER_HEADER = 'x-session-replication-member';
/** Storage key under which a Durable Object keeps its member name (alarms need it after a restart). */
const MEMBER_KEY = 'session-replication:member';

/** The part of `DurableObjectState` the member uses (declared here so the library needs no Workers types). */
export interface DurableObjectStateLike {
  readonly storage: {
    get<T>(key: string): Promise<T | undefined>;
    put(key: string, value: unknown): Promise<void>;
    getAlarm(): Promise<number | null>;
    setAlarm(scheduledTime: number): Promise<void>;
  };
}

/** The part of a `DurableObjectNamespace` binding the router uses. */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

/** Options of a member Durable Object. */
export interface SessionNodeOptions extends EdgeMemberOptions {
  /** While it is a member, an alarm wakes the Durable Object this often (so it is not evicted as idle). @default 30000 */
  keepAliveMs?: number;
}

/** A Durable Object class hosting one member (export it under the `class_name` your Wrangler config binds). */
export interface SessionNodeClass<E> {
  new (
    state: DurableObjectStateLike,
    env: E,
  ): {
    /** Serves the user's app as this member; the first request (from the router) names the member and starts it. */
    fetch(request: Request): Promise<Response>;
    /** Keep-alive: restarts the member after an eviction and schedules the next alarm. */
    alarm(): Promise<void>;
  };
}

/**
 * Creates the Durable Object class: each instance is the member named by the router (the member name
 * is also the node id and cookie route). `options` may depend on the Worker's `env` (secrets, vars).
 * `cluster.node` is ignored: the Durable Object's name is the node id.
 */
export function createSessionNodeClass<E = unknown>(
  app: MemberApp,
  options: SessionNodeOptions | ((env: E) => SessionNodeOptions),
): SessionNodeClass<E> {
  return class SessionNode {
    readonly #state: DurableObjectStateLike;
    readonly #env: E;
    #member: EdgeMember | undefined;
    #options: SessionNodeOptions | undefined;

    constructor(state: DurableObjectStateLike, env: E) {
      this.#state = state;
      this.#env = env;
    }

    async fetch(request: Request): Promise<Response> {
      const named = request.headers.get(MEMBER_HEADER);
      const member = await this.#start(named ?? undefined);
      if (!member)
        return Response.json(
          {
            error: `no member name: route requests through sessionNodeRouter (header ${MEMBER_HEADER})`,
            code: 'NO_MEMBER_NAME',
          },
          { status: 500 },
        );
      const forwarded = new Request(request);
      forwarded.headers.delete(MEMBER_HEADER);
      return member.fetch(forwarded, this.#env);
    }

    async alarm(): Promise<void> {
      const member = await this.#start(undefined, true);
      member?.node?.logger.debug({ keepAliveMs: this.#options?.keepAliveMs ?? 30_000 }, 'keep-alive alarm');
    }

    /**
     * The running member, started under its stored (or given) name; undefined while it has no name.
     * Schedules the next alarm when none is pending (always from the alarm handler itself).
     */
    async #start(given: string | undefined, fromAlarm = false): Promise<EdgeMember | undefined> {
      if (!this.#member) {
        const stored = await this.#state.storage.get<string>(MEMBER_KEY);
        const name = stored ?? given;
        if (name === undefined) return undefined;
        if (stored === undefined) await this.#state.storage.put(MEMBER_KEY, name);
        if (!this.#member) {
          this.#options ??= typeof options === 'function' ? options(this.#env) : options;
          this.#member = createEdgeMember(app, { ...this.#options, cluster: { ...this.#options.cluster, node: name } });
        }
      }
      // Idempotent; after a failure (logged by the member) each request or alarm tries again.
      this.#member.start().catch(() => undefined);
      // The next alarm wakes this object (or a fresh instance after an eviction) while it is a member.
      if (fromAlarm || (await this.#state.storage.getAlarm()) === null)
        await this.#state.storage.setAlarm(Date.now() + (this.#options?.keepAliveMs ?? 30_000));
      return this.#member;
    }
  };
}

/** Options of the routing Worker. */
export interface SessionRouterOptions {
  /** Name of the Durable Object namespace binding in the Worker's `env`. */
  binding: string;
  /** The member names: one Durable Object each, created on first use. */
  members: readonly string[];
  /** Name of the session cookie (as in the middleware options). @default "SESSIONID" */
  cookieName?: string;
}

/**
 * The Worker (`export default sessionNodeRouter({...})`): sends each request to the member its
 * session cookie routes to (`<key>.<member>`), and a request without one (or naming an unknown member)
 * to a random member. Throws `InvalidOptionsError` for an empty member list or a name that is not a node id.
 */
export function sessionNodeRouter(options: SessionRouterOptions): {
  fetch(request: Request, env: Record<string, unknown>): Promise<Response>;
} {
  if (options.members.length === 0)
    throw new InvalidOptionsError('sessionNodeRouter: members must name at least one member');
  const bad = options.members.filter((name) => !TOKEN_PATTERN.test(name));
  if (bad.length > 0)
    throw new InvalidOptionsError(
      `sessionNodeRouter: member names are node ids, 1-64 characters of A-Z a-z 0-9 _ - (got ${bad.map((n) => JSON.stringify(n)).join(', ')})`,
    );
  const cookieName = options.cookieName ?? 'SESSIONID';
  const router = new Hono<{ Bindings: Record<string, unknown> }>();
  router.all('*', (c) => {
    const namespace = c.env[options.binding] as DurableObjectNamespaceLike | undefined;
    if (!namespace || typeof namespace.idFromName !== 'function') {
      return c.json({ error: `no Durable Object namespace bound as "${options.binding}"`, code: 'NO_BINDING' }, 500);
    }
    const route = parseSessionId(getCookie(c, cookieName))?.route;
    const member =
      route !== undefined && options.members.includes(route)
        ? route
        : options.members[Math.floor(Math.random() * options.members.length)]!;
    const request = new Request(c.req.raw);
    request.headers.set(MEMBER_HEADER, member);
    return namespace.get(namespace.idFromName(member)).fetch(request);
  });
  return { fetch: (request, env) => Promise.resolve(router.fetch(request, env)) };
}
