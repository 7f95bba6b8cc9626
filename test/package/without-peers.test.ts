// Owns: an app that installed the packed tarball and hono only (none of the optional peers): the core works, each subpath that
// needs NATS or the AWS SDK fails with MissingPeerDependencyError naming the package to install, and the `session-replication`
// command runs with plain node from dist/ on its bundled dependencies (a node over a real nats-server).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  spawnTracked,
  startNatsServer,
  waitForHttp,
  type NatsServerHandle,
  type TrackedProcess,
} from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';

let app: InstalledApp;
let nats: NatsServerHandle;
const started: TrackedProcess[] = [];

beforeAll(async () => {
  [app, nats] = await Promise.all([
    createApp('test/package/fixtures/without-peers', { dependencies: ['hono'] }),
    startNatsServer(),
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await nats?.stop();
});

/** Imports `entries` in the app with plain node; resolves with what each import did. */
async function probe(...entries: string[]): Promise<Record<string, unknown>> {
  const result = await app.run(process.execPath, ['probe.mjs', ...entries]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe('an app that installed session-replication and hono only', () => {
  it('loads the core entry', { timeout: 60_000 }, async () => {
    expect(await probe()).toEqual({ core: 'function' });
  });

  it('gets MissingPeerDependencyError naming @nats-io/nats-core from session-replication/nats', {
    timeout: 60_000,
  }, async () => {
    const { 'session-replication/nats': nats } = await probe('session-replication/nats');
    expect(nats).toEqual({
      name: 'MissingPeerDependencyError',
      code: 'MISSING_PEER_DEPENDENCY',
      packageName: '@nats-io/nats-core',
      neededBy: 'session-replication/nats',
      message:
        'session-replication/nats needs the package "@nats-io/nats-core", which is not installed: npm install @nats-io/nats-core',
      isLibraryError: true,
    });
  });

  it('names the missing package of every other subpath that needs one', { timeout: 60_000 }, async () => {
    const results = await probe(
      'session-replication/jetstream',
      'session-replication/dynamodb',
      'session-replication/sns-sqs',
    );
    expect(results['session-replication/jetstream']).toMatchObject({
      name: 'MissingPeerDependencyError',
      packageName: '@nats-io/jetstream',
      isLibraryError: true,
    });
    expect(results['session-replication/dynamodb']).toMatchObject({
      name: 'MissingPeerDependencyError',
      packageName: '@aws-sdk/client-dynamodb',
      isLibraryError: true,
    });
    expect(results['session-replication/sns-sqs']).toMatchObject({
      name: 'MissingPeerDependencyError',
      packageName: '@aws-sdk/client-sns',
      isLibraryError: true,
    });
  });
});

describe('the session-replication command installed from the tarball', () => {
  /** The installed command (npm links the package's `bin` here). */
  const bin = () => join(app.dir, 'node_modules', '.bin', 'session-replication');

  it('is the built dist/cli.mjs, and the app has none of the packages it bundles', () => {
    expect(existsSync(bin())).toBe(true);
    for (const bundled of [
      'pino',
      'prom-client',
      '@hono/node-server',
      '@nats-io/transport-node',
      '@nats-io/nats-core',
      'tsx',
      '@aws-sdk/client-dynamodb',
    ]) {
      expect(existsSync(join(app.dir, 'node_modules', bundled)), bundled).toBe(false);
    }
  });

  it('prints its usage with plain node', { timeout: 60_000 }, async () => {
    const result = await app.run(process.execPath, [bin(), 'help']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('session-replication serve');
    expect(result.code).toBe(0);
  });

  it('serves a node over NATS, logging JSON lines with pino', { timeout: 60_000 }, async () => {
    const node = spawnTracked(
      process.execPath,
      [bin(), 'serve', '--nats', nats.url, '--node', 'n1', '--port', '0', '--host', '127.0.0.1'],
      { cwd: app.dir, name: 'installed-cli' },
    );
    started.push(node);
    const [, line, url] = await node.waitForOutput(
      /^(\{.*"url":"(http:\/\/127\.0\.0\.1:\d+)".*"msg":"listening".*\})$/m,
      30_000,
    );
    expect(JSON.parse(line!)).toMatchObject({ level: 30, msg: 'listening' });
    const [connected] = await node.waitForOutput(/^\{.*"msg":"connected to NATS".*\}$/m, 30_000);
    expect(JSON.parse(connected!)).toMatchObject({ level: 30, msg: 'connected to NATS' });
    await waitForHttp(`${url}/healthz`, { status: 200, timeoutMs: 20_000 });
  });

  it('names the AWS SDK client to install when a command needs DynamoDB', { timeout: 60_000 }, async () => {
    const result = await app.run(process.execPath, [
      bin(),
      'table',
      'create',
      '--dynamodb-table',
      't',
      '--dynamodb-endpoint',
      'http://127.0.0.1:9',
    ]);
    expect(result.stderr).toContain('@aws-sdk/client-dynamodb');
    expect(result.stderr).toContain('npm install @aws-sdk/client-dynamodb');
    expect(result.code).not.toBe(0);
  });
});
