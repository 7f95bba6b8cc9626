/** Session ids: `<key>.<route>`, where the key is 144 random bits in base64url and the route names a node. */

const KEY_BYTES = 18;
const KEY_PATTERN = /^[A-Za-z0-9_-]{24}$/;
/** Cluster names, node ids and routes: one NATS subject token, printable and short. */
export const TOKEN_PATTERN: RegExp = /^[A-Za-z0-9_-]{1,64}$/;

/** A parsed session id. */
export interface SessionId {
  /** The session's identity across the cluster. */
  readonly key: string;
  /** The node the client was last routed to; only a hint for load balancers. */
  readonly route: string;
}

/** Draws a fresh session key from `crypto.getRandomValues` (144 bits, base64url, 24 characters). */
export function newSessionKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_');
}

/** Joins a key and a route into the cookie value `<key>.<route>`. */
export function formatSessionId(key: string, route: string): string {
  return `${key}.${route}`;
}

/**
 * Parses a client-supplied id; anything that is not exactly `<24-char key>.<token>` gives undefined,
 * so a forged or damaged id is never adopted.
 */
export function parseSessionId(raw: string | undefined): SessionId | undefined {
  if (!raw || raw.length > 128) return undefined;
  const dot = raw.lastIndexOf('.');
  if (dot < 0) return undefined;
  const key = raw.slice(0, dot);
  const route = raw.slice(dot + 1);
  if (!KEY_PATTERN.test(key) || !TOKEN_PATTERN.test(route)) return undefined;
  return { key, route };
}
