/**
 * How a channel message rides on SNS/SQS: its subject, sender, target, reply subject and control
 * flags as SNS message attributes (the filter policies match on them), and the payload as base64 in
 * the body (SNS takes strings only).
 */
import type { MessageAttributeValue } from '@aws-sdk/client-sns';
import type { Message } from '@aws-sdk/client-sqs';

/** The body of an empty payload: SNS rejects empty messages, and `-` is no base64. */
export const EMPTY_BODY = '-';

/** The attributes a channel message carries. */
export interface Attributes {
  /** The channel subject. */
  subject?: string;
  /** The node that published it. */
  sender?: string;
  /** The node it is addressed to (point-to-point); absent for a broadcast. */
  to?: string;
  /** Where to reply. */
  reply?: string;
  /** Set on requests: a receiver that does not reply at once sends a delivery receipt. */
  rq?: string;
  /** A control message (`receipt`), not for subscribers. */
  ctl?: string;
  /** Fragment label `<id>.<index>.<count>` of a message sent in pieces. */
  frag?: string;
}

const NAMES = ['subject', 'sender', 'to', 'reply', 'rq', 'ctl', 'frag'] as const;

/** The attributes of a received SQS message (raw delivery maps SNS attributes to SQS ones). */
export function readAttributes(message: Message): Attributes {
  const raw = message.MessageAttributes ?? {};
  const out: Attributes = {};
  for (const name of NAMES) {
    const value = raw[name]?.StringValue;
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** The SNS message attributes for `attributes` (the defined ones). */
export function toMessageAttributes(attributes: Attributes): Record<string, MessageAttributeValue> {
  const out: Record<string, MessageAttributeValue> = {};
  for (const name of NAMES) {
    const value = attributes[name];
    if (value !== undefined) out[name] = { DataType: 'String', StringValue: value };
  }
  return out;
}

/** What SNS counts for these attributes: name, data type and value of each. */
export function attributeBytes(attributes: Attributes): number {
  let bytes = 0;
  for (const name of NAMES) {
    const value = attributes[name];
    if (value !== undefined) bytes += name.length + 'String'.length + utf8Length(value);
  }
  return bytes;
}

/** The body that carries `bytes`: base64, or {@link EMPTY_BODY} for an empty payload. */
export function encodeBody(bytes: Uint8Array): string {
  if (bytes.byteLength === 0) return EMPTY_BODY;
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The payload a body carries. */
export function decodeBody(body: string | undefined): Uint8Array {
  if (body === undefined || body === EMPTY_BODY || body === '') return new Uint8Array(0);
  const binary = atob(body);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** UTF-8 length of a string without encoding it. */
export function utf8Length(value: string): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      n += 4; // A surrogate pair: one 4-byte character.
      i++;
    } else n += 3;
  }
  return n;
}
