// Owns: the packed package in a user's own app: plain Node (no tsx) runs two processes of a Hono app sharing sessions over a real
// nats-server, and the same app's TypeScript type-checks against the installed declarations (strict, skipLibCheck off).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  spawnTracked,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TrackedProcess,
} from '../kit/index.ts';
import { createApp, type InstalledApp } from '../kit/package.ts';

let app: InstalledApp;
let nats: NatsServerHandle;
const started: TrackedProcess[] = [];

beforeAll(async () => {
  [app, nats] = await Promise.all([
    createApp('test/package/fixtures/consumer-app', {
      dependencies: [
        'hono',
        '@hono/node-server',
        '@nats-io/nats-core',
        '@nats-io/jetstream',
        '@nats-io/transport-node',
        '@types/node',
      ],
    }),
    startNatsServer(),
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await nats?.stop();
});

/** Starts `node server.mjs` of the installed app as node `id` and resolves with its HTTP port once it is ready. */
async function startNode(id: string): Promise<number> {
  const proc = spawnTracked(process.execPath, ['server.mjs'], {
    cwd: app.dir,
    name: `app-${id}`,
    env: { ...process.env, NATS_URL: nats.url, NODE_ID: id },
  });
  started.push(proc);
  const [, port] = await proc.waitForOutput(/listening on (\d+)/, 30_000);
  return Number(port);
}

describe("a user's app with the packed tarball installed", () => {
  it('runs on plain node: a note written on one node is read back on the other', { timeout: 120_000 }, async () => {
    const [a, b] = await Promise.all([startNode('a'), startNode('b')]);
    const put = await fetch(`http://127.0.0.1:${a}/notes/greeting`, { method: 'PUT', body: 'hello from a' });
    expect(put.status).toBe(204);
    const cookie = put.headers.get('set-cookie')?.split(';')[0];
    expect(cookie).toMatch(/^SESSIONID=[\w-]+\.a$/);
    // ack mode answered after every replica applied the write: node b serves it at once.
    const read = await fetch(`http://127.0.0.1:${b}/notes/greeting`, { headers: { cookie: cookie! } });
    expect(await read.json()).toEqual({ value: 'hello from a' });
    // And back: b's write reaches a.
    await fetch(`http://127.0.0.1:${b}/notes/reply`, {
      method: 'PUT',
      body: 'hello from b',
      headers: { cookie: cookie! },
    });
    const reply = await waitFor("a sees b's write", async () => {
      const body = (await (
        await fetch(`http://127.0.0.1:${a}/notes/reply`, { headers: { cookie: cookie! } })
      ).json()) as { value: string | null };
      return body.value;
    });
    expect(reply).toBe('hello from b');
  });

  it('type-checks a TypeScript consumer with strict and skipLibCheck off', { timeout: 120_000 }, async () => {
    const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await app.run(process.execPath, [tsc, '-p', 'tsconfig.json']);
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
