/**
 * The Hono middleware: session cookie in, `c.get('session')` for the handler, and after the handler
 * the valve (commit one message, or skip filtered paths) and the route binder (rewrite the cookie's
 * route to this node after a failover).
 */
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import { ChangeNotConfirmedError, ChangeNotStoredError, NodeCatchingUpError, NodeDrainingError, SessionTooLargeError, TooManySessionsError } from '../errors.ts';
import { errorResponse } from '../http/error-response.ts';
import type { Logger } from '../logger.ts';
import type { SendMode, SessionManager } from '../managers/manager.ts';
import type { HybridClock } from '../session/clock.ts';
import { parseSessionId } from '../session/ids.ts';
import { Session, type SessionLimits } from '../session/session.ts';
import type { ReplicationStats } from '../stats.ts';

/** Context variables the middleware sets: `c.get('session')`. */
export interface SessionVariables {
  session: Session;
}

/** Paths the valve skips by default: common static files (Tomcat's usual `filter`). */
export const DEFAULT_FILTER = /\.(?:css|js|mjs|map|png|jpe?g|gif|svg|ico|webp|avif|woff2?|ttf|eot|txt|html?)$/i;

/** Cookie and valve settings of the middleware. */
export interface SessionMiddlewareOptions {
  /**
   * Cookie name.
   * @default DEFAULT_COOKIE_NAME (`SESSIONID`)
   */
  readonly cookieName?: string;
  /** Cookie path; default `/`. */
  readonly cookiePath?: string;
  /** Cookie domain; default none (host only). */
  readonly cookieDomain?: string;
  /** `auto` (default) sets Secure when the request came over https. */
  readonly secure?: boolean | 'auto';
  /** Paths matching this are not replicated (their changes leave with the next request); null replicates all. */
  readonly filter?: RegExp | null;
  /** Overrides the cluster's send mode for this middleware. */
  readonly sendMode?: SendMode;
}

/** What the middleware needs from the cluster. */
export interface MiddlewareParts {
  readonly node: string;
  readonly manager: SessionManager;
  readonly clock: HybridClock;
  readonly stats: ReplicationStats;
  /** The node's logger: it binds `node` (and `cluster`), so lines here add only `session` and `route`. */
  readonly logger: Logger;
  readonly maxSessionBytes: number;
  readonly defaultMaxInactiveSeconds: number;
  readonly sendMode: SendMode;
  /** Attribute count, name length and value depth limits. */
  readonly limits?: Partial<SessionLimits>;
  /** New sessions are refused (503) while this node holds this many; <= 0: unlimited (Tomcat's default -1). */
  readonly maxActiveSessions?: number;
  /** True while the node drains: a request whose session is not served here gets 503 + Retry-After (another node takes it). */
  readonly isDraining?: () => boolean;
}

/** The session cookie's name when `cookieName` is not given. */
export const DEFAULT_COOKIE_NAME = 'SESSIONID';

/** Builds the session middleware for one cluster node. */
export function sessionMiddleware(parts: MiddlewareParts, options: SessionMiddlewareOptions = {}): MiddlewareHandler<{ Variables: SessionVariables }> {
  const { cookieName = DEFAULT_COOKIE_NAME, cookiePath = '/', cookieDomain, secure = 'auto', filter = DEFAULT_FILTER, sendMode = parts.sendMode } = options;
  const { node, manager, stats, logger } = parts;
  const maxActive = parts.maxActiveSessions ?? -1;

  const writeCookie = (c: Context, value: string) =>
    setCookie(c, cookieName, value, {
      path: cookiePath,
      httpOnly: true,
      sameSite: 'Lax',
      secure: secure === 'auto' ? new URL(c.req.url).protocol === 'https:' : secure,
      ...(cookieDomain !== undefined ? { domain: cookieDomain } : {}),
    });

  return createMiddleware<{ Variables: SessionVariables }>(async function replicatedSession(c, next) {
    if (manager.catchingUp) {
      // Its table may be stale after a gap: another node serves the request (nothing was done here).
      return errorResponse(c, new NodeCatchingUpError());
    }
    const requested = parseSessionId(getCookie(c, cookieName));
    const state = requested ? await manager.resolve(requested.key, requested.route) : undefined;
    if (!state && parts.isDraining?.()) {
      // Nothing was done: a load balancer may retry the request on another node (HAProxy `retry-on 503`).
      logger.debug({ route: requested?.route }, 'draining: new session refused');
      return errorResponse(c, new NodeDrainingError());
    }
    const session = new Session({
      ...(state ? { state } : {}),
      node,
      clock: parts.clock,
      maxSessionBytes: parts.maxSessionBytes,
      defaultMaxInactiveSeconds: parts.defaultMaxInactiveSeconds,
      ...(parts.limits ? { limits: parts.limits } : {}),
      ...(maxActive > 0 ? { admit: () => (manager.activeSessions() >= maxActive ? maxActive : undefined) } : {}),
    });
    c.set('session', session);

    await next();

    if (c.error instanceof TooManySessionsError) {
      stats.rejectedSessions++;
      logger.warn({ node, limit: c.error.limit }, 'new session refused: maxActiveSessions reached');
      c.res = errorResponse(c, c.error);
      return;
    }
    if (c.error instanceof SessionTooLargeError) {
      stats.oversizedRejected++;
      logger.warn({ session: session.key.slice(0, 8), route: requested?.route, bytes: c.error.sizeBytes, limit: c.error.limitBytes }, 'session too large: 413, nothing replicated');
      c.res = errorResponse(c, c.error);
      return;
    }
    if (!state && !session.used) return; // No session asked for, none created.

    const replicate = filter === null || !filter.test(c.req.path);
    if (!replicate) stats.filteredRequests++;
    const changes = session.takeChanges(Date.now());
    // Read before committing: after regenerateId() the commit ends the old key's state, which this session still reads from.
    const valid = session.valid;
    const committed = manager.commit(changes, { replicate, mode: sendMode, ...(requested ? { route: requested.route } : {}) });
    logger.debug(
      {
        session: session.key.slice(0, 8),
        route: requested?.route,
        ...(requested && requested.key !== session.key ? { requested: requested.key.slice(0, 8) } : {}),
        found: state !== undefined,
        modified: changes.modified,
        replicate,
        mode: sendMode,
      },
      'session request',
    );
    if (sendMode !== 'async' && replicate && (await committed) === false) {
      // Not stored in the log (persist) or not confirmed by every member (ack): say so rather than claim it was.
      c.res = errorResponse(c, sendMode === 'persist' ? new ChangeNotStoredError() : new ChangeNotConfirmedError());
      return;
    }

    if (!valid) {
      if (requested) deleteCookie(c, cookieName, { path: cookiePath, ...(cookieDomain !== undefined ? { domain: cookieDomain } : {}) });
      return;
    }
    const rerouted = state !== undefined && requested !== undefined && requested.route !== node && requested.key === session.key;
    if (rerouted) {
      stats.routeRewrites++;
      logger.info({ session: session.key.slice(0, 8), route: requested.route }, 'route rewritten to this node');
    }
    if (!state || rerouted || requested?.key !== session.key) writeCookie(c, session.id);
  });
}
