// Owns: the packed package on AWS Lambda: a user's own Hono app with session-replication/lambda installed from the tarball into a
// fresh folder (plain Node, no AWS SDK), two execution environments as separate processes invoked with real Function URL /
// HTTP API (payload 2.0) and REST API (payload 1.0) events over a real nats-server with JetStream; frozen with SIGSTOP and thawed.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cookieSet, functionUrlEvent, restApiEvent } from '../adapters/lambda/events.ts';
import { expectFreezeSafe, startInstance, type LambdaInstance } from '../adapters/lambda/instances.ts';
import { startNatsServer, type NatsServerHandle } from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';

let app: InstalledApp;
let nats: NatsServerHandle;
const instances: LambdaInstance[] = [];

beforeAll(async () => {
  [app, nats] = await Promise.all([
    // The peers the lambda entry needs; no AWS SDK (the NATS servers are given, not fetched) and no aws-cdk-lib.
    createApp('test/package/fixtures/lambda-app', {
      dependencies: ['hono', '@nats-io/nats-core', '@nats-io/jetstream', '@nats-io/transport-node'],
    }),
    startNatsServer({ jetstream: true }),
  ]);
}, 300_000);

afterAll(async () => {
  for (const instance of instances) {
    instance.thaw();
    instance.kill();
  }
  await nats?.stop();
});

/** Two execution environments of the installed function, on plain node. */
async function pair(cluster: string, env: Record<string, string> = {}): Promise<[LambdaInstance, LambdaInstance]> {
  const start = () =>
    startInstance(join(app.dir, 'instance.mjs'), {
      cwd: app.dir,
      env: { SESSREP_CLUSTER: cluster, NATS_URL: nats.url, ...env },
    });
  const both = await Promise.all([start(), start()]);
  instances.push(...both);
  return both;
}

const body = (result: { body: string }) => JSON.parse(result.body) as { items: string[]; node: string };

describe("session-replication/lambda from the tarball in a user's app", () => {
  it('a cart written through one environment is read back through the other, whatever the event format', {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await pair('tarball-cart');
    expect(a.node).toMatch(/^lam-[0-9a-z]{8}$/);
    const { result: added } = await a.invoke(
      functionUrlEvent('POST', '/cart/items', { body: JSON.stringify({ item: 'book' }) }),
    );
    expect(added.statusCode).toBe(200);
    expect(body(added)).toEqual({ items: ['book'], node: a.node });
    const cookie = cookieSet(added, 'sid')!;
    expect(cookie).toMatch(new RegExp(`^sid=[A-Za-z0-9_-]{24}\\.${a.node}$`));
    // Function URLs are https: the cookie is Secure and HttpOnly.
    expect(added.cookies![0]).toMatch(/; HttpOnly/);
    expect(added.cookies![0]).toMatch(/; Secure/);

    // An HTTP API (payload 2.0, execute-api domain) at b; then a REST API (payload 1.0, Cookie header) back at a.
    const { result: atB, stats } = await b.invoke(
      functionUrlEvent(
        'POST',
        '/cart/items',
        { cookies: [cookie], body: JSON.stringify({ item: 'pen' }) },
        'abcdefghij.execute-api.us-east-1.amazonaws.com',
      ),
    );
    expect(body(atB)).toEqual({ items: ['book', 'pen'], node: b.node });
    expect(stats).toMatchObject({ connections: 1, catchUpsFailed: 0 });
    const { result: backAtA } = await a.invoke(
      restApiEvent('GET', '/cart/items', { cookies: [cookieSet(atB, 'sid')!] }),
    );
    expect(body(backAtA)).toEqual({ items: ['book', 'pen'], node: a.node });
    const { result: home } = await a.invoke(restApiEvent('GET', '/'));
    expect(home.body).toBe('shop');
  });

  it('persist mode: frozen right after answering, the write has left; thawed, the environment serves the newer value', {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await pair('tarball-freeze');
    await expectFreezeSafe(a, b);
  });

  it('async mode with encrypted messages: the same under freezes', { timeout: 60_000 }, async () => {
    const [a, b] = await pair('tarball-freeze-sealed', {
      SESSREP_SEND: 'async',
      SESSREP_CLUSTER_KEY: Buffer.alloc(32, 5).toString('base64'),
    });
    await expectFreezeSafe(a, b);
  });

  it('without the AWS SDK installed, NATS settings from Secrets Manager fail with MissingPeerDependencyError naming the package', {
    timeout: 60_000,
  }, async () => {
    const result = await app.run(process.execPath, ['handler.mjs'], {
      env: {
        PATH: process.env.PATH,
        SESSREP_CLUSTER: 'tarball-no-sdk',
        SESSREP_NATS_SECRET: 'shop/nats',
        AWS_REGION: 'us-east-1',
      },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/MissingPeerDependencyError/);
    expect(result.stderr).toMatch(
      /nats\.secret needs the package "@aws-sdk\/client-secrets-manager", which is not installed: npm install @aws-sdk\/client-secrets-manager/,
    );
  });
});
