// Owns: unit tests of lib/middleware/session-version.ts: the session version cookie's encoding, verification and tamper resistance.
import { describe, expect, it } from 'vitest';
import { InvalidOptionsError } from '../../../lib/errors.ts';
import { SessionVersions } from '../../../lib/middleware/session-version.ts';
import type { Stamp } from '../../../lib/session/clock.ts';
import { newSessionKey } from '../../../lib/session/ids.ts';

const keyA = { id: 'a', secret: Buffer.alloc(32, 1).toString('base64') };
const keyB = { id: 'b', secret: Buffer.alloc(32, 2).toString('base64') };
const version: Stamp = [1_767_000_000_123, 4, 'node-1'];

describe('SessionVersions', () => {
  it.each([
    ['signed with a cluster key', [keyA]],
    ['without keys (bound to the session key)', undefined],
  ])('%s: a version it issued reads back for its session', async (_, keys) => {
    const versions = new SessionVersions(keys);
    const session = newSessionKey();
    const value = await versions.encode(session, version);
    expect(value).toMatch(/^[0-9a-z]+\.[0-9a-z]+\.node-1\.[A-Za-z0-9_-]{22}$/);
    expect(await versions.verify(session, value)).toEqual({ kind: 'valid', version });
    expect(versions.signed).toBe(keys !== undefined);
  });

  it.each([
    ['signed with a cluster key', [keyA]],
    ['without keys', undefined],
  ])(
    '%s: the MAC is the documented HMAC-SHA256, as WebCrypto computes it (nodes of other releases agree)',
    async (_, keys) => {
      const utf8 = new TextEncoder();
      const secret = keys
        ? new Uint8Array(
            await crypto.subtle.deriveBits(
              {
                name: 'HKDF',
                hash: 'SHA-256',
                salt: new Uint8Array(0),
                info: utf8.encode('session-replication version cookie v1'),
              },
              await crypto.subtle.importKey('raw', Buffer.from(keyA.secret, 'base64'), 'HKDF', false, ['deriveBits']),
              256,
            ),
          )
        : utf8.encode('session-replication: unsigned session version v1');
      const hmac = await crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const session = newSessionKey();
      const signed = await crypto.subtle.sign('HMAC', hmac, utf8.encode(`v1|shop|${session}|${version.join('|')}`));
      const tag = Buffer.from(signed.slice(0, 16)).toString('base64url');
      expect(await new SessionVersions(keys, 'shop').encode(session, version)).toBe(
        `${version[0].toString(36)}.${version[1].toString(36)}.${version[2]}.${tag}`,
      );
    },
  );

  it('no cookie is none; garbage, another session, an altered stamp or MAC are invalid', async () => {
    const versions = new SessionVersions([keyA]);
    const session = newSessionKey();
    const value = await versions.encode(session, version);
    expect(await versions.verify(session, undefined)).toEqual({ kind: 'none' });
    expect(await versions.verify(session, '')).toEqual({ kind: 'none' });
    for (const bad of [
      'x',
      'a.b.c',
      `${value}x`,
      `zzzzzzzzzzzz.0.n.${'A'.repeat(22)}`,
      value.replace('node-1', 'node 1'),
    ])
      expect(await versions.verify(session, bad), bad).toEqual({ kind: 'invalid' });
    // Copied to another session: the MAC binds it to its session key.
    expect(await versions.verify(newSessionKey(), value)).toEqual({ kind: 'invalid' });
    // A newer wall time, counter or another writer with the old MAC: forged.
    const [, counter, node, tag] = value.split('.');
    const later = (version[0] + 60_000).toString(36);
    expect(await versions.verify(session, `${later}.${counter}.${node}.${tag}`)).toEqual({ kind: 'invalid' });
    expect(await versions.verify(session, `${value.split('.')[0]}.zz.${node}.${tag}`)).toEqual({ kind: 'invalid' });
    expect(await versions.verify(session, `${value.split('.')[0]}.${counter}.node-2.${tag}`)).toEqual({
      kind: 'invalid',
    });
    const flipped = `${tag!.slice(0, -1)}${tag!.endsWith('A') ? 'B' : 'A'}`;
    expect(await versions.verify(session, `${value.split('.').slice(0, 3).join('.')}.${flipped}`)).toEqual({
      kind: 'invalid',
    });
  });

  it("with keys, a version forged without them (another cluster's key, or none) is invalid", async () => {
    const session = newSessionKey();
    const cluster = new SessionVersions([keyA]);
    for (const forger of [new SessionVersions([keyB]), new SessionVersions(undefined)])
      expect(await cluster.verify(session, await forger.encode(session, version))).toEqual({ kind: 'invalid' });
  });

  it('a version issued by another cluster (same keys or none) is invalid', async () => {
    const session = newSessionKey();
    for (const keys of [[keyA], undefined]) {
      const value = await new SessionVersions(keys, 'shop').encode(session, version);
      expect(await new SessionVersions(keys, 'shop').verify(session, value)).toEqual({ kind: 'valid', version });
      expect(await new SessionVersions(keys, 'blog').verify(session, value)).toEqual({ kind: 'invalid' });
    }
  });

  it('rotation: signs with the first key and accepts versions signed with any configured key', async () => {
    const session = newSessionKey();
    const old = await new SessionVersions([keyA]).encode(session, version);
    const rotated = new SessionVersions([keyB, keyA]);
    expect(await rotated.verify(session, old)).toEqual({ kind: 'valid', version });
    const fresh = await rotated.encode(session, version);
    expect(await new SessionVersions([keyB]).verify(session, fresh)).toEqual({ kind: 'valid', version });
    expect(await new SessionVersions([keyA]).verify(session, fresh)).toEqual({ kind: 'invalid' });
  });

  it('bad keys throw InvalidOptionsError at once', () => {
    expect(() => new SessionVersions([{ id: 'a', secret: 'c2hvcnQ=' }])).toThrow(InvalidOptionsError);
  });
});
