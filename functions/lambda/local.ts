/**
 * Runs the Lambda handler locally behind a plain HTTP server, the way a Function URL calls it:
 * every request becomes a payload-2.0 event. `--instances N` starts N execution environments and
 * sends each request to a random one (Lambda has no sticky routing), so catch-up and route
 * rewrites can be watched. Same environment variables as the function (NATS_URL, SESSREP_*).
 *
 *   nats-server -js &
 *   NATS_URL=nats://127.0.0.1:4222 node --import tsx functions/lambda/local.ts --port 3000 --instances 3
 */
import { createServer, type IncomingMessage } from 'node:http';
import { parseArgs } from 'node:util';
import type { LambdaEvent } from 'hono/aws-lambda';
import type { LambdaSessionHandler } from 'session-replication/lambda';
import { readConfig } from '../shared/config.ts';
import { createDemoLambdaHandler } from './runtime.ts';

/** The Function URL event for a Node request. */
export function functionUrlEvent(request: IncomingMessage, body: Buffer): LambdaEvent {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers))
    if (value !== undefined && name !== 'cookie') headers[name] = Array.isArray(value) ? value.join(',') : value;
  const cookies = request.headers.cookie?.split(/;\s*/).filter(Boolean);
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(cookies?.length ? { cookies } : {}),
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method: request.method ?? 'GET',
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: request.socket.remoteAddress ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: crypto.randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    body: body.length > 0 ? body.toString('base64') : null,
    isBase64Encoded: body.length > 0,
  } as unknown as LambdaEvent;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '3000' },
      host: { type: 'string', default: '127.0.0.1' },
      instances: { type: 'string', default: '1' },
    },
  });
  const count = Math.max(1, Number(values.instances));
  const instances: LambdaSessionHandler[] = Array.from({ length: count }, () =>
    createDemoLambdaHandler(readConfig('lambda', process.env), { leaveOnSigterm: false }),
  );
  await Promise.all(instances.map((instance) => instance.start()));
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const instance = instances[Math.floor(Math.random() * instances.length)]!;
      instance(functionUrlEvent(request, Buffer.concat(chunks)))
        .then((result) => {
          const headers: Record<string, string | string[]> = {
            ...(result.headers as Record<string, string>),
            'x-lambda-instance': instance.node,
          };
          const cookies = (result as { cookies?: string[] }).cookies;
          if (cookies?.length) headers['set-cookie'] = cookies;
          response.writeHead(result.statusCode, headers);
          response.end(result.isBase64Encoded ? Buffer.from(result.body, 'base64') : result.body);
        })
        .catch((error: unknown) => {
          response.writeHead(500, { 'content-type': 'text/plain' });
          response.end(String(error));
        });
    });
  });
  server.listen(Number(values.port), values.host, () => {
    const { port } = server.address() as { port: number };
    process.stdout.write(
      `Lambda handler on http://${values.host}:${port} (${count} instance${count > 1 ? 's' : ''}: ${instances.map((i) => i.node).join(', ')})\n`,
    );
  });
  const stop = () => {
    server.close();
    void Promise.allSettled(instances.map((instance) => instance.shutdown(2000))).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) await main();
