/** The demo app every node serves: a session API, a counter, and the cluster's health and status. */
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { SessionReplicationError, UnserializableValueError, type ClusterNode, type Session, type SessionVariables } from '../lib/index.ts';

/** The session as the demo API shows it. */
function describe(session: Session, node: string) {
  return {
    id: session.id,
    node,
    isNew: session.isNew,
    createdAt: session.createdAt,
    lastAccessedAt: session.lastAccessedAt,
    maxInactiveInterval: session.maxInactiveInterval,
    attributes: session.attributes(),
  };
}

/** JSON for values JSON cannot hold: Date as ISO text, Map/Set/bytes/bigint as tagged objects. */
function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  if (value instanceof Map) return { $map: [...value.entries()] };
  if (value instanceof Set) return { $set: [...value] };
  if (value instanceof Uint8Array) return { $bytes: btoa(String.fromCharCode(...value)) };
  return value;
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, jsonSafe), { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } });
}

/** `/cluster` and `/cluster/sessions` are read by the dashboard of every other member, from its own origin. */
const CLUSTER_VIEW_HEADERS = { 'access-control-allow-origin': '*', 'cache-control': 'no-store' };

/** Parts a runtime plugs into the demo app, which itself stays runtime-neutral. */
export interface DemoAppOptions {
  /** The dashboard page for `GET /cluster/ui` (the Node server reads functions/dashboard/index.html). */
  readonly dashboardHtml?: string;
  /** Answers `GET /metrics` (Prometheus text); the Node server passes one built on prom-client. */
  readonly metrics?: () => Response | Promise<Response>;
}

/** Builds the demo Hono app on a cluster node. */
export function createDemoApp(sessions: ClusterNode, options: DemoAppOptions = {}): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  const node = sessions.node;

  app.get('/healthz', (c) => {
    const ready = sessions.ready;
    // A draining node answers 503 so a load balancer stops sending it traffic.
    const draining = sessions.drainStatus().state !== 'serving';
    return c.json({ ready, node, stateTransfer: sessions.status().stateTransfer.state, ...(draining ? { draining } : {}) }, ready && !draining ? 200 : 503);
  });
  app.post('/cluster/drain', (c) => {
    // Not from another site's page: a browser sends Origin on a cross-origin POST (curl and the CLI send none).
    const origin = c.req.header('origin');
    if (origin !== undefined && origin !== new URL(c.req.url).origin) return json({ error: 'cross-origin drain refused' }, 403);
    sessions.drain().catch((error: unknown) => sessions.logger.error({ error }, 'draining failed'));
    return json(sessions.drainStatus(), 202, { 'cache-control': 'no-store' });
  });
  app.get('/cluster/drain', () => json(sessions.drainStatus(), 200, CLUSTER_VIEW_HEADERS));
  app.get('/cluster', () => json(sessions.status(), 200, CLUSTER_VIEW_HEADERS));
  app.get('/cluster/sessions', (c) => {
    const raw = c.req.query('limit') ?? '200';
    const limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) return json({ error: 'limit must be an integer from 1 to 1000' }, 400, CLUSTER_VIEW_HEADERS);
    return json(sessions.sessions(limit), 200, CLUSTER_VIEW_HEADERS);
  });
  const { dashboardHtml, metrics } = options;
  if (dashboardHtml !== undefined) {
    app.get('/cluster/ui', () => new Response(dashboardHtml, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' } }));
  }
  if (metrics) app.get('/metrics', () => metrics());

  app.use('/session/*', sessions.middleware());
  app.use('/counter', sessions.middleware());

  app.get('/session', (c) => json(describe(c.get('session'), node)));

  app.put('/session/attributes/:name', async (c) => {
    const text = await c.req.text();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new HTTPException(400, { message: 'the body must be a JSON value' });
    }
    const session = c.get('session');
    session.set(c.req.param('name'), value);
    return json(describe(session, node));
  });

  app.delete('/session/attributes/:name', (c) => {
    const session = c.get('session');
    session.delete(c.req.param('name'));
    return json(describe(session, node));
  });

  app.put('/session/max-inactive-interval', async (c) => {
    const seconds = Number(await c.req.text());
    if (!Number.isInteger(seconds)) throw new HTTPException(400, { message: 'the body must be an integer number of seconds' });
    const session = c.get('session');
    session.maxInactiveInterval = seconds;
    return json(describe(session, node));
  });

  app.post('/session/regenerate', (c) => {
    const session = c.get('session');
    session.regenerateId();
    return json(describe(session, node));
  });

  app.post('/session/invalidate', (c) => {
    c.get('session').invalidate();
    return c.body(null, 204);
  });

  app.post('/counter', (c) => {
    const session = c.get('session');
    const counter = (session.get<number>('counter') ?? 0) + 1;
    session.set('counter', counter);
    return c.json({ counter, node });
  });

  app.onError((error, c) => {
    if (error instanceof HTTPException) return c.json({ error: error.message }, error.status);
    if (error instanceof UnserializableValueError) return c.json({ error: error.message, code: error.code }, 400);
    if (error instanceof SessionReplicationError) return c.json({ error: error.message, code: error.code }, 400);
    sessions.logger.error({ error, path: c.req.path }, 'request failed');
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}
