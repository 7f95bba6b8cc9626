// Owns: unit tests of lib/cluster/ (option validation, wiring, lone start, status, what stop closes) on a MemoryBus.
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { createCluster, type ClusterOptions } from '../../../lib/cluster/index.ts';
import { ChannelRequestError, InvalidOptionsError } from '../../../lib/errors.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { makeNode, startNodes, stopNode } from '../../kit/memory-nodes.ts';
import { silentLogger } from '../../kit/logger.ts';

/** The InvalidOptionsError createCluster throws for these options. */
function invalid(options: Record<string, unknown>): InvalidOptionsError {
  try {
    createCluster({ logger: silentLogger, ...options } as ClusterOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionsError);
    expect((error as InvalidOptionsError).code).toBe('INVALID_OPTIONS');
    return error as InvalidOptionsError;
  }
  throw new Error('createCluster accepted the options');
}

describe('createCluster option validation', () => {
  it.each([
    ['cluster with a dot', { cluster: 'a.b' }, 'cluster'],
    ['cluster with a wildcard', { cluster: 'a*' }, 'cluster'],
    ['empty cluster', { cluster: '' }, 'cluster'],
    ['missing cluster', {}, 'cluster'],
    ['cluster of 65 characters', { cluster: 'c'.repeat(65) }, 'cluster'],
    ['node with a space', { cluster: 'c', node: 'n 1' }, 'node'],
    ['subjectPrefix with a wildcard', { cluster: 'c', subjectPrefix: 'a.>' }, 'subjectPrefix'],
    [
      'memberDropMs equal to heartbeatIntervalMs',
      { cluster: 'c', heartbeatIntervalMs: 500, memberDropMs: 500 },
      'memberDropMs',
    ],
    [
      'memberDropMs below heartbeatIntervalMs',
      { cluster: 'c', heartbeatIntervalMs: 500, memberDropMs: 100 },
      'memberDropMs',
    ],
    ['negative ackTimeoutMs', { cluster: 'c', ackTimeoutMs: -1 }, 'ackTimeoutMs'],
    ['fractional heartbeatIntervalMs', { cluster: 'c', heartbeatIntervalMs: 1.5 }, 'heartbeatIntervalMs'],
    ['unknown sendMode', { cluster: 'c', sendMode: 'sync' }, 'sendMode'],
    ['unknown manager', { cluster: 'c', manager: 'gossip' }, 'manager'],
    ['zero maxSessionBytes', { cluster: 'c', maxSessionBytes: 0 }, 'maxSessionBytes'],
    ['a channel that is not one', { cluster: 'c', channel: {} }, 'channel'],
    ['unknown option', { cluster: 'c', heartbeatMs: 100 }, 'heartbeatMs'],
  ])('rejects %s, naming the option', (_label, options, name) => {
    expect(invalid(options).message).toContain(name);
  });

  it('names every bad option at once', () => {
    const { message } = invalid({ cluster: 'bad.name', sendMode: 'sync', typo: 1 });
    for (const name of ['cluster', 'sendMode', 'typo']) expect(message).toContain(name);
  });

  it('accepts the minimal options and fills in defaults', () => {
    const node = createCluster({ cluster: 'ok', channel: new MemoryChannel(new MemoryBus()), logger: silentLogger });
    expect(node.cluster).toBe('ok');
    expect(node.node).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(node.ready).toBe(false);
    const status = node.status();
    expect(status).toMatchObject({
      cluster: 'ok',
      manager: 'delta',
      ready: false,
      sendMode: 'async',
      channel: { kind: 'memory', status: 'connected' },
    });
    expect(status.members).toEqual([expect.objectContaining({ node: node.node, self: true, state: 'joining' })]);
  });
});

describe('a cluster node', () => {
  it('a lone node starts at once with state transfer skipped', async () => {
    const node = makeNode(new MemoryBus(), 'solo', { stateTransferTimeoutMs: 60_000 });
    const started = Date.now();
    await node.start();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(node.ready).toBe(true);
    expect(node.manager.stateTransfer).toMatchObject({ state: 'skipped', sessionsReceived: 0, pages: 0 });
    expect(node.status()).toMatchObject({
      ready: true,
      sessions: { total: 0, tombstones: 0 },
      stateTransfer: { state: 'skipped' },
    });
  });

  it('status lists the other members with their state, and stop leaves gracefully', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b']);
    const members = a!.status().members;
    expect(members.map((m) => [m.node, m.self, m.state, m.ready])).toEqual([
      ['a', true, 'alive', true],
      ['b', false, 'alive', true],
    ]);
    await stopNode(b!);
    await waitFor('a to drop b', () => a!.status().members.length === 1, { timeoutMs: 250 });
    expect(b!.ready).toBe(false);
  });

  it('stop closes the in-process channel the node created', async () => {
    const node = createCluster({ cluster: 'own', node: 'a', logger: silentLogger });
    await node.start();
    expect(node.channel.kind).toBe('memory');
    await node.stop();
    expect(() => node.channel.publish('x', new Uint8Array())).toThrow(ChannelRequestError);
  });

  it("stop leaves a channel it was given open and usable, with none of the node's subscriptions left", async () => {
    const bus = new MemoryBus();
    const channel = new MemoryChannel(bus);
    const node = createCluster({
      cluster: 'given',
      node: 'a',
      channel,
      logger: silentLogger,
      heartbeatIntervalMs: 50,
      memberDropMs: 300,
    });
    await node.start();
    await node.stop();
    // The caller's channel still delivers: a subscription made after stop receives what a peer publishes.
    const received: string[] = [];
    channel.subscribe('app.events', (message) => received.push(new TextDecoder().decode(message.data)));
    const peer = new MemoryChannel(bus);
    peer.publish('app.events', new TextEncoder().encode('after stop'));
    await waitFor("the message on the caller's channel", () => received.length === 1);
    expect(received).toEqual(['after stop']);
    // The node itself answers nothing any more: a request to its own subject finds no responder.
    await expect(peer.request('sessrep.given.node.a', new Uint8Array(), { timeoutMs: 200 })).rejects.toMatchObject({
      kind: 'no-responders',
    });
    await peer.close();
    await channel.close();
  });

  it('clusters with different names on one bus never see each other', async () => {
    const bus = new MemoryBus();
    const a = makeNode(bus, 'a', { cluster: 'one' });
    const b = makeNode(bus, 'b', { cluster: 'two' });
    await a.start();
    await b.start();
    expect(b.manager.stateTransfer.state).toBe('skipped');
    // Heartbeats of the other cluster are on other subjects, so nothing arrives or is dropped.
    await waitFor('a few heartbeats sent', () => (a.stats.sent.hb ?? 0) >= 4 && (b.stats.sent.hb ?? 0) >= 4);
    expect(a.membership.members()).toEqual([]);
    expect(b.membership.members()).toEqual([]);
    expect(a.stats.dropped).toEqual({});
  });

  it('different subject prefixes partition one cluster name too', async () => {
    const bus = new MemoryBus();
    const a = makeNode(bus, 'a', { subjectPrefix: 'one' });
    const b = makeNode(bus, 'b', { subjectPrefix: 'two.sub' });
    await a.start();
    await b.start();
    await waitFor('a few heartbeats sent', () => (a.stats.sent.hb ?? 0) >= 4);
    expect(a.membership.members()).toEqual([]);
  });
});
