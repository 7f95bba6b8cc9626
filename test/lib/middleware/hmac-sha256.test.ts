// Owns: unit tests of lib/middleware/hmac-sha256.ts: the synchronous HMAC-SHA256 gives WebCrypto's MAC.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HmacSha256 } from '../../../lib/middleware/hmac-sha256.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

async function webCrypto(key: Uint8Array, message: Uint8Array): Promise<string> {
  const imported = await crypto.subtle.importKey('raw', new Uint8Array(key), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  return hex(new Uint8Array(await crypto.subtle.sign('HMAC', imported, new Uint8Array(message))));
}

describe('HmacSha256', () => {
  it('gives the RFC 4231 test vectors (short key, long key, long message)', () => {
    const text = (s: string) => new TextEncoder().encode(s);
    expect(hex(new HmacSha256(new Uint8Array(20).fill(0x0b)).sign(text('Hi There')))).toBe(
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    expect(hex(new HmacSha256(text('Jefe')).sign(text('what do ya want for nothing?')))).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    expect(
      hex(
        new HmacSha256(new Uint8Array(131).fill(0xaa)).sign(
          text('Test Using Larger Than Block-Size Key - Hash Key First'),
        ),
      ),
    ).toBe('60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54');
  });

  it('equals WebCrypto for any key and message, across the block and padding boundaries', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 150 }), // WebCrypto refuses an empty key
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 200 }),
          fc.integer({ min: 50, max: 135 }).map((n) => new Uint8Array(n).fill(n)),
        ),
        async (key, message) => {
          const mac = new HmacSha256(key);
          expect(hex(mac.sign(message))).toBe(await webCrypto(key, message));
          // The key's state is not changed by signing.
          expect(hex(mac.sign(message))).toBe(await webCrypto(key, message));
        },
      ),
      { numRuns: 300 },
    );
  });
});
