/** The demo app every node serves: a session API and a counter, next to the library's admin routes. */
import { Hono } from 'hono';
import { adminRoutes, probeRoutes, type AdminRoutesOptions } from 'session-replication/admin';
import { HTTPException } from 'hono/http-exception';
import {
  SessionReplicationError,
  UnserializableValueError,
  type ClusterNode,
  type Session,
  type SessionMiddlewareOptions,
  type SessionVariables,
} from 'session-replication';

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

function json(body: unknown): Response {
  return new Response(JSON.stringify(body, jsonSafe), {
    headers: { 'content-type': 'application/json; charset=utf-8' },
  });
}

/** Parts a runtime plugs into the demo app, which itself stays runtime-neutral. */
export interface DemoAppOptions {
  /**
   * The admin routes (`/cluster`, drain, `/cluster/ui`, `/metrics`) with their guard, mounted at the
   * root; omitted: only the open probes `/healthz` and `/readyz`.
   */
  readonly admin?: AdminRoutesOptions;
  /** Cookie and valve options of the session middleware (`trustProxy` behind a TLS-terminating proxy). */
  readonly session?: SessionMiddlewareOptions;
}

/** Builds the demo Hono app on a cluster node: a session API, a counter, and the library's admin routes. */
export function createDemoApp(
  sessions: ClusterNode,
  options: DemoAppOptions = {},
): Hono<{ Variables: SessionVariables }> {
  const app = new Hono<{ Variables: SessionVariables }>();
  const node = sessions.node;
  app.route('/', options.admin ? adminRoutes(sessions, options.admin) : probeRoutes(sessions));

  app.use('/session/*', sessions.middleware(options.session));
  app.use('/counter', sessions.middleware(options.session));

  // The demo hands out a session on GET /session (reads alone create none: touch() asks for one).
  app.get('/session', (c) => {
    c.get('session').touch();
    return json(describe(c.get('session'), node));
  });

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
    if (!Number.isInteger(seconds))
      throw new HTTPException(400, { message: 'the body must be an integer number of seconds' });
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
