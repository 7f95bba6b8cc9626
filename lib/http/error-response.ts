/** The one mapping from a library error to an HTTP answer: `{ error, code }` with its status and Retry-After. */
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { SessionReplicationError } from '../errors.ts';

/** The JSON body of every error answer the library sends. */
export interface ErrorBody {
  /** What went wrong, for people. */
  error: string;
  /** The error's stable code, for programs (`SessionReplicationError.code`). */
  code: string;
}

/**
 * Answers a request that failed with `error`: its `status` (500 when it has none), a `Retry-After`
 * header when it has `retryAfter`, and the body `{ error, code }`.
 */
export function errorResponse(c: Context, error: SessionReplicationError): Response {
  const status = (error.status ?? 500) as ContentfulStatusCode;
  const headers: Record<string, string> =
    error.retryAfter === undefined ? {} : { 'Retry-After': String(error.retryAfter) };
  return c.json<ErrorBody>({ error: error.message, code: error.code }, status, headers);
}
