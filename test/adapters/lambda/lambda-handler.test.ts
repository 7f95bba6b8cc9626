// Owns: tests of session-replication/lambda (adapters/lambda) with a user's own app, against a real nats-server with JetStream.
import { Hono } from 'hono';
import type { LambdaEvent } from 'hono/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLambdaHandler,
  type LambdaHandlerOptions,
  type LambdaSessionHandler,
} from '../../../adapters/lambda/index.ts';
import { jetStreamLogFor } from '../../../lib/log/jetstream.ts';
import type { ReplicationLog } from '../../../lib/log/replication-log.ts';
import { InvalidOptionsError } from '../../../lib/errors.ts';
import { consoleLogger } from '../../../lib/logger.ts';
import type { SessionVariables } from '../../../lib/middleware/session-middleware.ts';
import { startNatsServer, type NatsServerHandle } from '../../kit/index.ts';
import { cookieSet, functionUrlEvent, restApiEvent } from './events.ts';

let nats: NatsServerHandle;
const handlers: LambdaSessionHandler[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
});

afterAll(async () => {
  await Promise.allSettled(handlers.map((h) => h.shutdown(2000)));
  await nats?.stop();
});

/** A user's shop: its own cookie name, sessions only under /api. */
function shop(node: Parameters<Parameters<typeof createLambdaHandler>[0]>[0]) {
  const app = new Hono<{ Variables: SessionVariables }>();
  app.get('/', (c) => c.text('home'));
  app.use('/api/*', node.middleware({ cookieName: 'sid' }));
  app.post('/api/cart', async (c) => {
    const { item } = await c.req.json<{ item: string }>();
    const session = c.get('session');
    const cart = [...((session.get('cart') as string[] | undefined) ?? []), item];
    session.set('cart', cart);
    return c.json({ cart, node: node.node });
  });
  app.get('/api/cart', (c) => c.json({ cart: c.get('session').get('cart') ?? [], node: node.node }));
  return app;
}

function newHandler(cluster: string, options: Partial<LambdaHandlerOptions> = {}): LambdaSessionHandler {
  const handler = createLambdaHandler(shop, {
    cluster,
    nats: { servers: nats.url },
    leaveOnSigterm: false,
    logger: consoleLogger('silent'),
    ...options,
  });
  handlers.push(handler);
  return handler;
}

type Result = {
  statusCode: number;
  body: string;
  headers?: Record<string, unknown>;
  cookies?: string[];
  multiValueHeaders?: Record<string, unknown[]>;
};
const invoke = async (handler: LambdaSessionHandler, event: unknown) => (await handler(event as LambdaEvent)) as Result;

describe("createLambdaHandler with the user's app", () => {
  it('serves a session written by one environment from another, whatever the event format, after catching up (own route included)', async () => {
    const a = newHandler('shop-two');
    const b = newHandler('shop-two');
    const added = await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'book' }) }));
    expect(added.statusCode).toBe(200);
    expect(JSON.parse(added.body)).toEqual({ cart: ['book'], node: a.node });
    const cookie = cookieSet(added, 'sid')!;
    expect(cookie).toMatch(new RegExp(`^sid=[A-Za-z0-9_-]{24}\\.${a.node}$`));

    // REST API (payload 1.0) at b: the cookie arrives in the Cookie header.
    const atB = await invoke(
      b,
      restApiEvent('POST', '/api/cart', { cookies: [cookie], body: JSON.stringify({ item: 'pen' }) }),
    );
    expect(JSON.parse(atB.body)).toEqual({ cart: ['book', 'pen'], node: b.node });
    expect(b.stats.catchUps).toBe(1);
    const cookieB = cookieSet(atB, 'sid')!;
    expect(cookieB.split('.')[0]).toBe(cookie.split('.')[0]);

    // Back at a with b's route, then with a's own route: both catch up first (a client may not have stored the newest cookie).
    const before = a.stats.catchUps;
    expect(JSON.parse((await invoke(a, functionUrlEvent('GET', '/api/cart', { cookies: [cookieB] }))).body)).toEqual({
      cart: ['book', 'pen'],
      node: a.node,
    });
    expect(JSON.parse((await invoke(a, functionUrlEvent('GET', '/api/cart', { cookies: [cookie] }))).body)).toEqual({
      cart: ['book', 'pen'],
      node: a.node,
    });
    expect(a.stats.catchUps).toBe(before + 2);
    expect(a.stats.catchUpsFailed + b.stats.catchUpsFailed).toBe(0);

    // Paths without the session middleware and requests without the cookie never wait for the log.
    expect((await invoke(a, functionUrlEvent('GET', '/'))).body).toBe('home');
    await invoke(a, functionUrlEvent('GET', '/api/cart'));
    expect(a.stats.catchUps).toBe(before + 2);
    expect(a.stats.connections).toBe(1);
  });

  it('with encrypted messages, a catch-up waits until the change is decrypted and applied, not only received', async () => {
    const clusterKeys = [{ id: 'k1', secret: Buffer.alloc(32, 9).toString('base64') }];
    const a = newHandler('shop-sealed', { clusterKeys });
    const b = newHandler('shop-sealed', { clusterKeys });
    await b.start();
    let cookie = cookieSet(
      await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'a0' }) })),
      'sid',
    )!;
    for (let i = 1; i <= 10; i++) {
      // Each write is stored (persist) before a answers; b reads at once and must already see it.
      await invoke(
        a,
        functionUrlEvent('POST', '/api/cart', { cookies: [cookie], body: JSON.stringify({ item: `a${i}` }) }),
      );
      const atB = await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies: [cookie] }));
      expect((JSON.parse(atB.body) as { cart: string[] }).cart).toHaveLength(i + 1);
      cookie = cookieSet(atB, 'sid') ?? cookie;
    }
    expect(b.stats.catchUpsFailed).toBe(0);
  });

  it('skipOwnRoute: a cookie naming this environment is served without a catch-up', async () => {
    const a = newHandler('shop-own', { catchUp: { skipOwnRoute: true } });
    const cookie = cookieSet(
      await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'cup' }) })),
      'sid',
    )!;
    expect(JSON.parse((await invoke(a, functionUrlEvent('GET', '/api/cart', { cookies: [cookie] }))).body)).toEqual({
      cart: ['cup'],
      node: a.node,
    });
    expect(a.stats.catchUps).toBe(0);
  });

  it('when the log cannot be read in time: 503 with Retry-After (reject), or the local copy (serve)', async () => {
    let unreachable = false;
    const log = (connection: Parameters<typeof jetStreamLogFor>[0]) => {
      const inner = jetStreamLogFor(connection, 'shop-slow');
      const stuck: ReplicationLog = {
        name: inner.name,
        ensure: () => inner.ensure(),
        append: (data, msgId) => inner.append(data, msgId),
        follow: (fromSeq, onMessage) => inner.follow(fromSeq, onMessage),
        bounds: () => (unreachable ? new Promise<never>(() => undefined) : inner.bounds()),
      };
      return stuck;
    };
    const rejecting = newHandler('shop-slow', { log, catchUp: { timeoutMs: 200 } });
    const serving = newHandler('shop-slow', { log, catchUp: { timeoutMs: 200, onFailure: 'serve' } });
    const cookie = cookieSet(
      await invoke(rejecting, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'hat' }) })),
      'sid',
    )!;
    await serving.start();
    unreachable = true;
    const refused = await invoke(rejecting, functionUrlEvent('GET', '/api/cart', { cookies: [cookie] }));
    expect(refused.statusCode).toBe(503);
    expect(refused.headers?.['retry-after']).toBe('1');
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'CATCH_UP_FAILED' });
    expect(rejecting.stats.catchUpsFailed).toBe(1);
    const served = await invoke(serving, functionUrlEvent('GET', '/api/cart', { cookies: [cookie] }));
    expect(served.statusCode).toBe(200);
    expect(serving.stats.catchUpsFailed).toBe(1);
  });

  it('rejects contradictory NATS options at once, and fails invocations on bad settings with InvalidOptionsError', async () => {
    expect(() => createLambdaHandler(shop, { cluster: 'x', nats: { secret: 'a', parameter: 'b' } })).toThrow(
      InvalidOptionsError,
    );
    expect(() => createLambdaHandler(shop, { cluster: 'x', nats: { secret: 'a', parameter: 'b' } })).toThrow(
      /one of secret, parameter or load, not secret and parameter/,
    );
    const garbled = newHandler('shop-bad', { nats: { load: async () => 'hunter2' } });
    await expect(garbled(functionUrlEvent('GET', '/') as unknown as LambdaEvent)).rejects.toThrow(InvalidOptionsError);
    await expect(garbled(functionUrlEvent('GET', '/') as unknown as LambdaEvent)).rejects.toThrow(
      /^NATS settings: not JSON and not a \.creds file$/,
    );
    const nowhere = newHandler('shop-bad', { nats: {} });
    await expect(nowhere(functionUrlEvent('GET', '/') as unknown as LambdaEvent)).rejects.toThrow(/no NATS server/);
    const badCluster = newHandler('not a token');
    await expect(badCluster(functionUrlEvent('GET', '/') as unknown as LambdaEvent)).rejects.toThrow(
      InvalidOptionsError,
    );
    expect(garbled.stats.connections + nowhere.stats.connections).toBe(0);
  });
});
