/** Attribute values in their replicated form: devalue text, so Date, Map, Set, Uint8Array and bigint survive exactly. */
import { parse, stringify } from 'devalue';
import { UnserializableValueError } from '../errors.ts';

const utf8 = new TextEncoder();

/** An attribute value in its replicated form, plus its size on the wire for the session size limit. */
export interface EncodedValue {
  readonly text: string;
  readonly bytes: number;
}

/**
 * Encodes one attribute value. Throws `UnserializableValueError` for functions, symbols, class
 * instances and anything else that would not come back identical on another node.
 */
export function encodeValue(name: string, value: unknown): EncodedValue {
  let text: string;
  try {
    text = stringify(value);
  } catch (cause) {
    throw new UnserializableValueError(name, cause instanceof Error ? cause.message : String(cause), { cause });
  }
  return { text, bytes: wireBytes(text) };
}

/** Printable ASCII but `"` and `\`: such text is its own JSON string body, nothing escaped. */
const PLAIN_JSON_STRING = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Bytes an encoded value takes on the wire and in a snapshot item (as a JSON string, escapes included). */
export function wireBytes(text: string): number {
  // Every replicated value is measured on arrival: most need no escape, and the test spares the JSON copy.
  return PLAIN_JSON_STRING.test(text) ? text.length + 2 : byteLength(JSON.stringify(text));
}

/** Decodes a value produced by `encodeValue`; throws on text that is not a valid encoding. */
export function decodeValue(text: string): unknown {
  return parse(text);
}

/** UTF-8 length of a string without allocating for pure ASCII. */
export function byteLength(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range \x00-\x7f is "pure ASCII", not a control character
  return /^[\x00-\x7f]*$/.test(text) ? text.length : utf8.encode(text).length;
}
