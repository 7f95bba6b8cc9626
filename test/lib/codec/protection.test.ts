// Owns: tests of lib/codec/protection.ts: AES-GCM and HMAC frames, tampering, keys, rotation, and protected clusters.
import { describe, expect, it } from 'vitest';
import { MemoryBus } from '../../../lib/channel/memory.ts';

import {
  checkClusterKeys,
  isProtectedFrame,
  MessageProtection,
  parseClusterKeys,
} from '../../../lib/codec/protection.ts';
import { InvalidOptionsError, MalformedMessageError } from '../../../lib/errors.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { attributesOn, call, makeNode, sessionApp, startNodes } from '../../kit/memory-nodes.ts';
import { keyOf } from '../../kit/cookie-client.ts';

const secret = (fill: number) => btoa(String.fromCharCode(...new Uint8Array(32).fill(fill)));
const header = { cluster: 'c1', node: 'a', kind: 'delta' };
const payload = new TextEncoder().encode('{"v":1,"secret":"card 4111"}');

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedMessageError);
    return (error as MalformedMessageError).reason;
  }
  throw new Error('expected a rejection');
}

describe('MessageProtection', () => {
  for (const mode of ['encrypt', 'sign'] as const) {
    it(`${mode}: round-trips the payload and the authenticated header`, async () => {
      const protection = await MessageProtection.create([{ id: 'k1', secret: secret(1) }], mode);
      const frame = await protection.protect(header, payload);
      expect(isProtectedFrame(frame)).toBe(true);
      const opened = await protection.unprotect(frame);
      expect(opened.header).toEqual(header);
      expect(new TextDecoder().decode(opened.payload)).toBe('{"v":1,"secret":"card 4111"}');
    });

    it(`${mode}: any flipped byte is rejected as unauthenticated or unknown-key`, async () => {
      const protection = await MessageProtection.create([{ id: 'k1', secret: secret(1) }], mode);
      const frame = await protection.protect(header, payload);
      for (let i = 1; i < frame.length; i++) {
        const tampered = frame.slice();
        tampered[i] = tampered[i]! ^ 0x01;
        expect(['unauthenticated', 'unknown-key']).toContain(await reason(protection.unprotect(tampered)));
      }
    });

    it(`${mode}: a different key with the same id is rejected, an unknown id is named`, async () => {
      const a = await MessageProtection.create([{ id: 'k1', secret: secret(1) }], mode);
      const b = await MessageProtection.create([{ id: 'k1', secret: secret(2) }], mode);
      const c = await MessageProtection.create([{ id: 'k9', secret: secret(1) }], mode);
      const frame = await a.protect(header, payload);
      expect(await reason(b.unprotect(frame))).toBe('unauthenticated');
      expect(await reason(c.unprotect(frame))).toBe('unknown-key');
    });
  }

  it('encrypt hides the payload; sign leaves it readable but bound', async () => {
    const encrypt = await MessageProtection.create([{ id: 'k1', secret: secret(1) }], 'encrypt');
    const sign = await MessageProtection.create([{ id: 'k1', secret: secret(1) }], 'sign');
    const text = (bytes: Uint8Array) => new TextDecoder('latin1').decode(bytes);
    expect(text(await encrypt.protect(header, payload))).not.toContain('card 4111');
    expect(text(await sign.protect(header, payload))).toContain('card 4111');
  });

  it('a plain message on a protected cluster is rejected as unprotected', async () => {
    const protection = await MessageProtection.create([{ id: 'k1', secret: secret(1) }]);
    expect(await reason(protection.unprotect(payload))).toBe('unprotected');
  });

  it('rotation: sends with the first key and accepts every configured one', async () => {
    const old = await MessageProtection.create([{ id: 'old', secret: secret(1) }]);
    const both = await MessageProtection.create([
      { id: 'new', secret: secret(2) },
      { id: 'old', secret: secret(1) },
    ]);
    expect((await both.unprotect(await old.protect(header, payload))).header).toEqual(header);
    const fromBoth = await both.protect(header, payload);
    expect(await reason(old.unprotect(fromBoth))).toBe('unknown-key');
    const newOnly = await MessageProtection.create([{ id: 'new', secret: secret(2) }]);
    expect((await newOnly.unprotect(fromBoth)).header).toEqual(header);
  });

  it('rejects bad keys with typed errors', () => {
    expect(() => checkClusterKeys([])).toThrow(InvalidOptionsError);
    expect(() => checkClusterKeys([{ id: 'k1', secret: btoa('short') }])).toThrow(/256 bits/);
    expect(() => checkClusterKeys([{ id: 'bad id', secret: secret(1) }])).toThrow(/id/);
    expect(() =>
      checkClusterKeys([
        { id: 'k1', secret: secret(1) },
        { id: 'k1', secret: secret(2) },
      ]),
    ).toThrow(/twice/);
    expect(() => checkClusterKeys([{ id: 'k1', secret: '!!!' }])).toThrow(/base64/);
  });

  it('parses id:base64 lists and bare keys', () => {
    expect(parseClusterKeys(`new:${secret(2)}, old:${secret(1)}`)).toEqual([
      { id: 'new', secret: secret(2) },
      { id: 'old', secret: secret(1) },
    ]);
    expect(parseClusterKeys(secret(3))).toEqual([{ id: 'k1', secret: secret(3) }]);
  });
});

describe('a protected cluster', () => {
  it('replicates between nodes with the same key and drops what another key or no key sends', async () => {
    const bus = new MemoryBus();
    const keys = [{ id: 'k1', secret: secret(7) }];
    const [a, b] = await startNodes(bus, ['a', 'b'], { clusterKeys: keys });
    // Their state transfer requests go unanswered (nobody can read them): keep that wait short.
    const intruder = makeNode(bus, 'x', {
      clusterKeys: [{ id: 'k1', secret: secret(8) }],
      stateTransferTimeoutMs: 200,
    });
    await intruder.start();
    const plain = makeNode(bus, 'p', { stateTransferTimeoutMs: 200 });
    await plain.start();

    const set = await call(sessionApp(a!), 'POST', '/set', { body: { cart: ['x'] } });
    const key = keyOf(set.cookie!);
    await waitFor('b to hold the cart', () => attributesOn(b!, key)?.cart !== undefined);
    expect(attributesOn(b!, key)).toEqual({ cart: ['x'] });

    // The intruder's and the plain node's writes never reach a or b, and they are counted.
    await call(sessionApp(intruder), 'POST', '/set', { body: { evil: 1 } });
    await call(sessionApp(plain), 'POST', '/set', { body: { evil: 2 } });
    await waitFor(
      'drops to be counted',
      () => (b!.stats.dropped.unauthenticated ?? 0) > 0 && (b!.stats.dropped.unprotected ?? 0) > 0,
    );
    expect(a!.membership.members().map((m) => m.node)).toEqual(['b']);
    expect(b!.manager.sessionCounts().total).toBe(1);
  });

  it('sign mode replicates too', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b'], {
      clusterKeys: [{ id: 'k1', secret: secret(5) }],
      protection: 'sign',
    });
    const set = await call(sessionApp(a!), 'POST', '/set', { body: { n: 1 } });
    expect(set.status).toBe(200);
    const key = keyOf(set.cookie!);
    await waitFor('b to hold n', () => attributesOn(b!, key)?.n !== undefined);
  });

  it('rotation without downtime: nodes with [new, old] and [old, new] understand each other', async () => {
    const bus = new MemoryBus();
    const a = makeNode(bus, 'a', {
      clusterKeys: [
        { id: 'new', secret: secret(2) },
        { id: 'old', secret: secret(1) },
      ],
    });
    const b = makeNode(bus, 'b', {
      clusterKeys: [
        { id: 'old', secret: secret(1) },
        { id: 'new', secret: secret(2) },
      ],
    });
    await a.start();
    await b.start();
    await waitFor(
      'a and b to see each other',
      () => a.membership.readyMembers().length === 1 && b.membership.readyMembers().length === 1,
    );
    const fromA = keyOf((await call(sessionApp(a), 'POST', '/set', { body: { v: 'a' } })).cookie!);
    const fromB = keyOf((await call(sessionApp(b), 'POST', '/set', { body: { v: 'b' } })).cookie!);
    await waitFor(
      'both sessions on both nodes',
      () => attributesOn(b, fromA)?.v === 'a' && attributesOn(a, fromB)?.v === 'b',
    );
    expect(a.stats.dropped).toEqual({});
    expect(b.stats.dropped).toEqual({});
  });
});
