// Owns: unit tests of lib/bus/cluster-bus.ts (subjects, own-message filtering, dropping and counting bad messages).
import { describe, expect, it } from 'vitest';
import { ClusterBus, ClusterSubjects, type Incoming } from '../../../lib/bus/cluster-bus.ts';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { encodeEnvelope, WIRE_VERSION } from '../../../lib/codec/envelope.ts';
import { MalformedMessageError } from '../../../lib/errors.ts';
import { ReplicationStats } from '../../../lib/stats.ts';
import { silentLogger } from '../../kit/logger.ts';

const enc = new TextEncoder();

function node(bus: MemoryBus, name: string, cluster = 'c1', incarnation: string = crypto.randomUUID()) {
  const stats = new ReplicationStats();
  const channel = new MemoryChannel(bus);
  return {
    stats,
    channel,
    bus: new ClusterBus(channel, { cluster, node: name, incarnation }, 'sessrep', stats, silentLogger),
  };
}

describe('ClusterSubjects', () => {
  it('names one partition per cluster: <prefix>.<cluster>.<kind>[.<node>]', () => {
    const subjects = new ClusterSubjects('app.sess', 'shop');
    expect(subjects.delta).toBe('app.sess.shop.delta');
    expect(subjects.heartbeat).toBe('app.sess.shop.hb');
    expect(subjects.state).toBe('app.sess.shop.state');
    expect(subjects.node('n1')).toBe('app.sess.shop.node.n1');
  });
});

describe('ClusterBus', () => {
  it('delivers decoded messages of other processes, with the sender, and counts them', async () => {
    const memory = new MemoryBus();
    const a = node(memory, 'a');
    const b = node(memory, 'b');
    const got: Incoming[] = [];
    b.bus.listen(b.bus.subjects.heartbeat, (incoming) => got.push(incoming));
    a.bus.send(a.bus.subjects.heartbeat, 'hb', { started: 5, ready: true });
    await a.channel.flush();
    expect(got).toHaveLength(1);
    expect(got[0]!.message).toMatchObject({ cluster: 'c1', node: 'a', kind: 'hb', body: { started: 5, ready: true } });
    expect(a.stats.sent.hb).toBe(1);
    expect(a.stats.messagesSent).toBe(1);
    expect(b.stats.received.hb).toBe(1);
    expect(b.stats.bytesReceived).toBe(a.stats.bytesSent);
  });

  it('ignores its own messages (same incarnation) but not another run of the same node id', async () => {
    const memory = new MemoryBus();
    const a = node(memory, 'a');
    const restarted = node(memory, 'a');
    const got: string[] = [];
    a.bus.listen(a.bus.subjects.heartbeat, (incoming) => got.push(incoming.message.incarnation));
    a.bus.send(a.bus.subjects.heartbeat, 'hb', { started: 1, ready: false });
    restarted.bus.send(restarted.bus.subjects.heartbeat, 'hb', { started: 2, ready: false });
    await a.channel.flush();
    expect(got).toEqual([restarted.bus.identity.incarnation]);
  });

  it('drops malformed, foreign and wrong-version messages, counted by reason, and keeps listening', async () => {
    const memory = new MemoryBus();
    const a = node(memory, 'a');
    const foreign = node(memory, 'x', 'other-cluster');
    const got: string[] = [];
    a.bus.listen('sessrep.c1.hb', (incoming) => got.push(incoming.message.node));
    const raw = new MemoryChannel(memory);
    raw.publish('sessrep.c1.hb', enc.encode('garbage'));
    raw.publish('sessrep.c1.hb', new Uint8Array([0xff, 0xfe]));
    raw.publish(
      'sessrep.c1.hb',
      enc.encode(JSON.stringify({ v: WIRE_VERSION + 1, c: 'c1', n: 'z', i: 'i', k: 'hb', b: {} })),
    );
    foreign.bus.send('sessrep.c1.hb', 'hb', { started: 1, ready: true });
    raw.publish(
      'sessrep.c1.hb',
      encodeEnvelope({ cluster: 'c1', node: 'ok', incarnation: 'i', kind: 'hb', body: { started: 1, ready: true } }),
    );
    await raw.flush();
    expect(got).toEqual(['ok']);
    expect(a.stats.dropped).toEqual({ malformed: 2, 'unsupported-version': 1, 'foreign-cluster': 1 });
    expect(a.stats.received.hb).toBe(1);
  });

  it('counts a handler error as handler-error and keeps delivering', async () => {
    const memory = new MemoryBus();
    const a = node(memory, 'a');
    const b = node(memory, 'b');
    let calls = 0;
    b.bus.listen(b.bus.subjects.delta, () => {
      calls++;
      throw new Error('bug');
    });
    a.bus.send(a.bus.subjects.delta, 'delta', { id: '1', s: [] });
    a.bus.send(a.bus.subjects.delta, 'delta', { id: '2', s: [] });
    await a.channel.flush();
    expect(calls).toBe(2);
    expect(b.stats.dropped['handler-error']).toBe(2);
  });

  it('request sends and decodes the reply; a malformed reply rejects with MalformedMessageError', async () => {
    const memory = new MemoryBus();
    const a = node(memory, 'a');
    const b = node(memory, 'b');
    b.bus.listen(b.bus.subjects.node('b'), (incoming) => b.bus.send(incoming.reply!, 'pong', { ready: true }));
    const reply = await a.bus.request(a.bus.subjects.node('b'), 'ping', {}, 1000);
    expect(reply).toMatchObject({ node: 'b', kind: 'pong', body: { ready: true } });
    expect(a.stats.sent.ping).toBe(1);
    expect(a.stats.received.pong).toBe(1);

    const liar = new MemoryChannel(memory);
    liar.subscribe('sessrep.c1.node.liar', (m) => liar.publish(m.reply!, enc.encode('not an envelope')));
    await expect(a.bus.request(a.bus.subjects.node('liar'), 'ping', {}, 1000)).rejects.toBeInstanceOf(
      MalformedMessageError,
    );
  });
});
