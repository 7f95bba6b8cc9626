// Owns: unit tests of what the Web-runtime adapters refuse before any I/O: NATS URLs that are not
// WebSocket URLs, and an adapter loaded on the wrong runtime. The members run for real on Deno, Bun
// and workerd in test/package/{deno,bun,cloudflare}.test.ts and test/e2e/edge-runtime.test.ts.
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { serveBun } from '../../adapters/bun/index.ts';
import { serveDeno } from '../../adapters/deno/index.ts';
import { createEdgeMember } from '../../adapters/edge/member.ts';
import { InvalidOptionsError, UnsupportedRuntimeError } from '../../lib/errors.ts';

const cluster = { cluster: 'shop' };

describe('Web-runtime member options', () => {
  it.each([
    [{}, /nats\.servers must name the NATS WebSocket URL/],
    [{ servers: [] }, /nats\.servers must name the NATS WebSocket URL/],
    [
      { servers: 'nats://127.0.0.1:4222' },
      /ws:\/\/ or wss:\/\/ URLs on a Web runtime \(got "nats:\/\/127\.0\.0\.1:4222"\)/,
    ],
    [{ servers: ['wss://a.example:443', 'tls://b.example:4222'] }, /\(got "tls:\/\/b\.example:4222"\)/],
  ])('refuses nats %o with InvalidOptionsError', (nats, message) => {
    expect(() => createEdgeMember(new Hono(), { nats, cluster })).toThrow(InvalidOptionsError);
    expect(() => createEdgeMember(new Hono(), { nats, cluster })).toThrow(message);
  });

  it('takes ws:// and wss:// URLs, and does no I/O until started', () => {
    const member = createEdgeMember(new Hono(), {
      nats: { servers: ['ws://127.0.0.1:1', 'wss://nats.example.com'] },
      cluster,
    });
    expect(member.node).toBeUndefined();
  });

  it('serveDeno and serveBun refuse to run elsewhere with UnsupportedRuntimeError', async () => {
    const options = { nats: { servers: 'ws://127.0.0.1:1' }, cluster };
    await expect(serveDeno(new Hono(), options)).rejects.toThrow(UnsupportedRuntimeError);
    await expect(serveDeno(new Hono(), options)).rejects.toThrow('session-replication/deno runs on Deno only');
    await expect(serveBun(new Hono(), options)).rejects.toMatchObject({
      code: 'UNSUPPORTED_RUNTIME',
      entry: 'session-replication/bun',
      runtime: 'Bun',
    });
  });
});
