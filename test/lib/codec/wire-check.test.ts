// Owns: lib/codec/wire-check.ts — the hand checks accept exactly what the zod body schemas of envelope.ts accept.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bodySchemas } from '../../../lib/codec/envelope.ts';
import { checkHotBody, type HotKind } from '../../../lib/codec/wire-check.ts';

const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const time = fc.nat({ max: 2 ** 45 });
const stamp = fc.tuple(time, fc.nat(), token);
const setting = fc.tuple(fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), stamp);
const attribute = fc.oneof(
  fc.tuple(fc.string({ minLength: 1, maxLength: 256 }), stamp),
  fc.tuple(fc.string({ minLength: 1, maxLength: 256 }), stamp, fc.string({ maxLength: 12 })),
);
const wireState = fc.record(
  {
    k: fc.string({ minLength: 1, maxLength: 64 }),
    c: time,
    a: time,
    ab: token,
    m: setting,
    x: fc.array(attribute, { maxLength: 3 }),
    e: fc.tuple(stamp, fc.constantFrom('invalidated', 'expired', 'regenerated')),
    l: setting,
    b: stamp,
  },
  { requiredKeys: ['k', 'c', 'a', 'ab', 'm', 'x'] },
);
const holder = fc.oneof(token, fc.constant(''));
const wireEntry = fc.oneof(
  fc.tuple(fc.string({ minLength: 1, maxLength: 64 }), holder, holder, stamp),
  fc.tuple(fc.string({ minLength: 1, maxLength: 64 }), holder, holder, stamp, fc.constant(1)),
);

const validBody: { [K in HotKind]: fc.Arbitrary<Record<string, unknown>> } = {
  delta: fc.record(
    { id: fc.string({ minLength: 1, maxLength: 64 }), s: fc.array(wireState, { maxLength: 3 }), r: fc.string() },
    { requiredKeys: ['id', 's'] },
  ),
  copy: fc.record(
    {
      id: fc.string({ minLength: 1, maxLength: 64 }),
      e: fc.array(wireEntry, { maxLength: 3 }),
      s: fc.array(wireState, { maxLength: 3 }),
      fwd: fc.boolean(),
      write: fc.boolean(),
    },
    { requiredKeys: ['id', 'e', 's'] },
  ),
  ack: fc.record({ id: fc.string({ minLength: 1, maxLength: 64 }) }),
  map: fc.record({ e: fc.array(wireEntry, { maxLength: 4 }) }),
  ping: fc.constant({}),
  pong: fc.record({ ready: fc.boolean() }),
};
const KINDS = Object.keys(validBody) as HotKind[];

/** Values at the edges of what the schemas accept: each replaces a field or element somewhere in a valid body. */
const edgeValue = fc.constantFrom<unknown>(
  -1,
  0,
  1,
  1.5,
  2 ** 53,
  -(2 ** 53),
  Number.POSITIVE_INFINITY,
  '',
  'a',
  'a.b',
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(257),
  'expired',
  'deleted',
  null,
  true,
  false,
  [],
  {},
  [1, 0, 'n'],
  [1, -1, 'n'],
  [1, 0, 'n', 'extra'],
  ['a', [1, 0, 'n']],
  ['a', [1, 0, 'n'], 5],
);

type Mutation = { kind: 'set' | 'delete' | 'push' | 'pop'; pick: number; value: unknown };

/** Every object and array inside `value`, itself included. */
function containers(value: unknown, out: (unknown[] | Record<string, unknown>)[] = []): typeof out {
  if (typeof value !== 'object' || value === null) return out;
  out.push(value as Record<string, unknown>);
  for (const child of Object.values(value)) containers(child, out);
  return out;
}

/** Changes one place in a copy of `body`: a field or element set to an edge value, deleted, added or removed. */
function mutate(body: Record<string, unknown>, { kind, pick, value }: Mutation): unknown {
  const copy = structuredClone(body);
  const all = containers(copy);
  const target = all[pick % all.length]!;
  if (Array.isArray(target)) {
    if (kind === 'push') target.push(value);
    else if (kind === 'pop') target.pop();
    else if (target.length > 0) target[pick % target.length] = value;
    else target.push(value);
    return copy;
  }
  const keys = Object.keys(target);
  const key = keys.length > 0 ? keys[pick % keys.length]! : 'extra';
  if (kind === 'delete') delete target[key];
  else if (kind === 'push') target[`extra${pick}`] = value;
  else target[key] = value;
  return copy;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('set', 'delete', 'push', 'pop'),
  pick: fc.nat(),
  value: edgeValue,
});

/** What zod makes of a body: its output, or undefined when it rejects it. */
function zodOutput(kind: HotKind, body: unknown): unknown {
  const parsed = bodySchemas[kind].safeParse(body);
  return parsed.success ? parsed.data : undefined;
}

describe('checkHotBody agrees with the zod body schemas', () => {
  it.each(KINDS)('accepts every valid %s body and returns what zod returns', (kind) => {
    fc.assert(
      fc.property(validBody[kind], (body) => {
        const expected = zodOutput(kind, body);
        expect(expected).toBeDefined();
        expect(checkHotBody(kind, body)).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it.each(KINDS)('rejects exactly what zod rejects in mutated %s bodies', (kind) => {
    fc.assert(
      fc.property(validBody[kind], fc.array(mutation, { minLength: 1, maxLength: 3 }), (body, mutations) => {
        const mutated = mutations.reduce<unknown>((b, m) => mutate(b as Record<string, unknown>, m), body);
        // Sessions stay in their wire form, unknown keys included (the conversion reads the known ones): compare acceptance.
        expect(checkHotBody(kind, mutated) !== undefined).toBe(zodOutput(kind, mutated) !== undefined);
      }),
      { numRuns: 1500 },
    );
  });

  it.each(KINDS)('rejects %s bodies that are no objects', (kind) => {
    for (const body of [null, undefined, [], 'x', 1, true]) {
      expect(checkHotBody(kind, body)).toBeUndefined();
      expect(zodOutput(kind, body)).toBeUndefined();
    }
  });

  it('leaves unknown keys out, as zod does, and ignores a __proto__ key', () => {
    const body = JSON.parse('{"id":"m","s":[],"extra":1,"__proto__":{"polluted":true}}');
    expect(checkHotBody('delta', body)).toEqual({ id: 'm', s: [] });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
