/**
 * Message protection with a pre-shared cluster key (WebCrypto, so every runtime has it): AES-256-GCM
 * (`encrypt`: secrecy and integrity) or HMAC-SHA256 (`sign`: integrity only). The cluster name, the
 * sender and the message kind travel in a clear header that is authenticated too (associated data),
 * and must match the envelope inside. Several keys with ids allow rotation without downtime: send
 * with the first (newest), accept any.
 *
 * Frame: 0xA5 | version 1 | mode (1 sign, 2 encrypt) | key-id length | key id | header length (2
 * bytes) | header JSON {c,n,k} | encrypt: 12-byte IV + ciphertext with tag; sign: payload + 32-byte MAC.
 */
import { InvalidOptionsError, MalformedMessageError } from '../errors.ts';

/** `encrypt` (AES-256-GCM) or `sign` (HMAC-SHA256). */
export type ProtectionMode = 'encrypt' | 'sign';

/** A cluster key as configured: an id and 32 random bytes in base64. */
export interface ClusterKeyConfig {
  readonly id: string;
  /** 256 bits, base64 or base64url. */
  readonly secret: string;
}

/** The authenticated clear header of a protected message. */
export interface ProtectedHeader {
  readonly cluster: string;
  readonly node: string;
  readonly kind: string;
}

const MAGIC = 0xa5;
const FORMAT = 1;
const MODE_CODE: Record<ProtectionMode, number> = { sign: 1, encrypt: 2 };
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Whether a message is a protected frame (plain envelopes are JSON and start with `{`). */
export function isProtectedFrame(data: Uint8Array): boolean {
  return data[0] === MAGIC;
}

/** Parses `id:base64[,id:base64...]` (a bare base64 key gets id `k1`); throws `InvalidOptionsError`. */
export function parseClusterKeys(text: string): ClusterKeyConfig[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((entry, i) => {
      const colon = entry.indexOf(':');
      return colon < 0
        ? { id: `k${i + 1}`, secret: entry }
        : { id: entry.slice(0, colon), secret: entry.slice(colon + 1) };
    });
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const normalized = text.replaceAll('-', '+').replaceAll('_', '/');
  const binary = atob(normalized.padEnd(Math.ceil(normalized.length / 4) * 4, '='));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** Validates cluster keys (ids, 256 bits each, no duplicates) and returns their bytes by id; throws `InvalidOptionsError`. */
export function checkClusterKeys(keys: readonly ClusterKeyConfig[]): Map<string, Uint8Array<ArrayBuffer>> {
  if (keys.length === 0) throw new InvalidOptionsError('cluster keys: at least one key is needed');
  const out = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const { id, secret } of keys) {
    if (!KEY_ID.test(id))
      throw new InvalidOptionsError(`cluster key id "${id}" must be 1-32 characters of A-Z a-z 0-9 _ -`);
    if (out.has(id)) throw new InvalidOptionsError(`cluster key id "${id}" is configured twice`);
    let raw: Uint8Array<ArrayBuffer>;
    try {
      raw = decodeBase64(secret);
    } catch {
      throw new InvalidOptionsError(`cluster key "${id}" is not base64`);
    }
    if (raw.length !== 32)
      throw new InvalidOptionsError(`cluster key "${id}" must be 256 bits (32 bytes), got ${raw.length} bytes`);
    out.set(id, raw);
  }
  return out;
}

/** Protects and verifies replication messages with the cluster keys. */
export class MessageProtection {
  private constructor(
    readonly mode: ProtectionMode,
    private readonly keys: Map<string, CryptoKey>,
    private readonly sendKeyId: string,
  ) {}

  /** Imports the keys; throws `InvalidOptionsError` for a key that is not 256 bits or a bad id. */
  static async create(keys: readonly ClusterKeyConfig[], mode: ProtectionMode = 'encrypt'): Promise<MessageProtection> {
    const imported = new Map<string, CryptoKey>();
    for (const [id, raw] of checkClusterKeys(keys)) {
      const key =
        mode === 'encrypt'
          ? await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt'])
          : await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
      imported.set(id, key);
    }
    return new MessageProtection(mode, imported, keys[0]!.id);
  }

  /** Wraps an encoded envelope with the newest key. */
  async protect(header: ProtectedHeader, envelope: Uint8Array): Promise<Uint8Array> {
    const payload = new Uint8Array(envelope);
    const prefix = this.#prefix(this.sendKeyId, header);
    const key = this.keys.get(this.sendKeyId)!;
    if (this.mode === 'encrypt') {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const sealed = new Uint8Array(
        await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: prefix }, key, payload),
      );
      return concat(prefix, iv, sealed);
    }
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, concat(prefix, payload)));
    return concat(prefix, payload, mac);
  }

  /**
   * Verifies (and decrypts) a frame; returns the envelope bytes and the authenticated header.
   * Throws `MalformedMessageError` with reason `unprotected`, `unknown-key` or `unauthenticated`.
   */
  async unprotect(frame: Uint8Array): Promise<{ header: ProtectedHeader; payload: Uint8Array }> {
    // A private copy with a plain ArrayBuffer: what WebCrypto takes.
    const data = new Uint8Array(frame);
    if (!isProtectedFrame(frame))
      throw new MalformedMessageError('unprotected', 'a plain message on a protected cluster');
    const fail = (message: string): never => {
      throw new MalformedMessageError('unauthenticated', message);
    };
    if (data.length < 6 || data[1] !== FORMAT || data[2] !== MODE_CODE[this.mode])
      fail('unsupported protection format or mode');
    const idLength = data[3]!;
    const headerAt = 4 + idLength;
    if (data.length < headerAt + 2) fail('truncated frame');
    let keyId = '';
    try {
      keyId = utf8Decoder.decode(data.subarray(4, headerAt));
    } catch {
      fail('bad key id');
    }
    const key = this.keys.get(keyId);
    if (!key)
      throw new MalformedMessageError('unknown-key', `no configured cluster key has id "${keyId.slice(0, 32)}"`);
    const headerLength = (data[headerAt]! << 8) | data[headerAt + 1]!;
    const bodyAt = headerAt + 2 + headerLength;
    if (data.length < bodyAt) fail('truncated frame');
    const prefix = data.subarray(0, bodyAt);
    let payload: Uint8Array<ArrayBuffer>;
    if (this.mode === 'encrypt') {
      if (data.length < bodyAt + 12 + 16) fail('truncated frame');
      try {
        payload = new Uint8Array(
          await crypto.subtle.decrypt(
            { name: 'AES-GCM', iv: data.subarray(bodyAt, bodyAt + 12), additionalData: prefix },
            key,
            data.subarray(bodyAt + 12),
          ),
        );
      } catch {
        return fail('decryption failed (wrong key or tampered message)');
      }
    } else {
      if (data.length < bodyAt + 32) fail('truncated frame');
      payload = data.subarray(bodyAt, data.length - 32);
      const valid = await crypto.subtle.verify('HMAC', key, data.subarray(data.length - 32), concat(prefix, payload));
      if (!valid) fail('signature check failed (wrong key or tampered message)');
    }
    let header: ProtectedHeader;
    try {
      const parsed = JSON.parse(utf8Decoder.decode(data.subarray(headerAt + 2, bodyAt))) as {
        c?: unknown;
        n?: unknown;
        k?: unknown;
      };
      if (typeof parsed.c !== 'string' || typeof parsed.n !== 'string' || typeof parsed.k !== 'string')
        throw new Error();
      header = { cluster: parsed.c, node: parsed.n, kind: parsed.k };
    } catch {
      return fail('bad protected header');
    }
    return { header, payload: payload! };
  }

  #prefix(keyId: string, header: ProtectedHeader): Uint8Array<ArrayBuffer> {
    const id = utf8.encode(keyId);
    const json = utf8.encode(JSON.stringify({ c: header.cluster, n: header.node, k: header.kind }));
    return concat(
      Uint8Array.of(MAGIC, FORMAT, MODE_CODE[this.mode], id.length),
      id,
      Uint8Array.of(json.length >> 8, json.length & 0xff),
      json,
    );
  }
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
