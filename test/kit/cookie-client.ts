// Owns: the one cookie-keeping client of the tests: carries one session cookie across nodes, over HTTP or in-process.

/** What {@link CookieClient.request} returns. */
export interface CookieReply {
  status: number;
  /** The parsed JSON body; undefined when the body is empty or not JSON. `any`, so tests can read fields directly. */
  // biome-ignore lint/suspicious/noExplicitAny: test ergonomics: bodies are asserted on, not trusted
  json: any;
  /** The raw body text. */
  text: string;
  headers: Headers;
  /** Every Set-Cookie line of the response. */
  setCookie: string[];
}

/** Something that answers requests in this process: a Hono app, or a test node holding one. */
export interface InProcessApp {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

/** Where a request goes: an HTTP base URL (any node or a load balancer), an app, or a test node with an `app`. */
export type RequestTarget = string | InProcessApp | { readonly app: InProcessApp };

/**
 * A browser-like client that keeps the session cookie (default SESSIONID) and its version cookie
 * (`<name>_v`, read-your-writes) and sends them to whichever node it asks.
 */
export class CookieClient {
  /** The session cookie's value, sent as `Cookie: <name>=<value>` when set. */
  cookie?: string;
  /** The session version cookie's value (`<name>_v`), sent along when set. */
  version?: string;
  /** The cookie name it keeps. @default 'SESSIONID' */
  readonly cookieName: string;
  /** The origin of in-process requests. @default 'http://app.test' */
  readonly origin: string;

  constructor(options: { cookieName?: string; cookie?: string; origin?: string } = {}) {
    this.cookieName = options.cookieName ?? 'SESSIONID';
    this.origin = options.origin ?? 'http://app.test';
    if (options.cookie !== undefined) this.cookie = options.cookie;
  }

  /** The session key: the cookie value without its `.<route>` suffix. Throws when it holds no cookie. */
  get key(): string {
    if (!this.cookie) throw new Error('the client holds no session cookie');
    return keyOf(this.cookie);
  }

  /** The route: the node named after the cookie value's last dot. Throws when it holds no cookie. */
  get route(): string {
    if (!this.cookie) throw new Error('the client holds no session cookie');
    return this.cookie.slice(this.cookie.lastIndexOf('.') + 1);
  }

  /**
   * Sends `method path` to `target`, carrying the cookie, and keeps the cookie the answer sets (or
   * forgets it when deleted). A string body is sent as-is, anything else as JSON (so a JSON string
   * value must be passed as `JSON.stringify("text")`). Redirects are not followed.
   */
  async request(target: RequestTarget, method: string, path: string, body?: unknown): Promise<CookieReply> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const cookies = [
      ...(this.cookie !== undefined ? [`${this.cookieName}=${this.cookie}`] : []),
      ...(this.version !== undefined ? [`${this.cookieName}_v=${this.version}`] : []),
    ];
    if (cookies.length > 0) headers.cookie = cookies.join('; ');
    const init: RequestInit = { method, headers, redirect: 'manual' };
    if (typeof body === 'string') init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    let response: Response;
    if (typeof target === 'string') response = await fetch(new URL(path, target), init);
    else {
      const app = 'app' in target ? target.app : target;
      response = await app.request(`${this.origin}${path}`, init);
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const setCookie = response.headers.getSetCookie();
    for (const line of setCookie) this.absorb(line);
    // An in-process request does no I/O: yield one event-loop turn as a real round trip would, so that
    // timers (heartbeats, flushes) and sockets keep running while a test drives thousands of requests.
    if (typeof target !== 'string') await new Promise((resolve) => setImmediate(resolve));
    return { status: response.status, json, text, headers: response.headers, setCookie };
  }

  /**
   * Applies one Set-Cookie line of the session or version cookie (other cookie names are ignored):
   * Max-Age <= 0, an Expires in the past or an empty value deletes.
   */
  absorb(setCookieLine: string): void {
    const [pair = '', ...attributes] = setCookieLine.split(';').map((part) => part.trim());
    const eq = pair.indexOf('=');
    const name = eq < 0 ? '' : pair.slice(0, eq).trim();
    if (name !== this.cookieName && name !== `${this.cookieName}_v`) return;
    const field = name === this.cookieName ? 'cookie' : 'version';
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    let maxAge: number | undefined;
    let expires: number | undefined;
    for (const attribute of attributes) {
      const i = attribute.indexOf('=');
      const name = (i < 0 ? attribute : attribute.slice(0, i)).trim().toLowerCase();
      const text = i < 0 ? '' : attribute.slice(i + 1).trim();
      if (name === 'max-age') maxAge = Number(text);
      if (name === 'expires') expires = Date.parse(text);
    }
    // RFC 6265: Max-Age wins over Expires.
    const expired = maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= Date.now();
    if (value === '' || expired) delete this[field];
    else this[field] = value;
  }
}

/** The key part of a `<key>.<route>` cookie value. */
export function keyOf(cookie: string): string {
  return cookie.slice(0, cookie.lastIndexOf('.'));
}
