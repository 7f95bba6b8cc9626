/**
 * The wire envelope: versioned JSON carrying cluster, sender, kind and body. Decoding validates
 * every field, so a malformed or foreign message becomes a typed error, never a crash or bad state.
 */
import { z } from 'zod';
import { MalformedMessageError } from '../errors.ts';
import type { Stamp } from '../session/clock.ts';
import { TOKEN_PATTERN } from '../session/ids.ts';
import type { AttributeRegister, SessionState } from '../session/state.ts';
import { decodeValue, wireBytes } from '../session/values.ts';
import {
  checkHotBody,
  isHotKind,
  isJsonObject,
  isString,
  isToken,
  type WireEntry,
  type WireStamp,
  type WireState,
} from './wire-check.ts';

/**
 * Where one session lives (backup manager): the wire form of an ownership entry, decoded. `backup`
 * is empty while the primary has no other member to copy to.
 */
export interface OwnershipEntry {
  readonly key: string;
  readonly primary: string;
  readonly backup: string;
  readonly stamp: Stamp;
  /** Set when the session ended: the entry is removed everywhere (kept as a tombstone for a while). */
  readonly ended?: boolean;
}

/** Version of the envelope format; a node drops messages of any other version. */
export const WIRE_VERSION = 1;

/** The body of each message kind as it travels (sessions as {@link WireState}, entries as {@link WireEntry}); `bodySchemas` validates them. */
interface WireBodies {
  delta: { id: string; s: WireState[]; r?: string };
  ack: { id: string };
  hb: {
    started: number;
    ready: boolean;
    leaving?: boolean;
    hello?: boolean;
    draining?: boolean;
    url?: string;
    unreachable?: string[];
  };
  ping: Record<string, never>;
  pong: { ready: boolean };
  'state-req': { transfer?: string; cursor: number };
  'state-page': { transfer: string; s: WireState[]; e?: WireEntry[]; next: number | null; total: number };
  map: { e: WireEntry[] };
  copy: { id: string; e: WireEntry[]; s: WireState[]; fwd?: boolean; write?: boolean };
  fetch: { k: string };
  fetched: { e: WireEntry[]; s: WireState[] };
  principal: { p: string };
  'principal-keys': { k: string[] };
}

const token = z.string().regex(TOKEN_PATTERN);
const time = z.number().int().nonnegative();
const stamp = z.tuple([time, z.number().int().nonnegative(), token]);
const wireState: z.ZodType<WireState> = z.object({
  k: z.string().min(1).max(64),
  c: time,
  a: time,
  ab: token,
  m: z.tuple([z.number().int(), stamp]),
  x: z.array(z.tuple([z.string().min(1).max(256), stamp, z.string().optional()])),
  e: z.tuple([stamp, z.enum(['invalidated', 'expired', 'regenerated'])]).optional(),
  l: z.tuple([z.number().int(), stamp]).optional(),
  b: stamp.optional(),
});

/** Ownership entry (backup manager): [key, primary, backup, stamp, ended?]. */
const wireEntry: z.ZodType<WireEntry> = z.tuple([
  z.string().min(1).max(64),
  z.union([token, z.literal('')]),
  z.union([token, z.literal('')]),
  stamp,
  z.literal(1).optional(),
]);

/** The zod schema of each kind's body: the specification (the hand checks of `wire-check.ts` accept exactly the same). */
export const bodySchemas: { readonly [K in MessageKind]: z.ZodType<WireBodies[K]> } = {
  /** Delta manager: one request's changes; `r` is where to acknowledge (ack mode), kept in the body so it survives a replay. */
  delta: z.object({ id: z.string().min(1).max(64), s: z.array(wireState), r: z.string().max(256).optional() }),
  ack: z.object({ id: z.string().min(1).max(64) }),
  /**
   * Heartbeat; `draining` while the node drains, `url` its HTTP base URL for dashboards, `unreachable` the
   * members whose subject found no responder, for each receiver to verify itself (all optional, older nodes omit them).
   */
  hb: z.object({
    started: time,
    ready: z.boolean(),
    leaving: z.boolean().optional(),
    hello: z.boolean().optional(),
    draining: z.boolean().optional(),
    url: z
      .string()
      .max(512)
      .regex(/^https?:\/\/\S+$/)
      .optional(),
    unreachable: z.array(token).max(64).optional(),
  }),
  ping: z.object({}),
  pong: z.object({ ready: z.boolean() }),
  'state-req': z.object({ transfer: z.string().max(64).optional(), cursor: z.number().int().nonnegative() }),
  'state-page': z.object({
    transfer: z.string().min(1).max(64),
    s: z.array(wireState),
    e: z.array(wireEntry).optional(),
    next: z.number().int().nonnegative().nullable(),
    total: z.number().int().nonnegative(),
  }),
  /** Backup manager: ownership entries broadcast on `.map`. */
  map: z.object({ e: z.array(wireEntry) }),
  /**
   * Backup manager: session data for a data holder (full copies or deltas), with the sender's entries;
   * `write` marks a request's write (its replication lag is measured), not a bulk re-backup or hand-over.
   */
  copy: z.object({
    id: z.string().min(1).max(64),
    e: z.array(wireEntry),
    s: z.array(wireState),
    fwd: z.boolean().optional(),
    write: z.boolean().optional(),
  }),
  /** Backup manager: ask a data holder for a session. */
  fetch: z.object({ k: z.string().min(1).max(64) }),
  /** The answer to `fetch`: the holder's entry and state, when it has them. */
  fetched: z.object({ e: z.array(wireEntry), s: z.array(wireState) }),
  /** Backup manager: which sessions of this principal does a member hold? (`findByPrincipal` asks every member.) */
  principal: z.object({ p: z.string().min(1).max(1024) }),
  /** The answer to `principal`: the keys the member holds. */
  'principal-keys': z.object({ k: z.array(z.string().min(1).max(64)).max(100_000) }),
};

/** Every message kind on the wire. */
export type MessageKind = keyof WireBodies;

type RawBody<K extends MessageKind> = WireBodies[K];
type SessionsField<B> = B extends { s: WireState[] } ? Omit<B, 's'> & { s: SessionState[] } : B;
type EntriesField<B> = B extends { e: WireEntry[] }
  ? Omit<B, 'e'> & { e: OwnershipEntry[] }
  : B extends { e?: WireEntry[] }
    ? Omit<B, 'e'> & { e?: OwnershipEntry[] }
    : B;
/** The decoded body of a message kind; session lists arrive as `SessionState`s, entries as `OwnershipEntry`s. */
export type MessageBody<K extends MessageKind> = EntriesField<SessionsField<RawBody<K>>>;

/** A decoded message of one kind. */
export interface EnvelopeOf<K extends MessageKind> {
  readonly cluster: string;
  /** Sending node id. */
  readonly node: string;
  /** Random id of the sender's process run: tells a restarted node from its previous life. */
  readonly incarnation: string;
  readonly kind: K;
  readonly body: MessageBody<K>;
}

/**
 * A decoded message: a union discriminated by `kind`, so `message.kind === 'ack'` narrows `body`.
 * `Envelope<'ack' | 'copy'>` is the union of those kinds only.
 */
export type Envelope<K extends MessageKind = MessageKind> = { [P in K]: EnvelopeOf<P> }[K];

const envelope = z.object({
  v: z.number(),
  c: z.string(),
  n: token,
  i: z.string().min(1).max(64),
  k: z.enum(Object.keys(bodySchemas) as [MessageKind, ...MessageKind[]]),
  b: z.unknown(),
});

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Encodes a message for the wire. */
export function encodeEnvelope<K extends MessageKind>(message: EnvelopeOf<K>): Uint8Array {
  const body: Record<string, unknown> = { ...(message.body as object) };
  if (Array.isArray(body.s)) body.s = (body.s as SessionState[]).map(toWire);
  if (Array.isArray(body.e)) body.e = (body.e as OwnershipEntry[]).map(entryToWire);
  return utf8Encoder.encode(
    JSON.stringify({
      v: WIRE_VERSION,
      c: message.cluster,
      n: message.node,
      i: message.incarnation,
      k: message.kind,
      b: body,
    }),
  );
}

/**
 * Decodes and validates a message addressed to `cluster`. Throws `MalformedMessageError` with a
 * drop reason for anything that is not a well-formed message of this cluster and wire version.
 */
export function decodeEnvelope(data: Uint8Array, cluster: string): Envelope {
  let json: unknown;
  try {
    json = JSON.parse(utf8Decoder.decode(data));
  } catch (cause) {
    throw new MalformedMessageError('malformed', 'not a UTF-8 JSON message', { cause });
  }
  // The kinds every write sends are checked by hand (see wire-check.ts); anything they reject goes to zod for the reason.
  if (isJsonObject(json) && json.v === WIRE_VERSION && json.c === cluster && isHotKind(json.k)) {
    const { n, i, k } = json;
    const body = isToken(n) && isString(i, 1, 64) ? checkHotBody(k, json.b) : undefined;
    if (body) return toEnvelope(cluster, n as string, i as string, k, body);
  }
  const head = envelope.safeParse(json);
  if (!head.success) throw new MalformedMessageError('malformed', `bad envelope: ${z.prettifyError(head.error)}`);
  const { v, c, n, i, k, b } = head.data;
  if (v !== WIRE_VERSION)
    throw new MalformedMessageError('unsupported-version', `wire version ${v}, expected ${WIRE_VERSION}`);
  if (c !== cluster)
    throw new MalformedMessageError('foreign-cluster', `message for cluster "${c}" on cluster "${cluster}"`);
  const parsed = bodySchemas[k].safeParse(b);
  if (!parsed.success) throw new MalformedMessageError('malformed', `bad ${k} body: ${z.prettifyError(parsed.error)}`);
  return toEnvelope(c, n, i, k, { ...(parsed.data as object) });
}

/** The decoded message of a body that passed the check of its kind: its sessions and entries converted in place. */
function toEnvelope(
  cluster: string,
  node: string,
  incarnation: string,
  kind: MessageKind,
  body: Record<string, unknown>,
): Envelope {
  if (Array.isArray(body.s)) body.s = (body.s as WireState[]).map(fromWire);
  if (Array.isArray(body.e)) body.e = (body.e as WireEntry[]).map(entryFromWire);
  // The body was validated against the schema of `kind`: kind and body agree.
  return { cluster, node, incarnation, kind, body } as Envelope;
}

/** Encodes one session state as JSON text (the wire form), e.g. for a snapshot item. */
export function encodeSessionState(state: SessionState): string {
  return JSON.stringify(toWire(state));
}

/** Decodes and validates a state made by `encodeSessionState`; throws `MalformedMessageError`. */
export function decodeSessionState(text: string): SessionState {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new MalformedMessageError('malformed', 'session state is not JSON', { cause });
  }
  const parsed = wireState.safeParse(json);
  if (!parsed.success)
    throw new MalformedMessageError('malformed', `bad session state: ${z.prettifyError(parsed.error)}`);
  return fromWire(parsed.data);
}

function entryToWire(entry: OwnershipEntry): WireEntry {
  const stamp = entry.stamp as WireEntry[3];
  return entry.ended
    ? [entry.key, entry.primary, entry.backup, stamp, 1]
    : [entry.key, entry.primary, entry.backup, stamp];
}

function entryFromWire([key, primary, backup, stamp, ended]: WireEntry): OwnershipEntry {
  return { key, primary, backup, stamp: stamp as Stamp, ...(ended ? { ended: true } : {}) };
}

function toWire(state: SessionState): WireState {
  const x: WireState['x'] = [];
  for (const [name, r] of state.attributes)
    x.push(
      r.value === undefined
        ? [name, r.stamp as WireState['x'][0][1]]
        : [name, r.stamp as WireState['x'][0][1], r.value],
    );
  return {
    k: state.key,
    c: state.createdAt,
    a: state.lastAccessedAt,
    ab: state.lastAccessedBy,
    m: [state.maxInactive.seconds, state.maxInactive.stamp as WireState['m'][1]],
    ...(state.maxLifetime
      ? { l: [state.maxLifetime.seconds, state.maxLifetime.stamp as WireState['m'][1]] as WireState['m'] }
      : {}),
    x,
    ...(state.ended ? { e: [state.ended.stamp as WireState['m'][1], state.ended.reason] } : {}),
    ...(state.base ? { b: state.base as WireStamp } : {}),
  };
}

function fromWire(wire: WireState): SessionState {
  const attributes = new Map<string, AttributeRegister>();
  for (const [name, stamp, value] of wire.x) {
    if (value !== undefined) {
      try {
        decodeValue(value);
      } catch (cause) {
        throw new MalformedMessageError('malformed', `attribute "${name.slice(0, 32)}" has an undecodable value`, {
          cause,
        });
      }
    }
    attributes.set(name, { stamp: stamp as Stamp, value, bytes: value === undefined ? 0 : wireBytes(value) });
  }
  // Assigned, not spread: every replicated write passes here.
  const state: SessionState = {
    key: wire.k,
    createdAt: wire.c,
    lastAccessedAt: wire.a,
    lastAccessedBy: wire.ab,
    maxInactive: { seconds: wire.m[0], stamp: wire.m[1] as Stamp },
    attributes,
  };
  if (wire.l) state.maxLifetime = { seconds: wire.l[0], stamp: wire.l[1] as Stamp };
  if (wire.e) state.ended = { stamp: wire.e[0] as Stamp, reason: wire.e[1] };
  if (wire.b) state.base = wire.b as Stamp;
  return state;
}
