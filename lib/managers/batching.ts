/** `batchBySize`: splits what one send would carry into messages that each fit the broker. */

/** Limits of one batch. */
export interface BatchLimits<T> {
  /** Most items in one batch. */
  readonly maxCount: number;
  /** Bytes above which a batch is split; a single larger item still goes alone. @default Infinity */
  readonly maxBytes?: number;
  /** The size of one item, e.g. `sessionWireBytes`. @default 0 (count only) */
  readonly sizeOf?: (item: T) => number;
}

/**
 * Splits `items`, in order, into batches of at most `maxCount` items and `maxBytes` (an item that
 * alone exceeds `maxBytes` forms its own batch). Empty input gives no batches.
 */
export function batchBySize<T>(
  items: Iterable<T>,
  { maxCount, maxBytes = Infinity, sizeOf = () => 0 }: BatchLimits<T>,
): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (current.length > 0 && (current.length >= maxCount || bytes + size > maxBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
