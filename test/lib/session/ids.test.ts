// Owns: unit tests of lib/session/ids.ts (key entropy and format, parsing of client-supplied ids).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatSessionId, newSessionKey, parseSessionId, TOKEN_PATTERN } from '../../../lib/session/ids.ts';

const KEY = /^[A-Za-z0-9_-]{24}$/;

describe('newSessionKey', () => {
  it('draws 24 base64url characters, i.e. 144 bits (>= 128)', () => {
    for (let i = 0; i < 200; i++) {
      const key = newSessionKey();
      expect(key).toMatch(KEY);
      // 24 base64 characters without padding carry 24 * 6 = 144 bits.
      expect(key.length * 6).toBeGreaterThanOrEqual(128);
    }
  });

  it('never repeats over many draws', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 20_000; i++) keys.add(newSessionKey());
    expect(keys.size).toBe(20_000);
  });

  it('uses the whole alphabet, including - and _ (base64url, not base64)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) for (const ch of newSessionKey()) seen.add(ch);
    expect(seen.has('-')).toBe(true);
    expect(seen.has('_')).toBe(true);
    expect(seen.has('+')).toBe(false);
    expect(seen.has('/')).toBe(false);
    expect(seen.size).toBe(64);
  });
});

describe('parseSessionId', () => {
  const key = 'AbCdEfGhIjKlMnOpQrStUv-_';

  it('accepts <key>.<route> and splits it', () => {
    expect(parseSessionId(`${key}.node-1`)).toEqual({ key, route: 'node-1' });
  });

  it('round-trips formatSessionId for fresh keys and any valid route', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), (route) => {
        const fresh = newSessionKey();
        expect(parseSessionId(formatSessionId(fresh, route))).toEqual({ key: fresh, route });
      }),
    );
  });

  it('takes the key from before the LAST dot, so a dotted prefix is not a key', () => {
    // With the last dot as separator, `<key>.a.b` has key `<key>.a`, which is not a valid key.
    expect(parseSessionId(`${key}.a.b`)).toBeUndefined();
    // A route can never hide a dot: everything after the last dot is the route.
    expect(parseSessionId(`x.${key}.n1`)).toBeUndefined();
  });

  it.each([
    ['empty', ''],
    ['undefined', undefined],
    ['no dot (missing route)', key],
    ['empty route', `${key}.`],
    ['empty key', '.n1'],
    ['short key', `${key.slice(1)}.n1`],
    ['long key', `${key}A.n1`],
    ['bad key character', `${key.slice(0, 23)}+.n1`],
    ['slash in key', `${key.slice(0, 23)}/.n1`],
    ['bad route character', `${key}.n!1`],
    ['space in route', `${key}.n 1`],
    ['route too long (65)', `${key}.${'r'.repeat(65)}`],
    ['whole id over 128 chars', `${key}.${'r'.repeat(104)}`],
    ['unicode', `${key}.nöde`],
  ])('rejects %s', (_label, raw) => {
    expect(parseSessionId(raw)).toBeUndefined();
  });

  it('accepts a route of exactly 64 characters (the token limit)', () => {
    expect(parseSessionId(`${key}.${'r'.repeat(64)}`)).toEqual({ key, route: 'r'.repeat(64) });
  });

  it('never throws and only returns ids that re-format to the input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (raw) => {
        const parsed = parseSessionId(raw);
        if (parsed) {
          expect(formatSessionId(parsed.key, parsed.route)).toBe(raw);
          expect(parsed.key).toMatch(KEY);
          expect(parsed.route).toMatch(TOKEN_PATTERN);
        }
      }),
    );
  });
});
