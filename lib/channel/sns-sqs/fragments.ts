/**
 * Payloads larger than one SNS message travel in fragments: `splitPayload` cuts them, and a
 * `Reassembler` puts them back together in any order, within a time and memory bound. Pure: no
 * broker, no timers; the time is passed in.
 */

/** The most fragments one message may have (a bound on what a malformed label can make us allocate). */
export const MAX_FRAGMENTS = 1024;

/** Where one fragment belongs: message `id`, fragment `index` of `count`. */
export interface FragmentLabel {
  readonly id: string;
  readonly index: number;
  readonly count: number;
}

/** Cuts `data` into pieces of at most `fragmentBytes` (views, not copies); an empty payload is one empty piece. */
export function splitPayload(data: Uint8Array, fragmentBytes: number): Uint8Array[] {
  const count = Math.max(1, Math.ceil(data.byteLength / fragmentBytes));
  if (count === 1) return [data];
  return Array.from({ length: count }, (_, i) => data.subarray(i * fragmentBytes, (i + 1) * fragmentBytes));
}

/** The label a fragment travels with: `<id>.<index>.<count>`. */
export function formatFragmentLabel({ id, index, count }: FragmentLabel): string {
  return `${id}.${index}.${count}`;
}

/** Reads a label; undefined when it is malformed (wrong shape, index out of range, too many fragments). */
export function parseFragmentLabel(label: string): FragmentLabel | undefined {
  const [id, indexText, countText, extra] = label.split('.');
  const index = Number(indexText);
  const count = Number(countText);
  if (!id || extra !== undefined || !Number.isInteger(index) || !Number.isInteger(count)) return undefined;
  if (index < 0 || index >= count || count > MAX_FRAGMENTS) return undefined;
  return { id, index, count };
}

/** Bounds of a {@link Reassembler}. */
export interface ReassemblerOptions {
  /** An incomplete message older than this (ms since its first fragment) is dropped. */
  readonly ttlMs: number;
  /** Bytes of incomplete messages kept at most; the oldest are dropped first. */
  readonly maxBytes: number;
  /** Called once for each incomplete message dropped (expired or over the bound). */
  readonly onDrop?: () => void;
}

/** A message being put together. */
interface Partial {
  readonly parts: Array<Uint8Array | undefined>;
  got: number;
  bytes: number;
  readonly since: number;
}

/** Puts fragmented messages back together, per sender, in any arrival order; duplicates are ignored. */
export class Reassembler {
  /** Incomplete messages in arrival order of their first fragment (Map order), oldest first. */
  readonly #partials = new Map<string, Partial>();
  #bytes = 0;

  constructor(private readonly options: ReassemblerOptions) {}

  /** Bytes held for incomplete messages. */
  get pendingBytes(): number {
    return this.#bytes;
  }

  /** Incomplete messages held. */
  get pendingMessages(): number {
    return this.#partials.size;
  }

  /**
   * Adds fragment `label` of a message from `sender`, received at `now` (ms); returns the whole
   * payload once every fragment arrived, else undefined (also for a malformed label or a duplicate).
   */
  add(sender: string, label: string, part: Uint8Array, now: number): Uint8Array | undefined {
    const parsed = parseFragmentLabel(label);
    if (!parsed) return undefined;
    this.#expire(now);
    const key = `${sender} ${parsed.id}`;
    let partial = this.#partials.get(key);
    if (!partial) {
      partial = { parts: new Array<Uint8Array | undefined>(parsed.count), got: 0, bytes: 0, since: now };
      this.#partials.set(key, partial);
    }
    if (partial.parts.length !== parsed.count || partial.parts[parsed.index] !== undefined) return undefined; // A duplicate, or a mismatched count.
    partial.parts[parsed.index] = part;
    partial.got++;
    partial.bytes += part.byteLength;
    this.#bytes += part.byteLength;
    if (partial.got === parsed.count) {
      this.#partials.delete(key);
      this.#bytes -= partial.bytes;
      return join(partial);
    }
    // Over the bound: the oldest go first (possibly this one).
    for (const [oldest, dropped] of this.#partials) {
      if (this.#bytes <= this.options.maxBytes) break;
      this.#drop(oldest, dropped);
    }
    return undefined;
  }

  /** Forgets every incomplete message (without counting drops). */
  clear(): void {
    this.#partials.clear();
    this.#bytes = 0;
  }

  #expire(now: number): void {
    for (const [key, partial] of this.#partials) {
      if (now - partial.since <= this.options.ttlMs) break; // Oldest first: the rest are younger.
      this.#drop(key, partial);
    }
  }

  #drop(key: string, partial: Partial): void {
    this.#partials.delete(key);
    this.#bytes -= partial.bytes;
    this.options.onDrop?.();
  }
}

function join(partial: Partial): Uint8Array {
  const whole = new Uint8Array(partial.bytes);
  let offset = 0;
  for (const piece of partial.parts) {
    whole.set(piece!, offset);
    offset += piece!.byteLength;
  }
  return whole;
}
