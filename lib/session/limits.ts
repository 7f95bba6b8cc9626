/** The per-session limits other than the size (`maxSessionBytes`), and the checks `Session` makes at `set()`. */
import { SessionLimitError } from '../errors.ts';

/** Per-session limits, each failure a `SessionLimitError` at `set()`. */
export interface SessionLimits {
  readonly maxAttributes: number;
  readonly maxAttributeNameLength: number;
  readonly maxValueDepth: number;
}

/** Default `SessionLimits`. */
export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  maxAttributes: 1000,
  maxAttributeNameLength: 256,
  maxValueDepth: 32,
};

/** Throws `RangeError` for an empty or non-string name, `SessionLimitError` for one longer than `maxAttributeNameLength`. */
export function checkName(name: string, limits: SessionLimits): void {
  if (typeof name !== 'string' || name.length === 0) throw new RangeError('attribute names must be non-empty strings');
  if (name.length > limits.maxAttributeNameLength) {
    throw new SessionLimitError(
      'maxAttributeNameLength',
      `attribute names are at most ${limits.maxAttributeNameLength} characters (maxAttributeNameLength)`,
    );
  }
}

/** Throws `SessionLimitError` when a session holding `count` attributes has no room for another. */
export function checkRoomForAttribute(count: number, limits: SessionLimits): void {
  if (count >= limits.maxAttributes) {
    throw new SessionLimitError(
      'maxAttributes',
      `a session holds at most ${limits.maxAttributes} attributes (maxAttributes)`,
    );
  }
}

/** Throws `SessionLimitError` when a value nests deeper than `max` (arrays, objects, Maps, Sets); cycles count once. */
export function checkDepth(value: unknown, max: number): void {
  const seen = new Set<object>();
  const walk = (node: unknown, depth: number): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    if (depth > max)
      throw new SessionLimitError('maxValueDepth', `attribute values nest at most ${max} levels deep (maxValueDepth)`);
    seen.add(node);
    const children =
      node instanceof Map
        ? [...node.keys(), ...node.values()]
        : node instanceof Set
          ? [...node]
          : ArrayBuffer.isView(node)
            ? []
            : Object.values(node);
    for (const child of children) walk(child, depth + 1);
  };
  walk(value, 1);
}
