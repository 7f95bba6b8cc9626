// Owns: unit tests of lib/http/error-response.ts (one error → HTTP answer mapping).
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import {
  ChangeNotStoredError,
  InvalidOptionsError,
  NodeDrainingError,
  SessionTooLargeError,
  TooManySessionsError,
  type SessionReplicationError,
} from '../../../lib/errors.ts';
import { errorResponse } from '../../../lib/http/error-response.ts';

/** The answer an app gives when its handler answers with `errorResponse(c, error)`. */
async function answer(error: SessionReplicationError) {
  const app = new Hono().get('/', (c) => errorResponse(c, error));
  const res = await app.request('/');
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    type: res.headers.get('content-type'),
    body: await res.json(),
  };
}

describe('errorResponse', () => {
  it.each([
    [new SessionTooLargeError(5000, 4096), 413, null],
    [new TooManySessionsError(2), 503, '10'],
    [new NodeDrainingError(), 503, '1'],
    [new ChangeNotStoredError(), 503, '1'],
    [new InvalidOptionsError('bad'), 500, null],
  ])('%s answers its status, Retry-After and { error, code }', async (error, status, retryAfter) => {
    expect(await answer(error)).toEqual({
      status,
      retryAfter,
      type: expect.stringContaining('application/json'),
      body: { error: error.message, code: error.code },
    });
  });
});
