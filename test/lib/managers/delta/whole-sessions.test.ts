// Owns: unit tests of lib/managers/delta/whole-sessions.ts (and the core rule that a replayed copy nobody could still
// hold live creates nothing) on the memory channel: a node that lacks part of a
// session (a lost delta, a session it never got) fetches it whole and never serves the part alone.
import { describe, expect, it } from 'vitest';
import { ClusterBus } from '../../../../lib/bus/cluster-bus.ts';
import { MemoryBus, MemoryChannel } from '../../../../lib/channel/memory.ts';
import { HybridClock } from '../../../../lib/session/clock.ts';
import { newSessionKey } from '../../../../lib/session/ids.ts';
import { createState } from '../../../../lib/session/state.ts';
import { encodeValue } from '../../../../lib/session/values.ts';
import { ReplicationStats } from '../../../../lib/stats.ts';
import { waitFor } from '../../../../functions/launch/index.ts';
import {
  attributesOn,
  call,
  DelayedChannel,
  makeNode,
  onCleanup,
  partsOf,
  sessionApp,
} from '../../../kit/memory-nodes.ts';
import { silentLogger } from '../../../kit/logger.ts';
import { FASTER } from '../../../kit/timings.ts';

/** A memory channel that swallows the next `dropNext` messages it publishes on a `.delta` subject (a lost message). */
class LossyChannel extends MemoryChannel {
  dropNext = 0;

  override publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    if (this.dropNext > 0 && subject.endsWith('.delta')) {
      this.dropNext--;
      return;
    }
    super.publish(subject, data, options);
  }
}

async function started(bus: MemoryBus, name: string, channel = new MemoryChannel(bus)) {
  const node = makeNode(bus, name, { channel, fetchTimeoutMs: 300 });
  await node.start();
  return node;
}

/** A member that heartbeats ready and can publish deltas as itself, but never answers a fetch. */
function silentWriter(bus: MemoryBus, name: string) {
  const clusterBus = new ClusterBus(
    new MemoryChannel(bus),
    { cluster: 'test', node: name, incarnation: crypto.randomUUID() },
    'sessrep',
    new ReplicationStats(),
    silentLogger,
  );
  const beat = () => clusterBus.send(clusterBus.subjects.heartbeat, 'hb', { started: 1, ready: true });
  beat();
  const timer = setInterval(beat, FASTER.heartbeatIntervalMs);
  const direct = clusterBus.listen(clusterBus.subjects.node(name), ({ message, reply }) => {
    if (message.kind === 'ping' && reply) clusterBus.send(reply, 'pong', { ready: true });
  });
  onCleanup(async () => {
    clearInterval(timer);
    direct.unsubscribe();
    await clusterBus.channel.close();
  });
  return clusterBus;
}

describe('whole sessions', () => {
  it('a node that missed one delta notices it on the next one and fetches the whole session (before: it kept the old value)', async () => {
    const bus = new MemoryBus();
    const lossy = new LossyChannel(bus);
    const a = await started(bus, 'a', lossy);
    const b = await started(bus, 'b');
    await waitFor('a and b to see each other', () => b.membership.readyMembers().length === 1);
    const appA = sessionApp(a);
    const created = await call(appA, 'POST', '/set', { body: { x: 1 } });
    const cookie = created.cookie!;
    const key = cookie.split('.')[0]!;
    await waitFor('b to hold x=1', () => attributesOn(b, key)?.x === 1);

    lossy.dropNext = 1;
    expect((await call(appA, 'POST', '/set', { cookie, body: { x: 2 } })).status).toBe(200); // lost on the way to b
    expect((await call(appA, 'POST', '/set', { cookie, body: { y: 3 } })).status).toBe(200); // carries y only
    await waitFor('b to hold the whole session', () => attributesOn(b, key)?.x === 2 && attributesOn(b, key)?.y === 3);
    expect(partsOf(b).stats).toMatchObject({ wholeSessionFetches: 1, resyncs: 0 });
  });

  it('a partial delta for a session no member can give yet is not served: 503 SESSION_INCOMPLETE, not part of it or a new session', async () => {
    const bus = new MemoryBus();
    const c = await started(bus, 'c');
    const writer = silentWriter(bus, 'w');
    await waitFor('c to see w', () => c.membership.readyMembers().length === 1);
    const clock = new HybridClock('w');
    const key = newSessionKey();
    const created = clock.tick();
    const state = createState(key, created, 1800);
    const value = encodeValue('z', 3);
    state.attributes.set('z', { stamp: clock.tick(), value: value.text, bytes: value.bytes });
    // A request's delta on a session created earlier (its creation never reached c).
    writer.send(writer.subjects.delta, 'delta', { id: 'w-1', s: [{ ...state, base: created }] });
    await waitFor(
      'c to have asked w',
      () => c.manager.inspect(key) === undefined && partsOf(c).stats.received.delta === 1,
    );

    const read = await call(sessionApp(c), 'GET', '/get', { cookie: `${key}.w` });
    expect(read.status).toBe(503);
    expect(JSON.parse(read.text)).toMatchObject({ code: 'SESSION_INCOMPLETE' });
    expect(c.manager.inspect(key)).toBeUndefined();
  });

  it('a replayed creation of a session no node could still hold live (idle past twice its timeout) creates nothing; a fresh one does', async () => {
    const bus = new MemoryBus();
    const c = await started(bus, 'c');
    const writer = silentWriter(bus, 'w');
    await waitFor('c to see w', () => c.membership.readyMembers().length === 1);
    const clock = new HybridClock('w');
    const old = createState(newSessionKey(), clock.tick(), 1);
    old.lastAccessedAt = Date.now() - 10_000; // a 1 s session last used 10 s ago: captured long before
    const fresh = createState(newSessionKey(), clock.tick(), 1);
    writer.send(writer.subjects.delta, 'delta', { id: 'w-1', s: [old, fresh] });
    await waitFor('c to hold the fresh session', () => c.manager.inspect(fresh.key) !== undefined);
    expect(c.manager.inspect(old.key)).toBeUndefined();
  });

  it('after a state transfer that failed, a request for a session the transfer missed gets it from its route (before: a new, empty session)', async () => {
    const bus = new MemoryBus();
    // a hears everything 600 ms late: c's transfer budget (300 ms) runs out before a's first page.
    const a = makeNode(bus, 'a', { channel: new DelayedChannel(bus, 600) });
    await a.start();
    const created = await call(sessionApp(a), 'POST', '/set', { body: { x: 1, y: 2 } });
    const c = makeNode(bus, 'c', { fetchTimeoutMs: 3000, stateTransferTimeoutMs: 300 });
    await c.start();
    expect(c.manager.stateTransfer.state).toBe('failed');
    const key = created.cookie!.split('.')[0]!;
    expect(c.manager.inspect(key)).toBeUndefined();

    const read = await call(sessionApp(c), 'GET', '/get', { cookie: created.cookie! });
    expect(read.status).toBe(200);
    expect(JSON.parse(read.text).attributes).toEqual({ x: 1, y: 2 });
  });
});
