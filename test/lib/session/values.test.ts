// Owns: unit and property tests of lib/session/values.ts (attribute values on the wire).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { byteLength, decodeValue, encodeValue, wireBytes } from '../../../lib/session/values.ts';
import { UnserializableValueError } from '../../../lib/errors.ts';

const roundTrip = (value: unknown) => decodeValue(encodeValue('attr', value).text);

/** JSON values without own `__proto__` keys (those are rejected on purpose; see below). */
const json = fc.jsonValue().filter((v) => !JSON.stringify(v)?.includes('"__proto__"'));

/** Values devalue carries beyond JSON, nested in arrays, objects, Maps and Sets. */
const rich: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    json,
    fc.date({ noInvalidDate: true }),
    fc.bigInt(),
    fc.uint8Array({ maxLength: 16 }),
    fc.constantFrom(undefined, NaN, Infinity, -Infinity, -0),
  ),
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 4 }),
    fc.dictionary(
      fc.string().filter((k) => k !== '__proto__'),
      tie('node'),
      { maxKeys: 4 },
    ),
    fc.array(fc.tuple(tie('leaf'), tie('node')), { maxLength: 3 }).map((entries) => new Map(entries)),
    fc.array(tie('leaf'), { maxLength: 4 }).map((items) => new Set(items)),
  ),
})).node;

describe('encodeValue / decodeValue', () => {
  it('round-trips every JSON value', () => {
    fc.assert(
      fc.property(json, (value) => {
        expect(roundTrip(value)).toEqual(value);
      }),
    );
  });

  it('round-trips Date, Map, Set, Uint8Array, bigint and nested combinations exactly', () => {
    fc.assert(
      fc.property(rich, (value) => {
        expect(roundTrip(value)).toEqual(value);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps concrete types, not look-alikes', () => {
    const value = {
      when: new Date(1_700_000_000_123),
      tags: new Set(['a', 'b']),
      scores: new Map<unknown, unknown>([
        ['x', 1n],
        [2, new Date(0)],
      ]),
      bytes: new Uint8Array([0, 1, 255]),
      big: 12345678901234567890n,
      nested: [{ deep: new Map([['k', new Set([1, 2])]]) }],
      nothing: undefined,
      negZero: -0,
    };
    const back = roundTrip(value) as typeof value;
    expect(back).toEqual(value);
    expect(back.when).toBeInstanceOf(Date);
    expect(back.when.getTime()).toBe(1_700_000_000_123);
    expect(back.tags).toBeInstanceOf(Set);
    expect(back.scores).toBeInstanceOf(Map);
    expect(back.scores.get('x')).toBe(1n);
    expect(back.bytes).toBeInstanceOf(Uint8Array);
    expect([...back.bytes]).toEqual([0, 1, 255]);
    expect(typeof back.big).toBe('bigint');
    expect('nothing' in back).toBe(true);
    expect(Object.is(back.negZero, -0)).toBe(true);
  });

  it('preserves shared references and cycles', () => {
    const shared = { n: 1 };
    const cyclic: Record<string, unknown> = { a: shared, b: shared };
    cyclic.self = cyclic;
    const back = roundTrip(cyclic) as Record<string, unknown>;
    expect(back.a).toBe(back.b);
    expect(back.self).toBe(back);
  });

  it('decodes to a copy: changing the original after encoding changes nothing', () => {
    const original = { list: [1, 2] };
    const { text } = encodeValue('x', original);
    original.list.push(3);
    expect(decodeValue(text)).toEqual({ list: [1, 2] });
  });

  it("reports a size of at least the text's UTF-8 bytes, growing with the value", () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 50 }), (value) => {
        const { text, bytes } = encodeValue('x', value);
        expect(bytes).toBeGreaterThanOrEqual(byteLength(text));
        expect(encodeValue('x', `${value + value}€`).bytes).toBeGreaterThan(bytes);
      }),
    );
    const euro = encodeValue('x', '€€');
    expect(euro.bytes).toBeGreaterThanOrEqual(new TextEncoder().encode(euro.text).length);
    expect(euro.bytes).toBeGreaterThan(euro.text.length);
  });

  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }

  it.each([
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['a class instance', new Point(1, 2)],
    ['a function nested in an object', { handler: () => undefined }],
    ['a class instance nested in a Map', new Map([['p', new Point(0, 0)]])],
    ['an object with a symbol key', { [Symbol('k')]: 1 }],
    ['an Error', new Error('boom')],
    ['an object with an own __proto__ key', JSON.parse('{"__proto__": {"polluted": true}}')],
  ])('throws UnserializableValueError for %s, naming the attribute', (_label, value) => {
    let error: unknown;
    try {
      encodeValue('cart', value);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnserializableValueError);
    expect((error as UnserializableValueError).code).toBe('UNSERIALIZABLE_VALUE');
    expect((error as Error).message).toContain('"cart"');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('decodeValue throws on text that is not an encoding', () => {
    expect(() => decodeValue('not devalue')).toThrow();
    expect(() => decodeValue('')).toThrow();
  });
});

describe('byteLength', () => {
  it('equals the UTF-8 length for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(byteLength(text)).toBe(new TextEncoder().encode(text).length);
      }),
    );
  });
});

describe('wireBytes', () => {
  it('equals the UTF-8 length of the text as a JSON string, escapes included, for any string', () => {
    const escapes = fc.constantFrom('"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\ud800', 'é', '€', '😀');
    const text = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.array(fc.oneof(fc.string({ unit: 'grapheme-ascii' }), escapes)).map((parts) => parts.join('')),
    );
    fc.assert(
      fc.property(text, (t) => {
        expect(wireBytes(t)).toBe(new TextEncoder().encode(JSON.stringify(t)).length);
      }),
    );
  });
});
