// Owns: tests of the AWS Lambda entry point (functions/lambda/handler.ts, runtime.ts, config.ts) on session-replication/lambda, against a real local nats-server.
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { APIGatewayProxyResult, LambdaEvent } from 'hono/aws-lambda';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  lambdaLogger,
  parseNatsSettings,
  type LambdaHandlerStats,
  type LambdaSessionHandler,
} from '../../../adapters/lambda/index.ts';
import { ConfigError, readConfig, type LambdaEnvConfig } from '../../../functions/shared/config.ts';
import { createDemoLambdaHandler } from '../../../functions/lambda/runtime.ts';
import { InvalidOptionsError } from '../../../lib/errors.ts';
import { consoleLogger } from '../../../lib/logger.ts';
import { createSnapshotTable } from '../../../lib/store/dynamodb.ts';
import { REPO_ROOT, spawnTracked, startNatsServer, waitFor, type NatsServerHandle } from '../../kit/index.ts';

/** The admin token the handler module reads (SESSREP_ADMIN_TOKEN): `/cluster` needs it. */
const ADMIN_TOKEN = 'lambda-test-admin-token-0123456789';

const USER = 'sessrep';
const PASSWORD = 's3cret-for-tests';
const SECRET_ID = 'sessrep/test/nats';
const PARAMETER = '/sessrep/test/nats';
const DOMAIN = 'abcdefghij.lambda-url.us-east-1.on.aws';
const WORKER = fileURLToPath(new URL('./lambda-worker.ts', import.meta.url));

let nats: NatsServerHandle;
let monitoring: string;
let aws: Server;
let awsUrl: string;
const awsCalls: string[] = [];
let settingsText: string;
const savedEnv = { ...process.env };
const runtimes: LambdaSessionHandler[] = [];
const workers: ChildProcess[] = [];

// ---------------------------------------------------------------------------------------------
// Helpers

let requestCounter = 0;

/** A Function URL (payload format 2.0) event, as Lambda delivers it: cookies in `cookies`, not in a header. */
function urlEvent(
  method: string,
  path: string,
  options: { cookie?: string; body?: string; headers?: Record<string, string> } = {},
): LambdaEvent {
  const now = Date.now();
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    ...(options.cookie ? { cookies: [options.cookie] } : {}),
    headers: {
      host: DOMAIN,
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '443',
      'user-agent': 'vitest',
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefghij',
      domainName: DOMAIN,
      domainPrefix: 'abcdefghij',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'vitest' },
      requestId: `req-${++requestCounter}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    ...(options.body !== undefined ? { body: options.body } : {}),
    isBase64Encoded: false,
  };
  return { body: null, ...event } as unknown as LambdaEvent;
}

type Result = APIGatewayProxyResult & { cookies?: string[] };

/** The `SESSIONID=<key>.<route>` pair of a result's Set-Cookie, or undefined. */
function sessionCookie(result: Result): string | undefined {
  const line = result.cookies?.find((c) => c.startsWith('SESSIONID='));
  return line?.split(';')[0];
}

/** A browser's cookie header after `result`: its session and version cookies (`SESSIONID`, `SESSIONID_v`) replace the older ones. */
function browserCookies(previous: string | undefined, result: Result): string {
  const jar = new Map((previous ? previous.split('; ') : []).map((pair) => [pair.slice(0, pair.indexOf('=')), pair]));
  for (const line of result.cookies ?? []) {
    const pair = line.split(';')[0]!;
    jar.set(pair.slice(0, pair.indexOf('=')), pair);
  }
  return [...jar.values()].join('; ');
}

function json(result: Result): Record<string, unknown> {
  return JSON.parse(result.body) as Record<string, unknown>;
}

const routeOf = (cookie: string) => cookie.slice(cookie.lastIndexOf('.') + 1);

/** NATS connections the server sees whose client name starts with `prefix`. */
async function connectionsNamed(prefix: string): Promise<string[]> {
  const response = await fetch(`${monitoring}/connz?limit=1024`);
  const body = (await response.json()) as { connections?: { name?: string }[] };
  return (body.connections ?? []).map((c) => c.name ?? '').filter((name) => name.startsWith(prefix));
}

function config(overrides: Partial<LambdaEnvConfig> & { cluster: string }): LambdaEnvConfig {
  return { ...readConfig('lambda', { AWS_REGION: 'us-east-1', NATS_URL: nats.url }), ...overrides };
}

function newRuntime(cfg: LambdaEnvConfig): LambdaSessionHandler {
  const runtime = createDemoLambdaHandler(cfg, {
    nats: { load: async () => settingsText },
    leaveOnSigterm: false,
    logger: lambdaLogger('silent'),
  });
  runtimes.push(runtime);
  return runtime;
}

/** A Lambda execution environment in a child process: freeze it with SIGSTOP, recycle it with SIGTERM. */
interface Worker {
  readonly child: ChildProcess;
  readonly node: string;
  invoke(event: LambdaEvent): Promise<{ result: Result; stats: LambdaHandlerStats }>;
  stats(): Promise<LambdaHandlerStats>;
  /** Stops the worker's log follower silently, as a pull request that expired during a long freeze does. */
  stall(): Promise<void>;
  exited: Promise<number | null>;
}

async function startWorker(env: Record<string, string>): Promise<Worker> {
  const child = fork(WORKER, [], {
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      NODE_NO_WARNINGS: '1',
      SESSREP_TEST_NATS_SETTINGS: settingsText,
      NATS_URL: nats.url,
      AWS_REGION: 'us-east-1',
      LOG_LEVEL: 'silent',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  workers.push(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let next = 0;
  const pending = new Map<number, (reply: Record<string, unknown>) => void>();
  const ready = new Promise<string>((resolve, reject) => {
    child.on('message', (raw) => {
      const message = raw as Record<string, unknown>;
      if (message.ready) resolve(message.node as string);
      else pending.get(message.id as number)?.(message);
    });
    void exited.then((code) => reject(new Error(`lambda worker exited with ${code} before it was ready`)));
  });
  const node = await ready;
  const ask = (payload: Record<string, unknown>) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = ++next;
      pending.set(id, (reply) => {
        pending.delete(id);
        if (reply.error) reject(new Error(String(reply.error)));
        else resolve(reply);
      });
      child.send({ id, ...payload });
    });
  return {
    child,
    node,
    exited,
    invoke: async (event) => {
      const reply = await ask({ event });
      return { result: reply.result as Result, stats: reply.stats as LambdaHandlerStats };
    },
    stats: async () => (await ask({})).stats as LambdaHandlerStats,
    stall: async () => void (await ask({ stall: true })),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  nats = await startNatsServer({
    jetstream: true,
    extraConfig: `http: "127.0.0.1:-1"\nauthorization { user: "${USER}", password: "${PASSWORD}" }`,
  });
  const portsFile = readdirSync(nats.dir).find((name) => name.endsWith('.ports'))!;
  monitoring = (JSON.parse(readFileSync(join(nats.dir, portsFile), 'utf8')) as { monitoring: string[] }).monitoring[0]!;
  settingsText = JSON.stringify({ servers: nats.url, user: USER, password: PASSWORD });

  // A stand-in for the Secrets Manager and SSM endpoints (AWS JSON 1.1 protocol), so the real SDK clients run.
  aws = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const target = String(request.headers['x-amz-target']);
      awsCalls.push(target);
      const input = JSON.parse(body || '{}') as { SecretId?: string; Name?: string; WithDecryption?: boolean };
      response.setHeader('content-type', 'application/x-amz-json-1.1');
      if (target === 'secretsmanager.GetSecretValue' && input.SecretId === SECRET_ID) {
        response.end(
          JSON.stringify({
            ARN: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${SECRET_ID}-AbCdEf`,
            Name: SECRET_ID,
            SecretString: settingsText,
            VersionId: 'v1',
          }),
        );
      } else if (target === 'AmazonSSM.GetParameter' && input.Name === PARAMETER && input.WithDecryption === true) {
        response.end(
          JSON.stringify({ Parameter: { Name: PARAMETER, Type: 'SecureString', Value: settingsText, Version: 1 } }),
        );
      } else {
        response.statusCode = 400;
        response.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: `no ${target} for ${body}` }));
      }
    });
  });
  await new Promise<void>((resolve) => aws.listen(0, '127.0.0.1', resolve));
  awsUrl = `http://127.0.0.1:${(aws.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const child of workers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.allSettled(runtimes.map((r) => r.shutdown(2000)));
  process.env = { ...savedEnv };
  await new Promise((resolve) => aws?.close(resolve));
  await nats?.stop();
});

// ---------------------------------------------------------------------------------------------

describe('handler module (env-configured, NATS credentials from Secrets Manager)', () => {
  let handlerModule: typeof import('../../../functions/lambda/handler.ts');
  let cookie: string;

  beforeAll(async () => {
    Object.assign(process.env, {
      SESSREP_CLUSTER: 'lambda-it',
      SESSREP_NATS_SECRET: SECRET_ID,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: awsUrl,
      LOG_LEVEL: 'silent',
      SESSREP_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    delete process.env.NATS_URL; // the servers come from the secret
    delete process.env.SESSREP_DYNAMODB_TABLE;
    delete process.env.AWS_LAMBDA_FUNCTION_NAME;
    awsCalls.length = 0;
    // Importing the module is Lambda's INIT phase: it starts the node (top-level await).
    handlerModule = await import('../../../functions/lambda/handler.ts');
    runtimes.push(handlerModule.handler);
  });

  it('starts during import: the secret is fetched once and one NATS connection is open before the first invocation', async () => {
    const { handler } = handlerModule;
    expect(handler.clusterNode?.ready).toBe(true);
    expect(handler.stats.invocations).toBe(0);
    expect(awsCalls).toEqual(['secretsmanager.GetSecretValue']);
    expect(handler.node).toMatch(/^lam-[0-9a-z]{8}$/);
    expect(await connectionsNamed(`sessrep-lambda-it-${handler.node}`)).toHaveLength(1);
  });

  it('reuses the connection across invocations and keeps the session through the cookie', async () => {
    const { handler } = handlerModule;
    const first = (await handler(urlEvent('POST', '/counter'))) as Result;
    expect(first.statusCode).toBe(200);
    expect(json(first)).toEqual({ counter: 1, node: handler.node });
    cookie = sessionCookie(first)!;
    expect(cookie).toMatch(new RegExp(`^SESSIONID=[A-Za-z0-9_-]{24}\\.${handler.node}$`));
    // Function URLs are https: the cookie is Secure, HttpOnly and SameSite=Lax.
    expect(first.cookies![0]).toMatch(/HttpOnly/);
    expect(first.cookies![0]).toMatch(/Secure/);

    const second = (await handler(urlEvent('POST', '/counter', { cookie }))) as Result;
    expect(json(second)).toEqual({ counter: 2, node: handler.node });
    expect(sessionCookie(second)).toBeUndefined(); // same key, same route: no new Set-Cookie

    const view = (await handler(urlEvent('GET', '/session', { cookie }))) as Result;
    expect(view.statusCode).toBe(200);
    expect(json(view)).toMatchObject({ isNew: false, attributes: { counter: 2 }, node: handler.node });

    expect(handler.stats.invocations).toBe(3);
    expect(handler.stats.connections).toBe(1);
    expect(awsCalls).toEqual(['secretsmanager.GetSecretValue']);
    expect(await connectionsNamed(`sessrep-lambda-it-${handler.node}`)).toHaveLength(1);
  });

  it('keeps attributes and ends the session on invalidate', async () => {
    const { handler } = handlerModule;
    const put = (await handler(
      urlEvent('PUT', '/session/attributes/cart', { cookie, body: JSON.stringify({ items: ['book'] }) }),
    )) as Result;
    expect(put.statusCode).toBe(200);
    expect(json(put)).toMatchObject({ attributes: { counter: 2, cart: { items: ['book'] } } });
    const gone = (await handler(urlEvent('POST', '/session/invalidate', { cookie }))) as Result;
    expect(gone.statusCode).toBe(204);
    expect(gone.cookies?.some((c) => c.startsWith('SESSIONID=;'))).toBe(true);
    const fresh = (await handler(urlEvent('POST', '/counter', { cookie }))) as Result;
    expect(json(fresh)).toMatchObject({ counter: 1 });
    expect(sessionCookie(fresh)).not.toBe(cookie);
  });

  it('serves health and the cluster view', async () => {
    const { handler } = handlerModule;
    const health = (await handler(urlEvent('GET', '/healthz'))) as Result;
    expect(health.statusCode).toBe(200);
    expect(json(health)).toMatchObject({ ready: true, node: handler.node });
    expect(((await handler(urlEvent('GET', '/cluster'))) as Result).statusCode).toBe(401);
    const cluster = json(
      (await handler(urlEvent('GET', '/cluster', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }))) as Result,
    );
    expect(cluster).toMatchObject({
      cluster: 'lambda-it',
      node: handler.node,
      manager: 'delta',
      sendMode: 'persist',
      persistence: { log: 'SESSREP_lambda-it', store: 'log-replay' },
    });
  });

  it('never drains from the public URL, even with the admin token: POST /cluster/drain is 404 and the environment keeps serving', async () => {
    const { handler } = handlerModule;
    const drain = (await handler(urlEvent('POST', '/cluster/drain'))) as Result;
    expect(drain.statusCode).toBe(404);
    const withToken = (await handler(
      urlEvent('POST', '/cluster/drain', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
    )) as Result;
    expect(withToken.statusCode).toBe(404);
    expect(handler.clusterNode!.drainStatus().state).toBe('serving');
    const health = (await handler(urlEvent('GET', '/healthz'))) as Result;
    expect(health.statusCode).toBe(200);
    expect(json(health)).not.toHaveProperty('draining');
  });
});

describe('several execution environments', () => {
  it('a second environment serves a session created by the first, and rewrites the route', async () => {
    const a = newRuntime(config({ cluster: 'lambda-two' }));
    const b = newRuntime(config({ cluster: 'lambda-two' }));
    const first = (await a(urlEvent('POST', '/counter'))) as Result;
    const cookieA = sessionCookie(first)!;
    expect(routeOf(cookieA)).toBe(a.node);

    // persist mode: the response came after JetStream stored the change, so b finds it at once.
    const atB = (await b(urlEvent('POST', '/counter', { cookie: cookieA }))) as Result;
    expect(json(atB)).toEqual({ counter: 2, node: b.node });
    const cookieB = sessionCookie(atB)!;
    expect(cookieB.slice(0, cookieB.lastIndexOf('.'))).toBe(cookieA.slice(0, cookieA.lastIndexOf('.')));
    expect(routeOf(cookieB)).toBe(b.node);

    const backAtA = (await a(urlEvent('POST', '/counter', { cookie: cookieB }))) as Result;
    expect(json(backAtA)).toEqual({ counter: 3, node: a.node });
    expect(a.stats.catchUpsFailed + b.stats.catchUpsFailed).toBe(0);
  });

  // Nothing waits in a buffer during a freeze: test/package/lambda.test.ts freezes the writer (SIGSTOP) right after it answered.
  it('async send mode: each environment serves the write the other just answered (the browser keeps the version cookie)', async () => {
    const a = newRuntime(config({ cluster: 'lambda-async', send: 'async' }));
    const b = newRuntime(config({ cluster: 'lambda-async', send: 'async' }));
    await b.start();
    let cookies = browserCookies(undefined, (await a(urlEvent('POST', '/counter'))) as Result);
    expect(cookies).toMatch(/^SESSIONID=[^;]+; SESSIONID_v=/);
    for (let i = 2; i <= 6; i++) {
      const at = i % 2 === 0 ? b : a;
      const result = (await at(urlEvent('POST', '/counter', { cookie: cookies }))) as Result;
      expect(json(result)).toEqual({ counter: i, node: at.node });
      cookies = browserCookies(cookies, result);
    }
  });

  it('reads the NATS settings from an SSM SecureString parameter with the real SDK client', async () => {
    process.env.AWS_ENDPOINT_URL_SSM = awsUrl;
    process.env.AWS_ACCESS_KEY_ID = 'test';
    process.env.AWS_SECRET_ACCESS_KEY = 'test';
    const runtime = createDemoLambdaHandler(
      readConfig('lambda', {
        SESSREP_CLUSTER: 'lambda-ssm',
        SESSREP_NATS_PARAMETER: PARAMETER,
        AWS_REGION: 'us-east-1',
      }),
      { leaveOnSigterm: false, logger: lambdaLogger('silent') },
    );
    runtimes.push(runtime);
    const before = awsCalls.length;
    const result = (await runtime(urlEvent('POST', '/counter'))) as Result;
    expect(json(result)).toEqual({ counter: 1, node: runtime.node });
    expect(awsCalls.slice(before)).toEqual(['AmazonSSM.GetParameter']);
  });

  it('answers 503 while NATS is unreachable and starts on a later invocation', async () => {
    let fail = true;
    const runtime = createDemoLambdaHandler(config({ cluster: 'lambda-retry' }), {
      leaveOnSigterm: false,
      logger: lambdaLogger('silent'),
      nats: {
        load: async () =>
          fail ? JSON.stringify({ servers: 'nats://127.0.0.1:1', user: USER, password: PASSWORD }) : settingsText,
      },
    });
    runtimes.push(runtime);
    const down = (await runtime(urlEvent('GET', '/healthz'))) as Result;
    expect(down.statusCode).toBe(503);
    expect(down.headers?.['retry-after']).toBe('1');
    expect(runtime.stats.connections).toBe(0);
    fail = false;
    const up = (await runtime(urlEvent('GET', '/healthz'))) as Result;
    expect(up.statusCode).toBe(200);
    expect(runtime.stats.connections).toBe(1);
  });

  it('a frozen environment (SIGSTOP) catches up before serving on thaw, and its sweep does not expire sessions used elsewhere', async () => {
    const cluster = 'lambda-freeze';
    const maxInactive = 2;
    const a = newRuntime(config({ cluster, maxInactive, sweepEveryMs: 100 }));
    // maxInactive 2 s: a session untouched for 2 s (+2 s grace for one last used elsewhere) is expired by a sweep.
    const frozen = await startWorker({
      SESSREP_CLUSTER: cluster,
      SESSREP_MAX_INACTIVE: String(maxInactive),
      SESSREP_SWEEP_INTERVAL_MS: '100',
      SESSREP_CATCHUP_TIMEOUT_MS: '10000',
    });
    let cookie = sessionCookie((await a(urlEvent('POST', '/counter'))) as Result)!;
    const seen = await frozen.invoke(urlEvent('GET', '/session', { cookie }));
    expect(json(seen.result)).toMatchObject({ attributes: { counter: 1 } });

    // A freeze longer than the pull request's 30 s expiry leaves the follower waiting for heartbeats
    // it will miss only after the thaw: reproduce that state, then freeze.
    await frozen.stall();
    frozen.child.kill('SIGSTOP');
    try {
      // 6 s of use on `a` while the other instance hears nothing: its copy says "idle since 6 s".
      // Kept: the freeze must outlast maxInactive plus the grace (no condition to wait on); 12 uses a quarter
      // of the timeout apart = 3 x maxInactive.
      for (let i = 0; i < 12; i++) {
        await sleep((maxInactive * 1000) / 4);
        const r = (await a(urlEvent('POST', '/counter', { cookie }))) as Result;
        cookie = sessionCookie(r) ?? cookie;
      }
    } finally {
      frozen.child.kill('SIGCONT');
    }
    // First invocation after the thaw carries no cookie, but the sweep is due: it catches up first.
    const health = await frozen.invoke(urlEvent('GET', '/healthz'));
    expect(health.result.statusCode).toBe(200);
    expect(health.stats.sweeps).toBeGreaterThanOrEqual(1);
    expect(health.stats.catchUpsFailed).toBe(0);
    expect(health.stats.catchUpsRestarted).toBeGreaterThanOrEqual(1);

    const thawed = await frozen.invoke(urlEvent('POST', '/counter', { cookie }));
    expect(json(thawed.result)).toEqual({ counter: 14, node: frozen.node });
    // The session is still alive everywhere: nothing expired it while the copy was stale.
    const again = (await a(urlEvent('POST', '/counter', { cookie: sessionCookie(thawed.result)! }))) as Result;
    expect(json(again)).toEqual({ counter: 15, node: a.node });
    frozen.child.kill('SIGKILL');
  });

  it('an environment that is recycled (SIGTERM) leaves the cluster at once', async () => {
    const cluster = 'lambda-leave';
    const a = newRuntime(config({ cluster }));
    await a.start();
    const worker = await startWorker({ SESSREP_CLUSTER: cluster });
    await waitFor('the worker to join', () =>
      a.clusterNode!.status().members.some((m) => m.node === worker.node && m.ready),
    );
    const signalled = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    // A graceful leave is seen well before memberDropMs (3 s) would drop a silent member.
    await waitFor('the worker to leave', () => !a.clusterNode!.status().members.some((m) => m.node === worker.node), {
      timeoutMs: 2500,
    });
    expect(Date.now() - signalled).toBeLessThan(2500);
  });

  it('a cold start loads the DynamoDB snapshot and replays the log (no peer needed)', async () => {
    const endpoint = inject('ddbEndpoint');
    // DynamoDB Local keeps one set of tables per access key: create the table with the runtime's (placeholder) credentials.
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    const table = `sessrep-lambda-${Date.now().toString(36)}`;
    const client = new DynamoDBClient({
      endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    await createSnapshotTable(client, table);
    client.destroy();
    const cluster = 'lambda-ddb';
    const withTable = (): LambdaEnvConfig => config({ cluster, dynamodbTable: table, dynamodbEndpoint: endpoint });
    const first = newRuntime(withTable());
    const created = (await first(
      urlEvent('PUT', '/session/attributes/user', { body: JSON.stringify('ada') }),
    )) as Result;
    const cookie = sessionCookie(created)!;
    // The snapshot leader (the only member) writes behind once a second; leaving flushes it too.
    await waitFor('a snapshot flush', () => {
      const persistence = first.clusterNode!.status().persistence as
        | { snapshot?: { itemsWritten: number } }
        | undefined;
      return (persistence?.snapshot?.itemsWritten ?? 0) >= 1;
    });
    await first.shutdown();

    const second = newRuntime(withTable());
    const served = (await second(urlEvent('GET', '/session', { cookie }))) as Result;
    expect(json(served)).toMatchObject({ isNew: false, attributes: { user: 'ada' }, node: second.node });
    expect(second.clusterNode!.status().stateTransfer).toMatchObject({ state: 'done', source: 'snapshot' });
  });
});

describe('functions/lambda/local.ts', () => {
  it('serves the handler over HTTP with several instances picked at random, and the session follows the cookie', async () => {
    const child = spawnTracked(
      process.execPath,
      ['--import', 'tsx', join(REPO_ROOT, 'functions/lambda/local.ts'), '--port', '0', '--instances', '3'],
      {
        cwd: REPO_ROOT,
        // The shared test server (no credentials): the local runner takes NATS_URL only.
        env: {
          ...process.env,
          NATS_URL: inject('natsUrl'),
          SESSREP_CLUSTER: `lambda-local-${process.pid}`,
          LOG_LEVEL: 'error',
          SESSREP_NATS_SECRET: '',
          AWS_ENDPOINT_URL_SECRETS_MANAGER: '',
          SESSREP_TEST_NATS_SETTINGS: '',
        },
        name: 'lambda-local',
      },
    );
    try {
      const match = await child.waitForOutput(/Lambda handler on (http:\/\/[\d.]+:\d+) \(3 instances/, 30_000);
      const base = match[1]!;
      // The session cookie and its version cookie, as a browser keeps them.
      const jar = new Map<string, string>();
      const nodes = new Set<string>();
      for (let i = 1; i <= 6; i++) {
        const cookie = [...jar.values()].join('; ');
        const response = await fetch(`${base}/counter`, { method: 'POST', headers: cookie ? { cookie } : {} });
        expect(response.status).toBe(200);
        const body = (await response.json()) as { counter: number; node: string };
        expect(body.counter).toBe(i);
        nodes.add(body.node);
        expect(response.headers.get('x-lambda-instance')).toBe(body.node);
        for (const line of response.headers.getSetCookie()) {
          const pair = line.split(';')[0]!;
          jar.set(pair.slice(0, pair.indexOf('=')), pair);
        }
      }
      expect(nodes.size).toBeGreaterThanOrEqual(1);
    } finally {
      await child.stop();
    }
  });
});

describe('configuration', () => {
  it('reads the environment with Lambda defaults', () => {
    const c = readConfig('lambda', {
      NATS_URL: 'nats://a:4222, nats://b:4222',
      AWS_REGION: 'eu-west-1',
      SESSREP_DYNAMODB_TABLE: 'tbl',
    });
    expect(c).toMatchObject({
      cluster: 'demo',
      nats: ['nats://a:4222', 'nats://b:4222'],
      manager: 'delta',
      jetstream: true,
      send: 'persist',
      dynamodbTable: 'tbl',
      awsRegion: 'eu-west-1',
      logLevel: 'warn',
    });
    expect(c.node).toMatch(/^lam-[0-9a-z]{8}$/);
    expect(readConfig('lambda', {}).node).not.toBe(c.node);
    expect(readConfig('lambda', { SESSREP_MANAGER: 'backup' })).toMatchObject({
      manager: 'backup',
      jetstream: false,
      send: 'async',
    });
  });

  it("rejects bad or contradictory settings with the variable's name", () => {
    expect(() => readConfig('lambda', { SESSREP_SEND: 'sometimes' })).toThrow(
      /SESSREP_SEND must be one of async, ack, persist/,
    );
    expect(() => readConfig('lambda', { SESSREP_MANAGER: 'backup', SESSREP_JETSTREAM: 'true' })).toThrow(ConfigError);
    expect(() => readConfig('lambda', { SESSREP_JETSTREAM: 'false', SESSREP_DYNAMODB_TABLE: 'tbl' })).toThrow(
      /needs the JetStream log/,
    );
    expect(() => readConfig('lambda', { SESSREP_NATS_SECRET: 'a', SESSREP_NATS_PARAMETER: 'b' })).toThrow(/not both/);
    expect(() => readConfig('lambda', { SESSREP_CATCHUP_TIMEOUT_MS: '0' })).toThrow(/SESSREP_CATCHUP_TIMEOUT_MS/);
  });

  it('parses NATS settings as JSON or a .creds file, and never echoes the secret in errors', () => {
    expect(parseNatsSettings('{"servers":["tls://x:4222"],"token":"t"}', 's')).toEqual({
      servers: ['tls://x:4222'],
      token: 't',
    });
    const creds = '-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n';
    expect(parseNatsSettings(creds, 's')).toEqual({ creds: creds.trim() });
    expect(() => parseNatsSettings('hunter2-password', 'secret sessrep/nats')).toThrow(
      /^secret sessrep\/nats: not JSON and not a \.creds file$/,
    );
    expect(() => parseNatsSettings('hunter2-password', 's')).toThrow(InvalidOptionsError);
    expect(() => parseNatsSettings('{"pasword":"hunter2"}', 's')).toThrow(/Unrecognized key/);
    try {
      parseNatsSettings('{"pasword":"hunter2"}', 's');
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('logs one raw JSON object per line (CloudWatch metric filters match on $.level and $.msg)', () => {
    const lines: string[] = [];
    // lambdaLogger is consoleLogger with a raw stdout sink: the same lines, without Lambda's console prefix.
    const logger = consoleLogger('warn', { cluster: 'c' }, (line) => lines.push(`${line}\n`)).child({ node: 'n' });
    logger.info({}, 'hidden');
    logger.error({ error: new Error('boom') }, 'replication failed: changes kept locally only');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 'error',
      cluster: 'c',
      node: 'n',
      error: { name: 'Error', message: 'boom' },
      msg: 'replication failed: changes kept locally only',
    });
  });
});
