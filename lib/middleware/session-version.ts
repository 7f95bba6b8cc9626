/**
 * The session version a client is told (read-your-writes on any node): the newest stamp of its session
 * as the answering node left it, in a companion cookie bound to the session key by an HMAC-SHA256
 * (`@noble/hashes`, synchronous: it runs on nearly every request, and WebCrypto's sign is a thread-pool
 * round trip on Node). A node whose copy is older than the version a client presents catches up before it
 * answers, or refuses (see the middleware).
 *
 * Value: `<wall ms base36>.<counter base36>.<node>.<mac>`, the MAC being the first 128 bits of
 * HMAC-SHA256(key, `v1|<cluster>|<session key>|<wall>|<counter>|<node>`) in base64url: a version
 * of one cluster means nothing to another on the same domain. With cluster keys (or
 * `versionCookieKeys`) the HMAC key is derived from each configured key with HKDF, so only the
 * cluster can issue a version; without keys it is a fixed public key, so the value is bound to the
 * session key alone: only a client that holds the session's key can forge its version, which can only
 * make its own requests wait.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { checkClusterKeys, type ClusterKeyConfig } from '../codec/protection.ts';
import { newerStamp, type Stamp } from '../session/clock.ts';
import { TOKEN_PATTERN } from '../session/ids.ts';
import { latestStamp, type SessionState } from '../session/state.ts';

const utf8 = new TextEncoder();
const MAC_BYTES = 16;
const INFO = utf8.encode('session-replication version cookie v1');
/** The key a cluster without keys uses: public, so the MAC only binds the version to the session key. */
const PUBLIC_KEY = utf8.encode('session-replication: unsigned session version v1');
const VALUE_PATTERN = /^([0-9a-z]{1,11})\.([0-9a-z]{1,7})\.([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{22})$/;

/** What a presented version cookie turned out to be. */
export type PresentedVersion =
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly version: Stamp }
  | { readonly kind: 'invalid' };

/** Issues and checks session version cookies with the cluster's keys (the first signs, any verifies). */
export class SessionVersions {
  /** The keys once derived (at once without cluster keys); until then `#derived` resolves to them. */
  #keys: readonly MacKey[] | undefined;
  readonly #derived: Promise<readonly MacKey[]>;
  /** True when the versions are signed with cluster keys (false: bound to the session key only). */
  readonly signed: boolean;

  readonly #cluster: string;

  /** Checks the keys at once (`InvalidOptionsError`); derives them in the background. `cluster` is bound into every MAC. */
  constructor(keys: readonly ClusterKeyConfig[] | undefined, cluster = '') {
    this.#cluster = cluster;
    const raw = keys && keys.length > 0 ? [...checkClusterKeys(keys).values()] : undefined;
    this.signed = raw !== undefined;
    if (raw) this.#derived = Promise.all(raw.map(derive)).then((derived) => (this.#keys = derived));
    else {
      this.#keys = [macKey(PUBLIC_KEY)];
      this.#derived = Promise.resolve(this.#keys);
    }
  }

  /** The cookie value telling the client that its session `key` is at `version`. */
  async encode(key: string, version: Stamp): Promise<string> {
    const [signing] = this.#keys ?? (await this.#derived);
    const [wall, counter, node] = version;
    const tag = toBase64Url(mac(signing!, `${this.#cluster}|${key}`, version));
    return `${wall.toString(36)}.${counter.toString(36)}.${node}.${tag}`;
  }

  /** Reads a presented cookie value for session `key`: none, a version this cluster issued for that key, or invalid. */
  async verify(key: string, value: string | undefined): Promise<PresentedVersion> {
    if (value === undefined || value === '') return { kind: 'none' };
    const match = VALUE_PATTERN.exec(value);
    if (!match) return { kind: 'invalid' };
    const version: Stamp = [Number.parseInt(match[1]!, 36), Number.parseInt(match[2]!, 36), match[3]!];
    if (!Number.isSafeInteger(version[0]) || !TOKEN_PATTERN.test(version[2])) return { kind: 'invalid' };
    // Compared as text: a non-canonical encoding of the right MAC (other padding bits) is refused too.
    const presented = match[4]!;
    for (const candidate of this.#keys ?? (await this.#derived)) {
      if (equal(toBase64Url(mac(candidate, `${this.#cluster}|${key}`, version)), presented))
        return { kind: 'valid', version };
    }
    return { kind: 'invalid' };
  }
}

/**
 * The version of a session after a request: the newest stamp of the live states given (its state on
 * this node, and the request's own change, for when the state moved away); undefined when none is live.
 */
export function newestVersion(states: readonly (SessionState | undefined)[]): Stamp | undefined {
  let newest: Stamp | undefined;
  for (const state of states)
    if (state && !state.ended) newest = newest ? newerStamp(newest, latestStamp(state)) : latestStamp(state);
  return newest;
}

/** The HMAC key derived from a cluster key with HKDF-SHA256 (WebCrypto: once per key, at start). */
async function derive(secret: Uint8Array<ArrayBuffer>): Promise<MacKey> {
  const base = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: INFO },
    base,
    256,
  );
  return macKey(new Uint8Array(bits));
}

/** An HMAC-SHA256 key with its pads hashed once; each MAC starts from a copy. */
type MacKey = ReturnType<typeof hmac.create>;

function macKey(key: Uint8Array): MacKey {
  return hmac.create(sha256, key);
}

/** `scope` is `<cluster>|<session key>`. */
function mac(key: MacKey, scope: string, [wall, counter, node]: Stamp): Uint8Array {
  return key
    .clone()
    .update(utf8.encode(`v1|${scope}|${wall}|${counter}|${node}`))
    .digest()
    .subarray(0, MAC_BYTES);
}

/** Compares in time independent of where the first difference is (both are base64url text). */
function equal(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}
