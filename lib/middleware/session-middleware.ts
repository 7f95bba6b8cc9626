/**
 * The Hono middleware: session cookie in, `c.get('session')` for the handler, and after the handler
 * the valve (commit one message, or skip filtered paths) and the route binder (rewrite the cookie's
 * route to this node after a failover). About 410 lines: the request path, from cookie to commit, reads
 * top to bottom in one place; its helpers (response, join-wait, session-version) live beside it.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, generateCookie, getCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import {
  ChangeNotConfirmedError,
  ChangeNotStoredError,
  InvalidOptionsError,
  NodeCatchingUpError,
  SessionIncompleteError,
  NodeDrainingError,
  SessionBehindError,
  SessionReplicationError,
  SessionTooLargeError,
  TooManySessionsError,
} from '../errors.ts';
import { errorResponse } from '../http/error-response.ts';
import type { Logger } from '../logger.ts';
import type { SendMode, SessionManager } from '../managers/manager.ts';
import { compareStamps, type HybridClock, type Stamp } from '../session/clock.ts';
import { parseSessionId } from '../session/ids.ts';
import type { SessionSchema } from '../session/schema.ts';
import { Session, type SessionData, type SessionLimits } from '../session/session.ts';
import { latestStamp, type SessionState } from '../session/state.ts';
import type { ReplicationStats } from '../stats.ts';
import { JOIN_WAIT_MS, joinedWithin } from './join-wait.ts';
import { appendCookie, waitUntilOf } from './response.ts';
import { newestVersion, type PresentedVersion, type SessionVersions } from './session-version.ts';

/** Context variables the middleware sets: `c.get('session')`, typed by the session's `Data`. */
export interface SessionVariables<Data extends SessionData = SessionData> {
  session: Session<Data>;
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
  /**
   * `auto` sets Secure when the client's request came over https: the request URL, or with
   * `trustProxy` the `X-Forwarded-Proto` header a TLS-terminating proxy sets.
   * @default 'auto'
   */
  readonly secure?: boolean | 'auto';
  /**
   * Believe the `X-Forwarded-Proto` header (its first value) when deciding `secure: 'auto'`. Turn it
   * on only behind a proxy that sets the header (ALB, nginx, HAProxy, Cloudflare): clients can send it too.
   * @default false
   */
  readonly trustProxy?: boolean;
  /**
   * Cookie name prefix the browser enforces: `host` sends `__Host-<name>` (Secure, path `/`, no
   * domain: the cookie cannot be set by a sibling subdomain), `secure` sends `__Secure-<name>`.
   * @default none
   */
  readonly cookiePrefix?: 'host' | 'secure';
  /** SameSite attribute; `None` needs Secure. @default 'Lax' */
  readonly sameSite?: 'Strict' | 'Lax' | 'None';
  /**
   * Max-Age of the cookie: a number of seconds, `'expiry'` for when the session expires unless used
   * again (the earlier of the idle timeout and the absolute lifetime; the cookie is then refreshed on
   * every request), or none: a browser-session cookie.
   * @default none
   */
  readonly maxAge?: number | 'expiry';
  /** Partitioned (CHIPS) cookie for third-party contexts; needs Secure. @default false */
  readonly partitioned?: boolean;
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
  /**
   * Resolves once the node joined the cluster (state transfer done). A request that names a session while the node
   * is not ready yet waits for it (at most {@link JOIN_WAIT_MS}), then 503: never a new session for a key it is about
   * to receive. Absent: no wait.
   */
  readonly whenReady?: () => Promise<void>;
  /** True while the node drains: a request whose session is not served here gets 503 + Retry-After (another node takes it). */
  readonly isDraining?: () => boolean;
  /** Absolute lifetime of new sessions in seconds; 0 or absent: none. */
  readonly defaultMaxLifetimeSeconds?: number;
  /** Standard Schemas checked at `set()`, per attribute name. */
  readonly schema?: SessionSchema;
  /** The attribute `setPrincipal()` writes. */
  readonly principalAttribute?: string;
  /**
   * Resolves once an async commit has left this node. On runtimes with `executionCtx.waitUntil`
   * (Cloudflare Workers, Vercel Edge) it is handed there, so the runtime does not cut it off.
   */
  readonly settle?: () => Promise<void>;
  /**
   * Read-your-writes: issues and checks the session version cookie (`<cookie name>_v`). Absent: no
   * version cookie, no check.
   */
  readonly versions?: SessionVersions;
  /** How long a request whose session here is older than the client's version waits for the newer state; then 503. */
  readonly readYourWritesWaitMs?: number;
}

/** The session cookie's name when `cookieName` is not given. */
export const DEFAULT_COOKIE_NAME = 'SESSIONID';

/** The name of the session version cookie that accompanies the session cookie `cookieName` (read-your-writes). */
export function versionCookieName(cookieName: string): string {
  return `${cookieName}_v`;
}

/** The checked cookie settings of one middleware. */
interface CookieSettings {
  readonly name: string;
  readonly path: string;
  readonly domain?: string;
  readonly secure: boolean | 'auto';
  readonly trustProxy: boolean;
  readonly prefix?: 'host' | 'secure';
  readonly sameSite: 'Strict' | 'Lax' | 'None';
  readonly maxAge?: number | 'expiry';
  readonly partitioned: boolean;
}

/** Checks the cookie options; throws `InvalidOptionsError` for combinations browsers reject. */
function cookieSettings(options: SessionMiddlewareOptions): CookieSettings {
  const {
    cookieName = DEFAULT_COOKIE_NAME,
    cookiePath = '/',
    cookieDomain,
    secure = 'auto',
    trustProxy = false,
    cookiePrefix,
    sameSite = 'Lax',
    maxAge,
    partitioned = false,
  } = options;
  const problems: string[] = [];
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(cookieName))
    problems.push("cookieName must be a cookie token (letters, digits, !#$%&'*+-.^_`|~)");
  if (cookiePrefix !== undefined && cookiePrefix !== 'host' && cookiePrefix !== 'secure')
    problems.push("cookiePrefix must be 'host' or 'secure'");
  if (cookiePrefix === 'host' && (cookiePath !== '/' || cookieDomain !== undefined))
    problems.push("cookiePrefix 'host' needs cookiePath '/' and no cookieDomain");
  if (cookiePrefix !== undefined && secure === false)
    problems.push('a cookiePrefix needs Secure: secure must not be false');
  if (!['Strict', 'Lax', 'None'].includes(sameSite)) problems.push("sameSite must be 'Strict', 'Lax' or 'None'");
  if (sameSite === 'None' && secure === false) problems.push("sameSite 'None' needs Secure: secure must not be false");
  if (partitioned && secure === false) problems.push('partitioned needs Secure: secure must not be false');
  if (maxAge !== undefined && maxAge !== 'expiry' && !(Number.isInteger(maxAge) && maxAge > 0))
    problems.push("maxAge must be a positive whole number of seconds or 'expiry'");
  if (problems.length > 0) throw new InvalidOptionsError(`invalid middleware options: ${problems.join('; ')}`);
  return {
    name: cookieName,
    path: cookiePath,
    ...(cookieDomain !== undefined ? { domain: cookieDomain } : {}),
    // A prefixed, SameSite=None or partitioned cookie is always Secure (browsers drop it otherwise).
    secure: cookiePrefix !== undefined || sameSite === 'None' || partitioned ? true : secure,
    trustProxy,
    ...(cookiePrefix !== undefined ? { prefix: cookiePrefix } : {}),
    sameSite,
    ...(maxAge !== undefined ? { maxAge } : {}),
    partitioned,
  };
}

/** Whether the client reached us over https: the request URL, or the proxy's `X-Forwarded-Proto` when trusted. */
function cameOverHttps(c: Context, trustProxy: boolean): boolean {
  const forwarded = trustProxy ? c.req.header('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase() : undefined;
  // The request URL is absolute with its scheme in lower case: no need to parse it (twice a request).
  return forwarded ? forwarded === 'https' : c.req.url.startsWith('https:');
}

/** Builds the session middleware for one cluster node. */
export function sessionMiddleware<Data extends SessionData = SessionData>(
  parts: MiddlewareParts,
  options: SessionMiddlewareOptions = {},
): MiddlewareHandler<{ Variables: SessionVariables<Data> }> {
  const { filter = DEFAULT_FILTER, sendMode = parts.sendMode } = options;
  const cookie = cookieSettings(options);
  const { node, manager, stats, logger } = parts;
  const maxActive = parts.maxActiveSessions ?? -1;
  const domain = cookie.domain !== undefined ? { domain: cookie.domain } : {};
  const prefix = cookie.prefix !== undefined ? { prefix: cookie.prefix } : {};

  const versions = parts.versions;
  const waitMs = parts.readYourWritesWaitMs ?? 0;
  const versionName = versionCookieName(cookie.name);

  const cookieOptions = (c: Context, session: Session<Data>) => {
    const expires = cookie.maxAge === 'expiry' ? session.expiresAt(Date.now()) : undefined;
    const maxAge =
      cookie.maxAge === 'expiry'
        ? expires !== undefined
          ? Math.max(1, Math.ceil((expires - Date.now()) / 1000))
          : undefined
        : cookie.maxAge;
    return {
      path: cookie.path,
      httpOnly: true,
      sameSite: cookie.sameSite,
      secure: cookie.secure === 'auto' ? cameOverHttps(c, cookie.trustProxy) : cookie.secure,
      ...domain,
      ...prefix,
      ...(maxAge !== undefined ? { maxAge } : {}),
      ...(cookie.partitioned ? { partitioned: true } : {}),
    };
  };

  /** What the client's version cookie says about its session `key`; a cookie that does not verify is counted and ignored. */
  const presentedVersion = async (c: Context, key: string): Promise<PresentedVersion> => {
    if (!versions) return { kind: 'none' };
    const presented = await versions.verify(key, getCookie(c, versionName, cookie.prefix));
    if (presented.kind === 'invalid') {
      stats.versionsRejected++;
      logger.debug({ session: key.slice(0, 8) }, 'session version cookie did not verify: ignored');
    }
    return presented;
  };

  /**
   * Read-your-writes: when this node's copy of the session is older than the version the client
   * presents (or missing), waits for the newer state. Resolves to the state to serve (undefined: the
   * session ended, a new one starts), or to a `SessionBehindError` when it did not arrive in time.
   */
  const catchUp = async (
    key: string,
    route: string,
    version: Stamp,
    state: SessionState | undefined,
  ): Promise<SessionState | undefined | SessionBehindError | SessionIncompleteError> => {
    if (!manager.awaitVersion || (state && compareStamps(latestStamp(state), version) >= 0)) return state;
    stats.versionWaits++;
    const started = Date.now();
    const outcome = await manager.awaitVersion(key, version, { waitMs, routeHint: route });
    const fields = { session: key.slice(0, 8), route, writer: version[2], outcome, ms: Date.now() - started };
    if (outcome === 'behind') {
      stats.versionRefusals++;
      logger.info(fields, "read-your-writes: this node's copy stayed older than the client's version: 503");
      return new SessionBehindError();
    }
    if (outcome === 'lost') {
      // Its writer and every member answered without it (or are gone): the newer state died with its holders.
      stats.versionsLost++;
      logger.warn(
        fields,
        "read-your-writes: no member holds the client's version any more: serving what the cluster has",
      );
    } else logger.debug(fields, "read-your-writes: waited for the client's version");
    return outcome === 'ended' ? undefined : resolve(key, route);
  };

  /** `manager.resolve`, or the `SessionIncompleteError` it throws (this node cannot give the whole session yet). */
  const resolve = (key: string, route: string) =>
    manager.resolve(key, route).catch((e: unknown) => (e instanceof SessionIncompleteError ? e : Promise.reject(e)));

  const writeCookie = (c: Context, session: Session<Data>) => {
    appendCookie(c, generateCookie(cookie.name, session.id, cookieOptions(c, session)));
  };

  return createMiddleware<{ Variables: SessionVariables<Data> }>(async function replicatedSession(c, next) {
    // Just after a stall: the deltas that came meanwhile may still wait in the socket. A round trip reads them.
    const draining = manager.drained?.();
    if (draining && !(await joinedWithin(draining, JOIN_WAIT_MS))) return errorResponse(c, new NodeCatchingUpError());
    if (manager.catchingUp) {
      // Its table may be stale after a gap: another node serves the request (nothing was done here).
      return errorResponse(c, new NodeCatchingUpError());
    }
    const requested = parseSessionId(getCookie(c, cookie.name, cookie.prefix));
    // Joining: the session may be on its way in the state transfer. Wait for it rather than start a new one.
    if (requested && !manager.ready && parts.whenReady && !(await joinedWithin(parts.whenReady(), JOIN_WAIT_MS)))
      return errorResponse(c, new NodeCatchingUpError());
    const presented = requested ? await presentedVersion(c, requested.key) : { kind: 'none' as const };
    let state = requested ? await resolve(requested.key, requested.route) : undefined;
    if (requested && presented.kind === 'valid' && !(state instanceof SessionIncompleteError))
      state = await catchUp(requested.key, requested.route, presented.version, state);
    // Never an older copy than the client saw, nor part of a session: another node serves it (nothing was done here).
    if (state instanceof SessionReplicationError) return errorResponse(c, state);
    if (!state && parts.isDraining?.()) {
      // Nothing was done: a load balancer may retry the request on another node (HAProxy `retry-on 503`).
      logger.debug({ route: requested?.route }, 'draining: new session refused');
      return errorResponse(c, new NodeDrainingError());
    }
    const session = new Session<Data>({
      ...(state ? { state } : {}),
      node,
      clock: parts.clock,
      maxSessionBytes: parts.maxSessionBytes,
      defaultMaxInactiveSeconds: parts.defaultMaxInactiveSeconds,
      ...(parts.limits ? { limits: parts.limits } : {}),
      ...(parts.defaultMaxLifetimeSeconds ? { defaultMaxLifetimeSeconds: parts.defaultMaxLifetimeSeconds } : {}),
      ...(parts.schema ? { schema: parts.schema } : {}),
      ...(parts.principalAttribute !== undefined ? { principalAttribute: parts.principalAttribute } : {}),
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
      logger.warn(
        {
          session: session.key.slice(0, 8),
          route: requested?.route,
          bytes: c.error.sizeBytes,
          limit: c.error.limitBytes,
        },
        'session too large: 413, nothing replicated',
      );
      c.res = errorResponse(c, c.error);
      return;
    }
    if (!state && !session.used) return; // No session asked for and nothing written: none created, no cookie.

    const replicate = filter === null || !filter.test(c.req.path);
    if (!replicate) stats.filteredRequests++;
    const changes = session.takeChanges(Date.now());
    // Read before committing: after regenerateId() the commit ends the old key's state, which this session still reads from.
    const valid = session.valid;
    const committed = manager.commit(changes, {
      replicate,
      mode: sendMode,
      ...(requested ? { route: requested.route } : {}),
    });
    // Edge runtimes stop a request's work once the response is sent unless it is handed to waitUntil.
    const waitUntil = sendMode === 'async' && replicate && parts.settle ? waitUntilOf(c) : undefined;
    if (waitUntil && parts.settle) waitUntil(committed.then(parts.settle));
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
    // Async mode too waits for the write to be handed to the channel (the end of this event-loop turn,
    // where concurrent requests' writes share a message), so the response never overtakes it.
    if (replicate && (await committed) === false && sendMode !== 'async') {
      // Not stored in the log (persist) or not confirmed by every member (ack): say so rather than claim it was.
      c.res = errorResponse(c, sendMode === 'persist' ? new ChangeNotStoredError() : new ChangeNotConfirmedError());
      return;
    }

    if (!valid) {
      const removal = {
        path: cookie.path,
        secure: cookie.secure === true || cameOverHttps(c, cookie.trustProxy),
        ...domain,
        ...prefix,
      };
      if (requested) deleteCookie(c, cookie.name, removal);
      if (requested && versions && presented.kind !== 'none') deleteCookie(c, versionName, removal);
      return;
    }
    const rerouted =
      state !== undefined && requested !== undefined && requested.route !== node && requested.key === session.key;
    if (rerouted) {
      stats.routeRewrites++;
      // Debug, not info: a client that keeps sending the old cookie would log a line on every request
      // (the count is in stats.routeRewrites).
      logger.debug({ session: session.key.slice(0, 8), route: requested.route }, 'route rewritten to this node');
    }
    if (!state || rerouted || requested?.key !== session.key || cookie.maxAge === 'expiry') writeCookie(c, session);
    // A filtered request's change has not left this node: a version naming it would hold other nodes back.
    const version =
      versions && replicate
        ? newestVersion([manager.inspect(session.key), changes.deltas.find((d) => d.key === session.key)])
        : undefined;
    const told = presented.kind === 'valid' && requested?.key === session.key ? presented.version : undefined;
    if (versions && version && (!told || compareStamps(version, told) > 0 || cookie.maxAge === 'expiry'))
      appendCookie(
        c,
        generateCookie(versionName, await versions.encode(session.key, version), cookieOptions(c, session)),
      );
  });
}
