// Owns: a cookie-keeping HTTP client that carries one SESSIONID across nodes in black-box tests.

/** What {@link SessionClient.request} returns. */
export interface SessionResponse {
  /** HTTP status code. */
  status: number;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: unknown;
  /** Raw body text. */
  text: string;
  /** Response headers. */
  headers: Headers;
  /** Every Set-Cookie header line of the response. */
  setCookie: string[];
}

/** A browser-like client that keeps only the session cookie (default name SESSIONID). */
export class SessionClient {
  /** Current session cookie value, sent as `Cookie: SESSIONID=<value>` when set. */
  cookie?: string;
  /** Cookie name tracked by this client. */
  readonly cookieName: string;

  /** `cookieName` defaults to SESSIONID. */
  constructor(opts: { cookieName?: string; cookie?: string } = {}) {
    this.cookieName = opts.cookieName ?? "SESSIONID";
    if (opts.cookie !== undefined) this.cookie = opts.cookie;
  }

  /**
   * Sends `method path` to `baseUrl` (any node; the cookie travels with the client). Objects are sent as JSON,
   * strings as-is. Redirects are not followed. Stores the session cookie from Set-Cookie, forgetting it on
   * deletion (Max-Age<=0, else an Expires in the past, or an empty value).
   */
  async request(baseUrl: string, method: string, path: string, body?: unknown): Promise<SessionResponse> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.cookie !== undefined) headers.cookie = `${this.cookieName}=${this.cookie}`;
    let payload: string | undefined;
    if (typeof body === "string") payload = body;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    const res = await fetch(new URL(path, baseUrl), { method, headers, body: payload, redirect: "manual" });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const setCookie = res.headers.getSetCookie();
    for (const line of setCookie) this.absorb(line);
    return { status: res.status, json, text, headers: res.headers, setCookie };
  }

  /** Applies one Set-Cookie line to the stored session cookie (ignores other cookie names). */
  absorb(setCookieLine: string): void {
    const [pair = "", ...attrs] = setCookieLine.split(";").map((s) => s.trim());
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim() !== this.cookieName) return;
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    let maxAge: number | undefined;
    let expires: number | undefined;
    for (const attr of attrs) {
      const i = attr.indexOf("=");
      const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const v = i < 0 ? "" : attr.slice(i + 1).trim();
      if (key === "max-age") maxAge = Number(v);
      if (key === "expires") expires = Date.parse(v);
    }
    // RFC 6265: Max-Age wins over Expires.
    const expired = maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= Date.now();
    if (value === "" || expired) delete this.cookie;
    else this.cookie = value;
  }
}
