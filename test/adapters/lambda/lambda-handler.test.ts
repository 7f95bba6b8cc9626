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
import { cookieSet, functionUrlEvent, nextCookies, restApiEvent } from './events.ts';

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
  it('serves a session written by one environment from another, whatever the event format, never older than the client saw', async () => {
    const a = newHandler('shop-two');
    const b = newHandler('shop-two');
    await b.start();
    const added = await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'book' }) }));
    expect(added.statusCode).toBe(200);
    expect(JSON.parse(added.body)).toEqual({ cart: ['book'], node: a.node });
    const cookie = cookieSet(added, 'sid')!;
    expect(cookie).toMatch(new RegExp(`^sid=[A-Za-z0-9_-]{24}\\.${a.node}$`));
    expect(cookieSet(added, 'sid_v')).toMatch(new RegExp(`^sid_v=[0-9a-z]+\\.[0-9a-z]+\\.${a.node}\\.`));
    let cookies = nextCookies([], added);

    // REST API (payload 1.0) at b: the cookies arrive in the Cookie header.
    const atB = await invoke(b, restApiEvent('POST', '/api/cart', { cookies, body: JSON.stringify({ item: 'pen' }) }));
    expect(JSON.parse(atB.body)).toEqual({ cart: ['book', 'pen'], node: b.node });
    expect(cookieSet(atB, 'sid')!.split('.')[0]).toBe(cookie.split('.')[0]);
    cookies = nextCookies(cookies, atB);

    // Back at a: its copy is brought up to b's version (the log, or b) before it answers.
    const atA = await invoke(a, functionUrlEvent('GET', '/api/cart', { cookies }));
    expect(JSON.parse(atA.body)).toEqual({ cart: ['book', 'pen'], node: a.node });
    cookies = nextCookies(cookies, atA);
    // Now a's copy is current: reads need no catch-up.
    const before = a.stats.catchUps;
    for (let i = 0; i < 3; i++)
      expect(JSON.parse((await invoke(a, functionUrlEvent('GET', '/api/cart', { cookies }))).body)).toEqual({
        cart: ['book', 'pen'],
        node: a.node,
      });
    // Paths without the session middleware and requests without the cookie never wait for the log either.
    expect((await invoke(a, functionUrlEvent('GET', '/'))).body).toBe('home');
    await invoke(a, functionUrlEvent('GET', '/api/cart'));
    expect(a.stats.catchUps).toBe(before);
    expect(a.stats.catchUpsFailed + b.stats.catchUpsFailed).toBe(0);
    expect(a.stats.connections).toBe(1);
  });

  it('with encrypted messages, a newer version waits until the change is decrypted and applied, not only received', async () => {
    const clusterKeys = [{ id: 'k1', secret: Buffer.alloc(32, 9).toString('base64') }];
    const a = newHandler('shop-sealed', { clusterKeys });
    const b = newHandler('shop-sealed', { clusterKeys });
    await b.start();
    let cookies = nextCookies(
      [],
      await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'a0' }) })),
    );
    for (let i = 1; i <= 10; i++) {
      // Each write is stored (persist) before a answers; b reads at once and must already see it.
      cookies = nextCookies(
        cookies,
        await invoke(a, functionUrlEvent('POST', '/api/cart', { cookies, body: JSON.stringify({ item: `a${i}` }) })),
      );
      const atB = await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies }));
      expect((JSON.parse(atB.body) as { cart: string[] }).cart).toHaveLength(i + 1);
      cookies = nextCookies(cookies, atB);
    }
    expect(b.stats.catchUpsFailed).toBe(0);
  });

  /** A log whose followers deliver nothing while `stalled` (a consumer lost during a freeze), and whose bounds hang while `unreachable`. */
  function faultyLog(cluster: string) {
    const state = { stalled: false, unreachable: false };
    const log = (connection: Parameters<typeof jetStreamLogFor>[0]) => {
      const inner = jetStreamLogFor(connection, cluster);
      const faulty: ReplicationLog = {
        name: inner.name,
        ensure: () => inner.ensure(),
        append: (data, msgId) => inner.append(data, msgId),
        follow: (fromSeq, onMessage) =>
          inner.follow(fromSeq, (message) => {
            if (!state.stalled) onMessage(message);
          }),
        bounds: () => (state.unreachable ? new Promise<never>(() => undefined) : inner.bounds()),
      };
      return faulty;
    };
    return { state, log };
  }

  it('an environment whose follower stalled catches up with the log when a client presents a newer version, and only then', async () => {
    const { state, log } = faultyLog('shop-stall');
    const a = newHandler('shop-stall', { log });
    const b = newHandler('shop-stall', { log, catchUp: { stallMs: 50 } });
    await b.start();
    let cookies = nextCookies(
      [],
      await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'cup' }) })),
    );
    state.stalled = true;
    cookies = nextCookies(
      cookies,
      await invoke(a, functionUrlEvent('POST', '/api/cart', { cookies, body: JSON.stringify({ item: 'mug' }) })),
    );
    state.stalled = false; // the restarted follower delivers again
    await a.shutdown(2000); // only the log has the write now
    const atB = await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies }));
    expect(JSON.parse(atB.body)).toEqual({ cart: ['cup', 'mug'], node: b.node });
    expect(b.stats.catchUps).toBeGreaterThanOrEqual(1);
    expect(b.stats.catchUpsRestarted).toBeGreaterThanOrEqual(1);
    const caughtUp = b.stats.catchUps;
    await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies: nextCookies(cookies, atB) }));
    expect(b.stats.catchUps).toBe(caughtUp);
  });

  it('a newer version, the log unreachable and the writer gone: 503 with Retry-After, never the older copy', async () => {
    const { state, log } = faultyLog('shop-slow');
    const a = newHandler('shop-slow', { log });
    // stallMs 50: the restarted follower has most of the 300 ms wait to deliver (with the default 250 ms, only 50 ms).
    const b = newHandler('shop-slow', { log, readYourWritesWaitMs: 300, catchUp: { timeoutMs: 200, stallMs: 50 } });
    await b.start();
    let cookies = nextCookies(
      [],
      await invoke(a, functionUrlEvent('POST', '/api/cart', { body: JSON.stringify({ item: 'hat' }) })),
    );
    await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies })); // b holds ['hat']
    state.stalled = true;
    state.unreachable = true;
    cookies = nextCookies(
      cookies,
      await invoke(a, functionUrlEvent('POST', '/api/cart', { cookies, body: JSON.stringify({ item: 'scarf' }) })),
    );
    await a.shutdown(2000);
    const refused = await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies }));
    expect(refused.statusCode).toBe(503);
    expect(refused.headers?.['retry-after']).toBe('1');
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'SESSION_BEHIND' });
    expect(b.stats.catchUpsFailed).toBeGreaterThanOrEqual(1);
    // Once the log answers again, the same request is served with the newer value.
    state.stalled = false;
    state.unreachable = false;
    const served = await invoke(b, functionUrlEvent('GET', '/api/cart', { cookies }));
    expect(JSON.parse(served.body)).toEqual({ cart: ['hat', 'scarf'], node: b.node });
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
