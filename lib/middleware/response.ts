/**
 * What the session middleware does to a finished response: add a cookie without copying it, and
 * find the runtime's `waitUntil`. Both sit on every request's path, so both avoid Hono's costly
 * fallbacks (a copied response with a streamed body; a thrown error with a stack trace).
 */
import type { Context } from 'hono';

/**
 * Adds a `Set-Cookie` header to the handler's response. Hono's `setCookie` on a finished response
 * copies it with a streamed body, which @hono/node-server then writes on its slow path (about 75 us
 * a request); the response's own headers are changed instead where they can be (a constructed
 * Response), and a copy is made only where they cannot (e.g. `Response.redirect()`).
 */
export function appendCookie(c: Context, header: string): void {
  if (c.finalized) {
    try {
      c.res.headers.append('Set-Cookie', header);
      return;
    } catch {
      // Immutable headers: Hono copies the response below.
    }
  }
  c.header('Set-Cookie', header, { append: true });
}

/** The runtime's `waitUntil` (Cloudflare Workers, Vercel Edge), or undefined where there is none. */
export function waitUntilOf(c: Context): ((promise: Promise<unknown>) => void) | undefined {
  // Hono's getter throws when the runtime passed no execution context (Node, on every request):
  // without a stack trace the throw costs little (the profile showed about 2 % of a node's CPU).
  const errors = Error as ErrorConstructor & { stackTraceLimit?: number }; // V8's; elsewhere a harmless property
  const stackTraceLimit = errors.stackTraceLimit;
  errors.stackTraceLimit = 0;
  try {
    const ctx = c.executionCtx;
    return typeof ctx?.waitUntil === 'function' ? (promise) => ctx.waitUntil(promise) : undefined;
  } catch {
    return undefined;
  } finally {
    errors.stackTraceLimit = stackTraceLimit;
  }
}
