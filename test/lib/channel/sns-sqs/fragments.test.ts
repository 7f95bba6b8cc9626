// Owns: unit tests of lib/channel/sns-sqs/fragments.ts (splitPayload, fragment labels, Reassembler), no broker.
import { describe, expect, it } from 'vitest';
import {
  formatFragmentLabel,
  MAX_FRAGMENTS,
  parseFragmentLabel,
  Reassembler,
  splitPayload,
} from '../../../../lib/channel/sns-sqs/fragments.ts';

const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

/** The labelled pieces of `data`, as the sender would queue them. */
function fragmentsOf(data: Uint8Array, size: number, id = 'm1') {
  const pieces = splitPayload(data, size);
  return pieces.map((piece, index) => ({ label: formatFragmentLabel({ id, index, count: pieces.length }), piece }));
}

describe('splitPayload', () => {
  it('keeps a payload up to the fragment size (and an empty one) in one piece', () => {
    expect(splitPayload(pattern(100), 100)).toHaveLength(1);
    expect(splitPayload(new Uint8Array(0), 100)).toEqual([new Uint8Array(0)]);
  });

  it('cuts a larger payload into pieces of the fragment size, the last one shorter, that join back to the bytes', () => {
    const data = pattern(1001);
    const pieces = splitPayload(data, 250);
    expect(pieces.map((p) => p.byteLength)).toEqual([250, 250, 250, 250, 1]);
    expect(Buffer.concat(pieces).equals(Buffer.from(data))).toBe(true);
  });
});

describe('fragment labels', () => {
  it('round-trip, and malformed ones read as undefined', () => {
    expect(parseFragmentLabel(formatFragmentLabel({ id: 'abc', index: 2, count: 3 }))).toEqual({
      id: 'abc',
      index: 2,
      count: 3,
    });
    for (const bad of [
      '',
      'abc',
      'abc.1',
      'abc.x.3',
      'abc.3.3',
      'abc.-1.3',
      'abc.0.3.9',
      '.0.1',
      `abc.0.${MAX_FRAGMENTS + 1}`,
      'abc.0.1.5',
    ]) {
      expect(parseFragmentLabel(bad), bad).toBeUndefined();
    }
  });
});

describe('Reassembler', () => {
  const bounds = { ttlMs: 60_000, maxBytes: 1_000_000 };

  it('returns the whole payload once the last fragment arrives, in any order, ignoring duplicates', () => {
    const data = pattern(1000);
    const fragments = fragmentsOf(data, 300);
    const order = [2, 0, 2, 3, 0]; // fragment 2 and 0 twice, 1 last
    const reassembler = new Reassembler(bounds);
    for (const i of order) expect(reassembler.add('a', fragments[i]!.label, fragments[i]!.piece, 0)).toBeUndefined();
    expect(reassembler.pendingBytes).toBe(300 * 2 + 100);
    const whole = reassembler.add('a', fragments[1]!.label, fragments[1]!.piece, 0);
    expect(Buffer.from(whole!).equals(Buffer.from(data))).toBe(true);
    expect(reassembler.pendingMessages).toBe(0);
    expect(reassembler.pendingBytes).toBe(0);
  });

  it('keeps messages of different senders with the same id apart', () => {
    const [x, y] = [pattern(20), pattern(20).reverse()];
    const fx = fragmentsOf(x, 10, 'same');
    const fy = fragmentsOf(y, 10, 'same');
    const reassembler = new Reassembler(bounds);
    expect(reassembler.add('a', fx[0]!.label, fx[0]!.piece, 0)).toBeUndefined();
    expect(reassembler.add('b', fy[1]!.label, fy[1]!.piece, 0)).toBeUndefined();
    expect(Buffer.from(reassembler.add('a', fx[1]!.label, fx[1]!.piece, 0)!).equals(Buffer.from(x))).toBe(true);
    expect(Buffer.from(reassembler.add('b', fy[0]!.label, fy[0]!.piece, 0)!).equals(Buffer.from(y))).toBe(true);
  });

  it('drops incomplete messages older than the TTL (counted), so their late fragments never complete them', () => {
    let dropped = 0;
    const reassembler = new Reassembler({ ...bounds, ttlMs: 1000, onDrop: () => dropped++ });
    const old = fragmentsOf(pattern(30), 10, 'old');
    const fresh = fragmentsOf(pattern(30), 10, 'fresh');
    reassembler.add('a', old[0]!.label, old[0]!.piece, 0);
    reassembler.add('a', fresh[0]!.label, fresh[0]!.piece, 900);
    // At 1500 "old" is 1500 ms old and goes; "fresh" (600 ms) stays.
    expect(reassembler.add('a', fresh[1]!.label, fresh[1]!.piece, 1500)).toBeUndefined();
    expect(dropped).toBe(1);
    expect(reassembler.pendingMessages).toBe(1);
    // The rest of "old" starts over and cannot complete with the first fragment gone.
    expect(reassembler.add('a', old[1]!.label, old[1]!.piece, 1500)).toBeUndefined();
    expect(reassembler.add('a', old[2]!.label, old[2]!.piece, 1500)).toBeUndefined();
    expect(reassembler.add('a', fresh[2]!.label, fresh[2]!.piece, 1600)).toEqual(pattern(30));
  });

  it('keeps at most maxBytes of incomplete messages, dropping the oldest first', () => {
    let dropped = 0;
    const reassembler = new Reassembler({ ttlMs: 60_000, maxBytes: 250, onDrop: () => dropped++ });
    const messages = ['m1', 'm2', 'm3'].map((id) => fragmentsOf(pattern(200), 100, id));
    for (const [t, fragments] of messages.entries()) reassembler.add('a', fragments[0]!.label, fragments[0]!.piece, t);
    // 3 x 100 bytes > 250: m1 (the oldest) went.
    expect(dropped).toBe(1);
    expect(reassembler.pendingBytes).toBe(200);
    expect(reassembler.add('a', messages[0]![1]!.label, messages[0]![1]!.piece, 5)).toBeUndefined();
    expect(reassembler.add('a', messages[2]![1]!.label, messages[2]![1]!.piece, 5)).toEqual(pattern(200));
    expect(reassembler.pendingBytes).toBeLessThanOrEqual(250);
  });

  it('ignores malformed labels and clear() forgets everything without counting drops', () => {
    let dropped = 0;
    const reassembler = new Reassembler({ ...bounds, onDrop: () => dropped++ });
    expect(reassembler.add('a', 'nonsense', pattern(5), 0)).toBeUndefined();
    expect(reassembler.pendingMessages).toBe(0);
    const fragments = fragmentsOf(pattern(20), 10);
    reassembler.add('a', fragments[0]!.label, fragments[0]!.piece, 0);
    reassembler.clear();
    expect(reassembler.pendingMessages).toBe(0);
    expect(reassembler.pendingBytes).toBe(0);
    expect(dropped).toBe(0);
  });
});
