// Owns: tests of the fault kit (test/kit/faults.ts) itself: the forwarder's reset, blackhole and heal on
// real sockets, the network-namespace link, pausing a process, restarting the broker, a dead endpoint.
import { connect as connectNats } from '@nats-io/transport-node';
import { createServer, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  canUseNetns,
  createNetnsLink,
  deadEndpoint,
  restartBroker,
  spawnTracked,
  stallNode,
  startForwarder,
  startNatsServer,
  waitFor,
  type NodeHandle,
} from './index.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
});

/** An echo server on a free port. */
async function echoServer(): Promise<number> {
  const server = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as { port: number }).port;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Writes `text` and resolves with what comes back within `ms` (empty when nothing does). */
function roundTrip(socket: Socket, text: string, ms = 300): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (data: Buffer) => (got += data.toString());
    socket.on('data', onData);
    socket.write(text);
    setTimeout(() => {
      socket.off('data', onData);
      resolve(got);
    }, ms);
  });
}

describe('fault kit', () => {
  it('forwarder: reset closes connections and refuses new ones; heal listens again', async () => {
    const forwarder = await startForwarder(await echoServer());
    cleanups.push(() => forwarder.close());
    const socket = await open(forwarder.port);
    expect(await roundTrip(socket, 'one')).toBe('one');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await forwarder.reset();
    await closed;
    await expect(open(forwarder.port)).rejects.toThrow(/ECONNREFUSED/);
    await forwarder.heal();
    const again = await open(forwarder.port);
    cleanups.push(() => again.destroy());
    expect(await roundTrip(again, 'two')).toBe('two');
  });

  it('forwarder: blackhole keeps the connection open and forwards nothing; heal delivers what waited', async () => {
    const forwarder = await startForwarder(await echoServer());
    cleanups.push(() => forwarder.close());
    const socket = await open(forwarder.port);
    cleanups.push(() => socket.destroy());
    let closed = false;
    socket.once('close', () => (closed = true));
    forwarder.blackhole();
    expect(await roundTrip(socket, 'held', 400)).toBe('');
    expect(closed).toBe(false);
    const late = new Promise<string>((resolve) => socket.once('data', (data) => resolve(data.toString())));
    await forwarder.heal();
    expect(await late).toBe('held');
  });

  it('network namespace: partition drops the NATS link without closing it, heal restores it (root only; fails, never skips, as root)', async () => {
    if (process.getuid?.() === 0) expect(canUseNetns()).toBe(true);
    if (!canUseNetns()) {
      expect(() => createNetnsLink()).toThrow(/needs root/);
      return;
    }
    const link = createNetnsLink();
    cleanups.push(() => link.dispose());
    const echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, link.natsHostIp, resolve));
    cleanups.push(() => new Promise((resolve) => echo.close(resolve)));
    const port = (echo.address() as { port: number }).port;
    // A client inside the namespace echoes through the link every ECHO_EVERY_MS and prints what came back.
    const ECHO_EVERY_MS = 100;
    const script = `const s=require("net").connect(${port},"${link.natsHostIp}");let n=0;s.on("data",d=>console.log("echo",String(d).trim()));s.on("close",()=>console.log("closed"));setInterval(()=>s.write("m"+(n++)+"\\n"),${ECHO_EVERY_MS});`;
    const client = spawnTracked(link.wrapper[0]!, [...link.wrapper.slice(1), process.execPath, '-e', script], {
      name: 'netns client',
    });
    cleanups.push(() => client.stop(500));
    await client.waitForOutput(/echo m1/, 10_000);
    link.partition();
    const cutAt = client.output().length;
    // Kept: proves that nothing comes back and nothing closes (no condition to wait on); ten echo intervals.
    await new Promise((resolve) => setTimeout(resolve, 10 * ECHO_EVERY_MS));
    // At most what was on the wire at the cut; then nothing, and the connection is not closed.
    expect(client.output().slice(cutAt).match(/echo/g)?.length ?? 0).toBeLessThanOrEqual(2);
    expect(client.output()).not.toMatch(/closed/);
    link.heal();
    const healedAt = client.output().length;
    await waitFor('echoes after the heal', () => /echo/.test(client.output().slice(healedAt)), { timeoutMs: 10_000 });
  });

  it('stallNode pauses a process for the given time (its timer stops ticking), then resumes it', async () => {
    const ticker = spawnTracked(process.execPath, ['-e', "setInterval(() => console.log('tick', Date.now()), 50)"], {
      name: 'ticker',
    });
    cleanups.push(() => ticker.stop(500));
    await ticker.waitForOutput(/tick/);
    const node = { kill: (signal?: NodeJS.Signals) => ticker.kill(signal) } as NodeHandle;
    const before = Date.now();
    await stallNode(node, 600);
    expect(Date.now() - before).toBeGreaterThanOrEqual(590);
    const ticks = () =>
      ticker
        .output()
        .split('\n')
        .filter((l) => l.startsWith('tick'))
        .map((l) => Number(l.split(' ')[1]));
    await waitFor('ticks after the resume', () => ticks().some((t) => t > before + 600), { timeoutMs: 5000 });
    const times = ticks();
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(500);
  });

  it('restartBroker brings nats-server back on the same port; a client reconnects', async () => {
    const first = await startNatsServer();
    const nc = await connectNats({ servers: first.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    cleanups.push(() => nc.close());
    const second = await restartBroker(first, {}, 300);
    cleanups.push(() => second.stop());
    cleanups.push(() => first.stop());
    expect(second.port).toBe(first.port);
    await waitFor(
      'the client to be reconnected',
      async () => {
        await nc.flush();
        return true;
      },
      { timeoutMs: 10_000 },
    );
  });

  it('deadEndpoint refuses connections', async () => {
    const endpoint = await deadEndpoint();
    await expect(fetch(endpoint)).rejects.toThrow();
  });
});
