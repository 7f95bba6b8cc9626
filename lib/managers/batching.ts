/**
 * Batching helpers: `batchBySize` splits what one send would carry into messages that each fit the
 * broker; `nextTurn` runs the end-of-turn flush that lets one event-loop turn's writes share messages.
 */

/**
 * How long an async write's answer waits at most for the broker to confirm its batch
 * (`ClusterBus.sync`): a stalled broker delays async answers by this much, never blocks them.
 */
export const ASYNC_SYNC_MS = 50;

/**
 * Runs `task` once the current event-loop turn's I/O callbacks are done: `setImmediate` where the
 * runtime has it (Node, Bun, Deno), a zero timeout elsewhere.
 */
export const nextTurn: (task: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (task) => (globalThis as unknown as { setImmediate: (task: () => void) => void }).setImmediate(task)
    : (task) => setTimeout(task, 0);

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
