// Owns: unit and property tests of lib/managers/batching.ts (batchBySize) and lib/codec/wire-size.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ENTRY_WIRE_BYTES, sessionWireBytes } from '../../../lib/codec/wire-size.ts';
import { batchBySize } from '../../../lib/managers/batching.ts';
import type { Stamp } from '../../../lib/session/clock.ts';
import { createState } from '../../../lib/session/state.ts';

describe('batchBySize', () => {
  it('gives no batch for no items', () => {
    expect(batchBySize([], { maxCount: 3 })).toEqual([]);
  });

  it('splits by count alone when no size is given', () => {
    expect(batchBySize([1, 2, 3, 4, 5, 6, 7], { maxCount: 3 })).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('splits before the item that would exceed maxBytes, and sends an oversized item alone', () => {
    const sizeOf = (n: number) => n;
    expect(batchBySize([4, 4, 4, 20, 1, 1], { maxCount: 10, maxBytes: 10, sizeOf })).toEqual([
      [4, 4],
      [4],
      [20],
      [1, 1],
    ]);
  });

  it('keeps every item once, in order, within both limits unless an item alone is larger', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 50 })),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 100 }),
        (items, maxCount, maxBytes) => {
          const batches = batchBySize(items, { maxCount, maxBytes, sizeOf: (n) => n });
          expect(batches.flat()).toEqual(items);
          for (const batch of batches) {
            expect(batch.length).toBeGreaterThan(0);
            expect(batch.length).toBeLessThanOrEqual(maxCount);
            if (batch.length > 1) expect(batch.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(maxBytes);
          }
        },
      ),
    );
  });
});

describe('sessionWireBytes', () => {
  it('is a fixed overhead for an empty session and grows with attribute names and values', () => {
    const empty = createState('k'.repeat(22), [1, 0, 'n'], 60);
    const full = {
      ...empty,
      attributes: new Map([['name', { stamp: [2, 0, 'n'] as Stamp, value: '"x"', bytes: 1000 }]]),
    };
    expect(sessionWireBytes(empty)).toBe(200);
    expect(sessionWireBytes(full)).toBe(200 + 'name'.length + 1000);
    expect(ENTRY_WIRE_BYTES).toBeGreaterThan(0);
  });
});
