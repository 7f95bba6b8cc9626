// Owns: unit tests of lib/managers/read-your-writes.ts on the in-process channel: what a version wait does with
// answers it cannot use (the integration tests in test/integration/read-your-writes.test.ts cover the rest over NATS).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { SessionVersions } from '../../../lib/middleware/session-version.ts';
import { keyOf } from '../../kit/cookie-client.ts';
import { call, onCleanup, sessionApp, startNodes } from '../../kit/memory-nodes.ts';

/** Rejections nobody handled while a test ran. */
const unhandled: unknown[] = [];
const collect = (reason: unknown) => void unhandled.push(reason);
process.on('unhandledRejection', collect);
afterEach(() => {
  unhandled.length = 0;
});
afterAll(() => {
  process.off('unhandledRejection', collect);
});

describe.each(['delta', 'backup'] as const)('%s manager: a version wait', (manager) => {
  it('treats a writer whose answer does not decode as unreachable: the read waits its time and answers 503, nothing left unhandled', async () => {
    const bus = new MemoryBus();
    const [a] = await startNodes(bus, ['a'], { manager, readYourWritesWaitMs: 300 });
    const app = sessionApp(a!);
    const wrote = await call(app, 'POST', '/set', { body: { v: 1 } });
    // Something on the subject of the writer the version names answers with bytes that are no message.
    const impostor = new MemoryChannel(bus);
    onCleanup(() => impostor.close());
    impostor.subscribe('sessrep.test.node.ghost', (message) =>
      impostor.publish(message.reply!, new Uint8Array([1, 2, 3])),
    );
    // Without cluster keys whoever holds the session key can sign a version of it (here: newer, by ghost).
    const version = await new SessionVersions(undefined, 'test').encode(keyOf(wrote.cookie!), [
      Date.now() + 60_000,
      0,
      'ghost',
    ]);
    const read = await call(app, 'GET', '/get', { cookie: wrote.cookie!, version });
    expect(read.status).toBe(503);
    expect(a!.stats.versionRefusals).toBe(1);
    // A rejection is reported on a later turn of the event loop than the one that left it unhandled.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(unhandled).toEqual([]);
  });
});
