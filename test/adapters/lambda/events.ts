// Owns: Lambda events as AWS delivers them (Function URL / HTTP API payload 2.0, REST API payload 1.0), for handler tests.
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2 } from 'aws-lambda';

let requestCounter = 0;

/** What a test request carries. */
export interface EventRequest {
  /** `name=value` pairs, as a browser sends them. */
  cookies?: string[];
  body?: string;
  headers?: Record<string, string>;
}

/**
 * A Function URL event (payload format 2.0, also what an API Gateway HTTP API sends): cookies in
 * `cookies`, not in a header; the body base64-encoded as Lambda does for non-text content types.
 */
export function functionUrlEvent(
  method: string,
  path: string,
  request: EventRequest = {},
  domain = 'abcdefghij.lambda-url.us-east-1.on.aws',
): APIGatewayProxyEventV2 {
  const now = Date.now();
  const [rawPath, rawQueryString = ''] = path.split('?') as [string, string?];
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(request.cookies?.length ? { cookies: request.cookies } : {}),
    headers: {
      host: domain,
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '443',
      'x-amzn-trace-id': `Root=1-${now.toString(16)}-${String(++requestCounter).padStart(24, '0')}`,
      'user-agent': 'vitest',
      ...(request.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...request.headers,
    },
    requestContext: {
      accountId: 'anonymous',
      apiId: domain.split('.')[0]!,
      domainName: domain,
      domainPrefix: domain.split('.')[0]!,
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'vitest' },
      requestId: `req-${requestCounter}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    ...(request.body !== undefined ? { body: Buffer.from(request.body).toString('base64') } : {}),
    isBase64Encoded: request.body !== undefined,
  };
}

/** An API Gateway REST API proxy event (payload format 1.0): cookies in the `Cookie` header, multi-value headers too. */
export function restApiEvent(method: string, path: string, request: EventRequest = {}): APIGatewayProxyEvent {
  const now = Date.now();
  const headers: Record<string, string> = {
    Host: 'abcdefghij.execute-api.us-east-1.amazonaws.com',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Port': '443',
    'User-Agent': 'vitest',
    ...(request.cookies?.length ? { Cookie: request.cookies.join('; ') } : {}),
    ...(request.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    ...request.headers,
  };
  return {
    resource: '/{proxy+}',
    path,
    httpMethod: method,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]])),
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: { proxy: path.slice(1) },
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abcdefghij',
      authorizer: null,
      domainName: 'abcdefghij.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abcdefghij',
      httpMethod: method,
      identity: { sourceIp: '127.0.0.1', userAgent: 'vitest' } as APIGatewayProxyEvent['requestContext']['identity'],
      path: `/prod${path}`,
      protocol: 'HTTP/1.1',
      requestId: `rest-${++requestCounter}`,
      requestTimeEpoch: now,
      resourceId: 'abc123',
      resourcePath: '/{proxy+}',
      stage: 'prod',
    },
    body: request.body ?? null,
    isBase64Encoded: false,
  };
}

/** The response's `Set-Cookie` lines, from `cookies` (payload 2.0) or the multi-value header (1.0). */
export function setCookies(result: {
  cookies?: string[];
  headers?: Record<string, unknown>;
  multiValueHeaders?: Record<string, unknown[]>;
}): string[] {
  if (result.cookies) return result.cookies;
  const lines =
    result.multiValueHeaders?.['set-cookie'] ??
    (result.headers?.['set-cookie'] !== undefined ? [result.headers['set-cookie']] : []);
  return lines.map(String);
}

/** The `name=value` of the cookie called `name` a response sets, or undefined. */
export function cookieSet(result: Parameters<typeof setCookies>[0], name: string): string | undefined {
  return setCookies(result)
    .find((line) => line.startsWith(`${name}=`))
    ?.split(';')[0];
}

/**
 * What a browser sends next: `cookies` (`name=value` pairs) with the cookies a response set applied on
 * top (the session cookie and its version cookie, or their removal).
 */
export function nextCookies(cookies: readonly string[], result: Parameters<typeof setCookies>[0]): string[] {
  const jar = new Map(cookies.map((pair) => [pair.slice(0, pair.indexOf('=')), pair] as const));
  for (const line of setCookies(result)) {
    const pair = line.split(';')[0]!;
    const name = pair.slice(0, pair.indexOf('='));
    if (pair.endsWith('=') || /max-age=0/i.test(line)) jar.delete(name);
    else jar.set(name, pair);
  }
  return [...jar.values()];
}
