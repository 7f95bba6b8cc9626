// Owns: unit and property tests of lib/codec/envelope.ts (wire envelope round trip and validation).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeEnvelope,
  encodeEnvelope,
  WIRE_VERSION,
  type Envelope,
  type MessageBody,
  type MessageKind,
} from '../../../lib/codec/envelope.ts';
import { encodeValue } from '../../../lib/session/values.ts';
import { MalformedMessageError, type DropReason } from '../../../lib/errors.ts';
import type { Stamp } from '../../../lib/session/clock.ts';
import type { AttributeRegister, SessionState } from '../../../lib/session/state.ts';

const CLUSTER = 'shop';
const utf8 = new TextEncoder();

const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const time = fc.nat({ max: 2 ** 45 });
const stamp = fc.tuple(time, fc.nat(), token) as fc.Arbitrary<Stamp>;
const attributeName = fc.oneof(
  fc.string({ minLength: 1, maxLength: 256 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'),
);
const attributeValue = fc.option(
  fc
    .oneof(fc.jsonValue(), fc.date({ noInvalidDate: true }), fc.bigInt(), fc.uint8Array({ maxLength: 8 }))
    .filter((v) => !JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? 0 : x))?.includes('"__proto__"'))
    .map((v) => encodeValue('v', v)),
  { nil: undefined },
);

const sessionState: fc.Arbitrary<SessionState> = fc
  .record({
    key: fc.string({ minLength: 1, maxLength: 64 }),
    createdAt: time,
    lastAccessedAt: time,
    lastAccessedBy: token,
    maxInactive: fc.record({ seconds: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), stamp }),
    maxLifetime: fc.option(fc.record({ seconds: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), stamp }), {
      nil: undefined,
    }),
    attributes: fc.uniqueArray(fc.tuple(attributeName, stamp, attributeValue), {
      selector: ([name]) => name,
      maxLength: 6,
    }),
    ended: fc.option(
      fc.record({ stamp, reason: fc.constantFrom('invalidated' as const, 'expired' as const, 'regenerated' as const) }),
      { nil: undefined },
    ),
  })
  .map(({ attributes, ended, maxLifetime, ...rest }) => ({
    ...rest,
    ...(maxLifetime ? { maxLifetime } : {}),
    attributes: new Map<string, AttributeRegister>(
      // A register's size is what the writer's encodeValue measured; the receiver must count the same.
      attributes.map(([name, s, encoded]) => [
        name,
        encoded === undefined ? { stamp: s, bytes: 0 } : { stamp: s, value: encoded.text, bytes: encoded.bytes },
      ]),
    ),
    ...(ended ? { ended } : {}),
  }));

const bodyFor: { [K in MessageKind]?: fc.Arbitrary<MessageBody<K>> } = {
  delta: fc.record({ id: fc.string({ minLength: 1, maxLength: 64 }), s: fc.array(sessionState, { maxLength: 3 }) }),
  ack: fc.record({ id: fc.string({ minLength: 1, maxLength: 64 }) }),
  hb: fc.record(
    { started: time, ready: fc.boolean(), leaving: fc.boolean(), hello: fc.boolean() },
    { requiredKeys: ['started', 'ready'] },
  ),
  ping: fc.constant({}),
  pong: fc.record({ ready: fc.boolean() }),
  'state-req': fc.record({ transfer: fc.string({ maxLength: 64 }), cursor: fc.nat() }, { requiredKeys: ['cursor'] }),
  'state-page': fc.record({
    transfer: fc.string({ minLength: 1, maxLength: 64 }),
    s: fc.array(sessionState, { maxLength: 3 }),
    next: fc.option(fc.nat(), { nil: null }),
    total: fc.nat(),
  }),
  principal: fc.record({ p: fc.string({ minLength: 1, maxLength: 1024 }) }),
  'principal-keys': fc.record({ k: fc.array(fc.string({ minLength: 1, maxLength: 64 }), { maxLength: 5 }) }),
};
const KINDS = Object.keys(bodyFor) as MessageKind[];

const envelopeOf = <K extends MessageKind>(kind: K): fc.Arbitrary<Envelope<K>> =>
  fc.record({
    cluster: fc.constant(CLUSTER),
    node: token,
    incarnation: fc.string({ minLength: 1, maxLength: 64 }),
    kind: fc.constant(kind),
    body: bodyFor[kind]! as fc.Arbitrary<MessageBody<K>>,
  });

/** The MalformedMessageError a decode throws (fails the test when it throws anything else or nothing). */
function dropReason(data: Uint8Array, cluster = CLUSTER): DropReason {
  try {
    decodeEnvelope(data, cluster);
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedMessageError);
    expect((error as MalformedMessageError).code).toBe('MALFORMED_MESSAGE');
    return (error as MalformedMessageError).reason;
  }
  throw new Error('decodeEnvelope accepted the message');
}

/** A valid raw envelope object to corrupt field by field. */
function raw(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: WIRE_VERSION, c: CLUSTER, n: 'n1', i: 'inc-1', k: 'ack', b: { id: 'm-1' }, ...overrides };
}
const bytes = (value: unknown) => utf8.encode(JSON.stringify(value));

/** A minimal valid wire session for building bad delta bodies. */
const wireSession = (overrides: Record<string, unknown> = {}) => ({
  k: 'key',
  c: 1,
  a: 2,
  ab: 'n1',
  m: [1800, [1, 0, 'n1']],
  x: [],
  ...overrides,
});

describe('encodeEnvelope / decodeEnvelope round trip', () => {
  it.each(KINDS)('round-trips every %s message', (kind) => {
    fc.assert(
      fc.property(envelopeOf(kind), (message) => {
        expect(decodeEnvelope(encodeEnvelope(message), CLUSTER)).toEqual(message);
      }),
      { numRuns: 150 },
    );
  });

  it('carries attribute names such as __proto__ and constructor without polluting prototypes', () => {
    const names = ['__proto__', 'constructor', 'prototype', 'toString'];
    const state: SessionState = {
      key: 'k'.repeat(24),
      createdAt: 1,
      lastAccessedAt: 2,
      lastAccessedBy: 'n1',
      maxInactive: { seconds: 60, stamp: [1, 0, 'n1'] },
      attributes: new Map(
        names.map((name, i) => {
          const encoded = encodeValue(name, { polluted: true });
          return [name, { stamp: [3, i, 'n1'] as Stamp, value: encoded.text, bytes: encoded.bytes }];
        }),
      ),
    };
    const decoded = decodeEnvelope(
      encodeEnvelope({ cluster: CLUSTER, node: 'n1', incarnation: 'i', kind: 'delta', body: { id: 'm', s: [state] } }),
      CLUSTER,
    );
    const [back] = (decoded.body as MessageBody<'delta'>).s;
    expect([...back!.attributes.keys()]).toEqual(names);
    expect(back!.attributes.get('__proto__')?.value).toBe(state.attributes.get('__proto__')?.value);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(back!.attributes)).toBe(Map.prototype);
  });

  it('ignores a __proto__ key in a raw body instead of polluting anything', () => {
    const text = `{"v":${WIRE_VERSION},"c":"${CLUSTER}","n":"n1","i":"i","k":"hb","b":{"started":1,"ready":true,"__proto__":{"polluted":true}}}`;
    const message = decodeEnvelope(utf8.encode(text), CLUSTER);
    expect(message.body).toEqual({ started: 1, ready: true });
    expect((message.body as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('writes the wire version into every message', () => {
    const text = new TextDecoder().decode(
      encodeEnvelope({ cluster: CLUSTER, node: 'n1', incarnation: 'i', kind: 'ping', body: {} }),
    );
    expect(JSON.parse(text)).toMatchObject({ v: WIRE_VERSION, c: CLUSTER, n: 'n1', i: 'i', k: 'ping' });
  });
});

describe('decodeEnvelope rejects bad input with a typed reason', () => {
  it('garbage bytes are malformed, never another error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        expect(dropReason(data)).toBe('malformed');
      }),
    );
  });

  it('any JSON that is not an envelope is malformed', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(dropReason(bytes(value))).toBe('malformed');
      }),
    );
  });

  it('invalid UTF-8 is malformed', () => {
    const valid = bytes(raw());
    const broken = new Uint8Array([...valid.slice(0, 10), 0xff, 0xfe, ...valid.slice(10)]);
    expect(dropReason(broken)).toBe('malformed');
    expect(dropReason(new Uint8Array([0xc3, 0x28]))).toBe('malformed');
    expect(dropReason(new Uint8Array())).toBe('malformed');
  });

  it('a valid raw envelope decodes (the base the cases below corrupt)', () => {
    expect(decodeEnvelope(bytes(raw()), CLUSTER)).toEqual({
      cluster: CLUSTER,
      node: 'n1',
      incarnation: 'inc-1',
      kind: 'ack',
      body: { id: 'm-1' },
    });
  });

  it.each([
    ['version 2', raw({ v: 2 })],
    ['version 0', raw({ v: 0 })],
    ['version 1.5', raw({ v: 1.5 })],
  ])('another wire version (%s) is unsupported-version', (_label, message) => {
    expect(dropReason(bytes(message))).toBe('unsupported-version');
  });

  it('a message of another cluster is foreign-cluster', () => {
    expect(dropReason(bytes(raw({ c: 'other' })))).toBe('foreign-cluster');
    expect(dropReason(bytes(raw()), 'other')).toBe('foreign-cluster');
    // Even a cluster name that is no valid token is just foreign, not malformed.
    expect(dropReason(bytes(raw({ c: 'not a.token' })))).toBe('foreign-cluster');
  });

  it('a foreign cluster with an unknown version is reported as the version problem first', () => {
    expect(dropReason(bytes(raw({ c: 'other', v: 9 })))).toBe('unsupported-version');
  });

  it.each([
    ['version as a string', raw({ v: '1' })],
    ['missing version', (({ v: _v, ...rest }) => rest)(raw())],
    ['missing cluster', (({ c: _c, ...rest }) => rest)(raw())],
    ['node with a dot', raw({ n: 'n.1' })],
    ['empty node', raw({ n: '' })],
    ['node too long', raw({ n: 'n'.repeat(65) })],
    ['empty incarnation', raw({ i: '' })],
    ['unknown kind', raw({ k: 'gossip' })],
    ['kind __proto__', raw({ k: '__proto__' })],
    ['kind constructor', raw({ k: 'constructor' })],
    ['ack without id', raw({ b: {} })],
    ['ack id too long', raw({ b: { id: 'x'.repeat(65) } })],
    ['hb without ready', raw({ k: 'hb', b: { started: 1 } })],
    ['hb with negative start', raw({ k: 'hb', b: { started: -1, ready: true } })],
    ['pong ready as string', raw({ k: 'pong', b: { ready: 'yes' } })],
    ['state-req with negative cursor', raw({ k: 'state-req', b: { cursor: -1 } })],
    ['state-page with fractional next', raw({ k: 'state-page', b: { transfer: 't', s: [], next: 1.5, total: 2 } })],
    ['delta with body null', raw({ k: 'delta', b: null })],
    ['delta with s not an array', raw({ k: 'delta', b: { id: 'm', s: {} } })],
    ['session with empty key', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ k: '' })] } })],
    ['session with negative creation time', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ c: -5 })] } })],
    ['session with bad accessor', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ ab: 'a b' })] } })],
    ['stamp with bad node', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ m: [1, [1, 0, 'a.b']] })] } })],
    ['stamp with negative counter', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ m: [1, [1, -1, 'n']] })] } })],
    ['stamp too short', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ m: [1, [1, 0]] })] } })],
    [
      'attribute with empty name',
      raw({ k: 'delta', b: { id: 'm', s: [wireSession({ x: [['', [1, 0, 'n'], '[1]']] })] } }),
    ],
    [
      'attribute name too long',
      raw({ k: 'delta', b: { id: 'm', s: [wireSession({ x: [['a'.repeat(257), [1, 0, 'n'], '[1]']] })] } }),
    ],
    [
      'attribute value not devalue',
      raw({ k: 'delta', b: { id: 'm', s: [wireSession({ x: [['a', [1, 0, 'n'], '{not devalue']] })] } }),
    ],
    ['attribute value a number', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ x: [['a', [1, 0, 'n'], 5]] })] } })],
    ['unknown end reason', raw({ k: 'delta', b: { id: 'm', s: [wireSession({ e: [[1, 0, 'n'], 'deleted'] })] } })],
  ])('%s is malformed', (_label, message) => {
    expect(dropReason(bytes(message))).toBe('malformed');
  });

  it('the error names what was wrong', () => {
    try {
      decodeEnvelope(
        bytes(raw({ k: 'delta', b: { id: 'm', s: [wireSession({ x: [['cart', [1, 0, 'n'], '{not devalue']] })] } })),
        CLUSTER,
      );
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toContain('"cart"');
    }
    expect(() => decodeEnvelope(bytes(raw({ v: 7 })), CLUSTER)).toThrow(/version 7/);
    expect(() => decodeEnvelope(bytes(raw({ c: 'other' })), CLUSTER)).toThrow(/"other"/);
  });
});
