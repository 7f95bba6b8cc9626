// Owns: fuzzing of the decoder and of the nodes' message handlers with random and mutated valid messages.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { decodeEnvelope } from '../../../lib/codec/envelope.ts';
import { MalformedMessageError } from '../../../lib/errors.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { attributesOn, call, sessionApp, startNodes } from '../../kit/memory-nodes.ts';
import { keyOf } from '../../kit/cookie-client.ts';

const utf8 = new TextEncoder();

/** Replaces one random place in a JSON value with another value. */
function mutate(value: unknown, path: number[], replacement: unknown): unknown {
  if (path.length === 0 || value === null || typeof value !== 'object') return replacement;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  if (entries.length === 0) return replacement;
  const [key, child] = entries[path[0]! % entries.length]!;
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value)
    ? [...value]
    : { ...(value as Record<string, unknown>) };
  (copy as Record<string, unknown>)[key] = mutate(child, path.slice(1), replacement);
  return copy;
}

describe('decoder fuzzing', () => {
  it('random bytes only ever give MalformedMessageError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          decodeEnvelope(bytes, 'c');
        } catch (error) {
          expect(error).toBeInstanceOf(MalformedMessageError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('random JSON only ever gives MalformedMessageError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (json) => {
        try {
          decodeEnvelope(utf8.encode(JSON.stringify(json)), 'c');
        } catch (error) {
          expect(error).toBeInstanceOf(MalformedMessageError);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('message handler fuzzing', () => {
  it('nodes survive random and mutated valid messages on every subject, keep serving, and stay bounded', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b'], { stateTransferTimeoutMs: 500 });
    // Capture real traffic of every kind as seeds for mutation.
    const seeds: { subject: string; json: unknown }[] = [];
    const spy = new MemoryChannel(bus);
    spy.subscribe('sessrep.test.>', (m) => {
      try {
        seeds.push({ subject: m.subject, json: JSON.parse(new TextDecoder().decode(m.data)) });
      } catch {
        // not JSON: ignore
      }
    });
    const app = sessionApp(a!);
    const cookie = (await call(app, 'POST', '/set', { body: { cart: ['x'], n: 1 } })).cookie!;
    await call(app, 'POST', '/set', { cookie, body: { n: 2 } });
    await waitFor('seeds of several kinds', () => new Set(seeds.map((s) => (s.json as { k?: string }).k)).size >= 2);

    const attacker = new MemoryChannel(bus);
    const subjects = [
      'sessrep.test.delta',
      'sessrep.test.hb',
      'sessrep.test.state',
      'sessrep.test.map',
      'sessrep.test.node.a',
      'sessrep.test.node.b',
    ];
    const heapBefore = process.memoryUsage().heapUsed;
    const receivedBefore = b!.stats.messagesReceived;
    const messages = fc.sample(
      fc.oneof(
        fc.record({ subject: fc.constantFrom(...subjects), data: fc.uint8Array({ maxLength: 300 }) }),
        fc
          .record({
            seed: fc.constantFrom(...seeds),
            path: fc.array(fc.nat(20), { minLength: 1, maxLength: 6 }),
            replacement: fc.oneof(fc.jsonValue(), fc.constantFrom('__proto__', -1, 1e308, '', 'sessrep', [[[[[[]]]]]])),
            subject: fc.constantFrom(...subjects),
          })
          .map(({ seed, path, replacement, subject }) => ({
            subject,
            data: utf8.encode(JSON.stringify(mutate(seed.json, path, replacement))),
          })),
      ),
      { numRuns: 20000, seed: 42 },
    );
    for (const [i, { subject, data }] of messages.entries()) {
      attacker.publish(subject, data, i % 7 === 0 ? { reply: '_INBOX.attacker' } : undefined);
      if (i % 500 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await waitFor('the fuzz traffic to be processed', async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      return (b!.stats.dropped.malformed ?? 0) > 1000;
    });

    // Mutated messages that stayed well-formed reached the handlers too.
    expect(b!.stats.messagesReceived - receivedBefore).toBeGreaterThan(100);
    // Nothing ever escaped a handler, the nodes still replicate, and memory stayed bounded.
    expect(a!.stats.dropped['handler-error'] ?? 0).toBe(0);
    expect(b!.stats.dropped['handler-error'] ?? 0).toBe(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // A flood that blocks the event loop past memberDropMs is a stall: the node serves again once it caught up.
    await waitFor('a and b to be ready after the flood', () => a!.ready && b!.ready);
    const after = (await call(app, 'POST', '/set', { cookie, body: { n: 3 } })).status;
    expect(after).toBe(200);
    await waitFor('b to get n=3 after the fuzzing', () => attributesOn(b!, keyOf(cookie))?.n === 3);
    const fresh = await call(sessionApp(b!), 'POST', '/set', { body: { ok: true } });
    await waitFor("a to get b's new session", () => attributesOn(a!, keyOf(fresh.cookie!))?.ok === true);
    expect(a!.membership.members().map((m) => m.node)).toContain('b');
    globalThis.gc?.();
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(200 * 1024 * 1024);
  }, 120_000);
});
