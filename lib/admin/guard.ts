/**
 * The admin guard: every operator route needs a token (a bearer token, or the password of HTTP
 * Basic auth so a browser can open the dashboard) or an `authorize(c)` hook that says yes.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { timingSafeEqual } from 'hono/utils/buffer';
import { InvalidOptionsError } from '../errors.ts';

/** Who may use the admin routes. Give `token`, `authorize`, or both (then both must pass). */
export interface AdminGuardOptions {
  /**
   * A shared secret, compared in constant time. Sent as `Authorization: Bearer <token>`, or as the
   * password of HTTP Basic auth (any user name) so a browser can open the dashboard.
   */
  readonly token?: string;
  /**
   * Decides per request, after the token (when one is set) matched. `false` answers 403. For an
   * admin port only an internal network can reach, `authorize: () => true` is an explicit choice.
   */
  readonly authorize?: (c: Context) => boolean | Promise<boolean>;
  /**
   * The realm named in `WWW-Authenticate`.
   * @default 'session-replication admin'
   */
  readonly realm?: string;
}

/** Tokens shorter than this are refused at creation: a guess-able token is no guard. */
const MIN_TOKEN_LENGTH = 16;

/**
 * Builds the guard middleware. Throws `InvalidOptionsError` without `token` or `authorize`, or
 * with a token shorter than 16 characters. Answers 401 (with a `WWW-Authenticate` challenge)
 * when the token is missing or wrong, 403 when `authorize` refuses.
 */
export function adminGuard(options: AdminGuardOptions): MiddlewareHandler {
  const { token, authorize, realm = 'session-replication admin' } = options;
  if (token === undefined && authorize === undefined) {
    throw new InvalidOptionsError(
      'the admin routes need a guard: pass `token` or `authorize(c)` (`authorize: () => true` only on a port no one outside can reach)',
    );
  }
  if (token !== undefined && (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH)) {
    throw new InvalidOptionsError(`the admin token must be a string of at least ${MIN_TOKEN_LENGTH} characters`);
  }
  if (authorize !== undefined && typeof authorize !== 'function')
    throw new InvalidOptionsError('`authorize` must be a function of the request context');
  const challenge = `Basic realm="${realm.replaceAll('"', "'")}", charset="UTF-8"`;

  return async function adminGuardMiddleware(c, next) {
    if (token !== undefined) {
      const presented = presentedToken(c.req.header('authorization'));
      if (presented === undefined || !(await timingSafeEqual(presented, token))) {
        return c.json(
          {
            error: presented === undefined ? 'admin credentials required' : 'wrong admin credentials',
            code: 'UNAUTHORIZED',
          },
          401,
          {
            'www-authenticate': challenge,
            'cache-control': 'no-store',
          },
        );
      }
    }
    if (authorize !== undefined && !(await authorize(c)))
      return c.json({ error: 'not allowed', code: 'FORBIDDEN' }, 403, { 'cache-control': 'no-store' });
    await next();
  };
}

/** The token in `Authorization: Bearer <token>` or the password of `Authorization: Basic ...`. */
function presentedToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const space = header.indexOf(' ');
  if (space < 0) return undefined;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer') return value || undefined;
  if (scheme !== 'basic') return undefined;
  try {
    const decoded = new TextDecoder().decode(Uint8Array.from(atob(value), (ch) => ch.charCodeAt(0)));
    const colon = decoded.indexOf(':');
    return colon < 0 ? undefined : decoded.slice(colon + 1);
  } catch {
    return undefined;
  }
}
