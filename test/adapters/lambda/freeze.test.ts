// Owns: session-replication/lambda under freezes: a user's app in two instance processes over a real nats-server (JetStream),
// frozen with SIGSTOP the moment a response is ready (flush before freeze) and while another instance writes (catch-up on thaw).
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { REPO_ROOT, startNatsServer, type NatsServerHandle } from '../../kit/index.ts';
import { expectFreezeSafe, startInstance, type LambdaInstance } from './instances.ts';

const SCRIPT = fileURLToPath(new URL('../../package/fixtures/lambda-app/instance.mjs', import.meta.url));
const KEY = Buffer.alloc(32, 7).toString('base64');

let nats: NatsServerHandle;
const instances: LambdaInstance[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
});

afterAll(async () => {
  for (const instance of instances) {
    instance.thaw();
    instance.kill();
  }
  await nats?.stop();
});

/** Two environments of one function, from the sources (the package's `session-replication/lambda` resolves to them). */
async function pair(cluster: string, env: Record<string, string> = {}): Promise<[LambdaInstance, LambdaInstance]> {
  const start = () =>
    startInstance(SCRIPT, {
      cwd: REPO_ROOT,
      execArgv: ['--import', 'tsx'],
      env: { SESSREP_CLUSTER: cluster, NATS_URL: nats.url, ...env },
    });
  const both = await Promise.all([start(), start()]);
  instances.push(...both);
  return both;
}

describe.each([
  ['persist', {}],
  ['async', { SESSREP_SEND: 'async' }],
  ['async with encrypted messages', { SESSREP_SEND: 'async', SESSREP_CLUSTER_KEY: KEY }],
])('send mode %s', (mode, env) => {
  it('a write has left the instance when it is frozen right after its response, and the thawed instance serves the newer value', async () => {
    const [a, b] = await pair(`freeze-${mode.replaceAll(' ', '-')}`, env);
    await expectFreezeSafe(a, b);
  });
});
