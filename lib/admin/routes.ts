/**
 * `adminRoutes(node, options)`: the operator surface of one cluster node as a Hono app, for the
 * user to mount on an internal port or under a prefix. Liveness and readiness are separate open
 * probes; everything else sits behind the guard, and nothing sends CORS headers.
 */
import { Hono, type Context } from 'hono';
import type { ClusterNode } from '../index.ts';
import { DASHBOARD_HTML } from './dashboard.ts';
import { adminGuard, type AdminGuardOptions } from './guard.ts';
import { PROMETHEUS_CONTENT_TYPE, renderMetrics } from './metrics.ts';

/** Options of {@link adminRoutes}: the guard (`token` and/or `authorize`, one is required) and extras. */
export interface AdminRoutesOptions extends AdminGuardOptions {
  /**
   * Serve the dashboard at `GET /cluster/ui`.
   * @default true
   */
  readonly dashboard?: boolean;
  /** More Prometheus text appended to `GET /metrics`, such as process metrics (the Node adapter adds them). */
  readonly extraMetrics?: () => string | Promise<string>;
  /**
   * How long the member proxy (`/cluster/members/:node`) waits for another member, in ms.
   * @default 1500
   */
  readonly memberTimeoutMs?: number;
}

const NO_STORE = { 'cache-control': 'no-store' };
/** The dashboard is one inline page that only talks to its own origin. */
const DASHBOARD_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-cache',
  'content-security-policy':
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
};

/**
 * The two open probes alone: `GET /healthz` (liveness: 200 unless the node's channel is closed for
 * good) and `GET /readyz` (readiness: 200 once joined and caught up, 503 while joining or draining).
 * They show no more than readiness, so a load balancer or an orchestrator needs no credentials.
 */
export function probeRoutes(node: ClusterNode): Hono {
  const probes = new Hono();
  probes.get('/healthz', (c) => {
    const alive = node.status().channel.status !== 'closed';
    return c.json(
      { status: alive ? 'alive' : 'closed', node: node.node, ready: node.ready },
      alive ? 200 : 503,
      NO_STORE,
    );
  });
  probes.get('/readyz', (c) => {
    const status = node.status();
    const reason = !status.ready ? 'joining' : status.draining ? 'draining' : undefined;
    return c.json(
      {
        ready: reason === undefined,
        node: node.node,
        stateTransfer: status.stateTransfer.state,
        ...(status.draining ? { draining: true } : {}),
        ...(reason ? { reason } : {}),
      },
      reason === undefined ? 200 : 503,
      NO_STORE,
    );
  });
  return probes;
}

/**
 * Builds the admin routes of one node: the probes of {@link probeRoutes} plus the guarded routes. Throws `InvalidOptionsError` without a guard.
 *
 * Guarded: `GET /cluster`, `GET /cluster/sessions?limit=`, `POST /cluster/drain`, `GET /cluster/drain`,
 * `GET /cluster/principals/:id/sessions` (a user's sessions cluster-wide, key prefixes only),
 * `DELETE /cluster/principals/:id/sessions` (end them on every node: "log out everywhere"),
 * `GET /cluster/members/:node[/sessions]` (another member's view, fetched by this node from the
 * member's advertised URL under the same mount path), `GET /cluster/ui`, `GET /metrics`.
 *
 * @example
 * const admin = new Hono().route('/admin', adminRoutes(node, { token: process.env.ADMIN_TOKEN }));
 */
export function adminRoutes(node: ClusterNode, options: AdminRoutesOptions): Hono {
  const { dashboard = true, extraMetrics, memberTimeoutMs = 1500 } = options;
  const guard = adminGuard(options);
  const admin = probeRoutes(node);

  admin.get('/cluster', guard, (c) => c.json(node.status(), 200, NO_STORE));
  admin.get('/cluster/sessions', guard, (c) => {
    const limit = parseLimit(c.req.query('limit'));
    if (limit === undefined)
      return c.json({ error: 'limit must be an integer from 1 to 1000', code: 'INVALID_LIMIT' }, 400, NO_STORE);
    return c.json(node.sessions(limit), 200, NO_STORE);
  });
  admin.post('/cluster/drain', guard, (c) => {
    // Not from another site's page (a browser holding Basic credentials sends Origin on a cross-origin POST).
    const origin = c.req.header('origin');
    if (origin !== undefined && origin !== new URL(c.req.url).origin)
      return c.json({ error: 'cross-origin drain refused', code: 'FORBIDDEN' }, 403, NO_STORE);
    node.drain().catch((error: unknown) => node.logger.error({ error }, 'draining failed'));
    return c.json(node.drainStatus(), 202, NO_STORE);
  });
  admin.get('/cluster/drain', guard, (c) => c.json(node.drainStatus(), 200, NO_STORE));
  admin.get('/cluster/principals/:principal/sessions', guard, async (c) => {
    const principal = c.req.param('principal');
    // The key is a credential: an operator sees its first 8 characters, as on /cluster/sessions.
    const sessions = (await node.findByPrincipal(principal)).map((s) => ({ ...s, key: s.key.slice(0, 8) }));
    return c.json({ principal, total: sessions.length, sessions }, 200, NO_STORE);
  });
  admin.delete('/cluster/principals/:principal/sessions', guard, async (c) => {
    const origin = c.req.header('origin');
    if (origin !== undefined && origin !== new URL(c.req.url).origin)
      return c.json({ error: 'cross-origin request refused', code: 'FORBIDDEN' }, 403, NO_STORE);
    const principal = c.req.param('principal');
    const ended = await node.endSessionsOf(principal);
    node.logger.info({ principal: principal.slice(0, 64), ended }, "admin: ended a principal's sessions");
    return c.json({ principal, ended }, 200, NO_STORE);
  });
  admin.get('/cluster/members/:member', guard, (c) => fromMember(c, '/cluster'));
  admin.get('/cluster/members/:member/sessions', guard, (c) =>
    fromMember(c, `/cluster/sessions${new URL(c.req.url).search}`),
  );
  if (dashboard) admin.get('/cluster/ui', guard, (c) => c.body(DASHBOARD_HTML, 200, DASHBOARD_HEADERS));
  admin.get('/metrics', guard, async (c) => {
    const text = renderMetrics(node) + (extraMetrics ? await extraMetrics() : '');
    return c.body(text, 200, { 'content-type': PROMETHEUS_CONTENT_TYPE, ...NO_STORE });
  });

  /** Another member's `/cluster` or `/cluster/sessions`, fetched with the caller's credentials. */
  async function fromMember(c: Context, path: string): Promise<Response> {
    const name = c.req.param('member');
    const member = node.status().members.find((m) => m.node === name);
    if (!member) return c.json({ error: `no member ${name}`, code: 'UNKNOWN_MEMBER' }, 404, NO_STORE);
    if (member.url === undefined)
      return c.json({ error: `member ${name} advertises no URL`, code: 'NO_MEMBER_URL' }, 404, NO_STORE);
    // This router's mount path: the request path without the route's own part.
    const mount = c.req.path.slice(0, c.req.path.lastIndexOf('/cluster/members/'));
    const headers: Record<string, string> = { accept: 'application/json' };
    const authorization = c.req.header('authorization');
    if (authorization !== undefined) headers.authorization = authorization;
    try {
      const res = await fetch(`${member.url.replace(/\/+$/, '')}${mount}${path}`, {
        headers,
        signal: AbortSignal.timeout(memberTimeoutMs),
        redirect: 'error',
      });
      return new Response(await res.text(), {
        status: res.status,
        headers: { 'content-type': res.headers.get('content-type') ?? 'application/json', ...NO_STORE },
      });
    } catch (error) {
      return c.json(
        {
          error: `member ${name} did not answer: ${error instanceof Error ? error.message : String(error)}`,
          code: 'MEMBER_UNREACHABLE',
        },
        502,
        NO_STORE,
      );
    }
  }

  return admin;
}

/** `?limit=` as an integer from 1 to 1000 (default 200), or undefined when it is not one. */
function parseLimit(raw = '200'): number | undefined {
  if (!/^\d+$/.test(raw)) return undefined;
  const limit = Number(raw);
  return limit >= 1 && limit <= 1000 ? limit : undefined;
}
