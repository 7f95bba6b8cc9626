// Owns: unit tests of what lib/cluster/status.ts shows operators: member states (draining, url), traffic rates,
// replication lag measured where writes are applied, `sessions()` (key prefixes only), and the session
// and route fields on replication log lines. In-process nodes on a MemoryBus.
import { describe, expect, it } from 'vitest';
import type { ChannelStatus } from '../../../lib/channel/channel.ts';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { createCluster } from '../../../lib/cluster/index.ts';
import { InvalidOptionsError } from '../../../lib/errors.ts';
import type { Logger } from '../../../lib/logger.ts';
import { BackupManager } from '../../../lib/managers/backup/backup-manager.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { attributesOn, call, makeNode, partsOf, sessionApp, setOn, startNodes } from '../../kit/memory-nodes.ts';
import { keyOf } from '../../kit/cookie-client.ts';

/** A logger that keeps every line (bound fields merged in), at every level. */
function capturingLogger(lines: Record<string, unknown>[], bound: Record<string, unknown> = {}): Logger {
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    lines.push({ level, ...bound, ...fields, msg });
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => capturingLogger(lines, { ...bound, ...fields }),
  };
}

describe('member states on /cluster', () => {
  it("shows each member's advertised URL and a draining member as draining, on itself and on the others", async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b'], {});
    expect(a!.status().members.find((m) => m.node === 'b')).toMatchObject({ state: 'alive', draining: false });
    expect(a!.status().members.find((m) => m.node === 'b')).not.toHaveProperty('url');

    partsOf(b!).membership.setDraining(true);
    expect(b!.status()).toMatchObject({ draining: true });
    expect(b!.status().members[0]).toMatchObject({ node: 'b', self: true, state: 'draining', draining: true });
    await waitFor('a to see b draining', () => a!.status().members.find((m) => m.node === 'b')?.state === 'draining');
    expect(a!.status().members.find((m) => m.node === 'b')).toMatchObject({ draining: true, ready: true });

    partsOf(b!).membership.setDraining(false);
    await waitFor('a to see b alive again', () => a!.status().members.find((m) => m.node === 'b')?.state === 'alive');
  });

  it('carries advertiseUrl in heartbeats', async () => {
    const bus = new MemoryBus();
    const a = makeNode(bus, 'a', { advertiseUrl: 'http://10.0.0.1:8081' });
    const b = makeNode(bus, 'b', { advertiseUrl: 'https://b.example:8443' });
    await a.start();
    await b.start();
    await waitFor(
      "a to see b's url",
      () => a.status().members.find((m) => m.node === 'b')?.url === 'https://b.example:8443',
    );
    expect(a.status()).toMatchObject({ url: 'http://10.0.0.1:8081' });
    expect(a.status().members[0]).toMatchObject({ self: true, url: 'http://10.0.0.1:8081' });
    await waitFor(
      "b to see a's url",
      () => b.status().members.find((m) => m.node === 'a')?.url === 'http://10.0.0.1:8081',
    );
  });

  it('rejects an advertiseUrl that is not http(s)', () => {
    for (const advertiseUrl of ['javascript:alert(1)', 'ftp://x', 'http://', 'http://a b']) {
      expect(() => createCluster({ cluster: 'c', advertiseUrl })).toThrow(InvalidOptionsError);
    }
  });
});

describe('rates and replication lag on /cluster', () => {
  it('delta: the receiving node measures lag for every applied write; rates follow the traffic', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b']);
    expect(b!.status().replicationLag).toMatchObject({ samples: 0, p50Ms: null, p99Ms: null, windowSeconds: 60 });
    let cookie: string | undefined;
    for (let i = 0; i < 20; i++) cookie = await setOn(a!, cookie, { n: i });
    // One sample per applied delta (async deltas may be batched or merged, so at least one).
    await waitFor('b to apply the last write', () => attributesOn(b!, keyOf(cookie!))?.n === 19);
    await waitFor('b to measure the lag', () => b!.status().replicationLag.samples >= 1);
    expect(b!.status().replicationLag.samples).toBeLessThanOrEqual(20);
    const lag = b!.status().replicationLag;
    expect(lag.p50Ms).toBeGreaterThanOrEqual(0);
    expect(lag.p99Ms).toBeGreaterThanOrEqual(lag.p50Ms!);
    expect(lag.p99Ms).toBeLessThan(1000); // in-process: well under a second
    // The writer measures nothing for its own writes.
    expect(a!.status().replicationLag.samples).toBe(0);
    // Rates come from one-second samples: after two of them, a's out and b's in are above zero.
    await waitFor(
      'rates over at least one second',
      () => a!.status().rates.windowSeconds >= 1 && b!.status().rates.windowSeconds >= 1,
      { timeoutMs: 5000 },
    );
    await waitFor(
      'the writes to show in the rates',
      () => a!.status().rates.messagesOut > 0 && b!.status().rates.messagesIn > 0 && a!.status().rates.bytesOut > 0,
      { timeoutMs: 5000 },
    );
  });

  it('backup: the backup measures lag for copies of writes', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b'], { manager: 'backup' });
    let cookie: string | undefined;
    for (let i = 0; i < 5; i++) cookie = await setOn(a!, cookie, { n: i });
    await waitFor('b (the backup) to hold the last write', () => attributesOn(b!, keyOf(cookie!))?.n === 4);
    await waitFor('b (the backup) to measure the lag', () => b!.status().replicationLag.samples >= 1);
    expect(a!.status().replicationLag.samples).toBe(0);
  });
});

describe('sessions() for /cluster/sessions', () => {
  it('delta: key prefixes of 8 characters, never full keys, with ages and the last node', async () => {
    const bus = new MemoryBus();
    const [a, b] = await startNodes(bus, ['a', 'b']);
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) keys.push(keyOf(await setOn(a!, undefined, { secret: `value-${i}` })));
    await waitFor('b to hold every session', () => b!.status().sessions.total === 5);
    const list = b!.sessions(3);
    expect(list).toMatchObject({ node: 'b', manager: 'delta', total: 5 });
    expect(list.time).toBeGreaterThan(0);
    expect(list.sessions).toHaveLength(3);
    for (const row of list.sessions) {
      expect(row.key).toHaveLength(8);
      expect(keys.map((k) => k.slice(0, 8))).toContain(row.key);
      expect(row).toMatchObject({ lastAccessedBy: 'a' });
      expect(row.createdAt).toBeGreaterThan(0);
    }
    const text = JSON.stringify(b!.sessions(100));
    for (const key of keys) expect(text).not.toContain(key);
    expect(text).not.toContain('value-');
  });

  it('backup: every known session with its primary and backup; data fields where this node holds it', async () => {
    const bus = new MemoryBus();
    const [a, b, c] = await startNodes(bus, ['a', 'b', 'c'], { manager: 'backup' });
    for (let i = 0; i < 4; i++) await setOn(a!, undefined, { n: i });
    await waitFor('c to know every session', () => c!.status().sessions.total === 4);
    const list = c!.sessions();
    expect(list).toMatchObject({ manager: 'backup', total: 4 });
    for (const row of list.sessions) {
      expect(row.key).toHaveLength(8);
      expect(row.primary).toBe('a');
      expect(['b', 'c']).toContain(row.backup);
      expect(row.role).toBe(row.backup === 'c' ? 'backup' : 'proxy');
      // A proxy holds no data, so no ages; a backup does.
      if (row.role === 'proxy') expect(row.createdAt).toBeUndefined();
      else expect(row.createdAt).toBeGreaterThan(0);
    }
    expect(b!.manager).toBeInstanceOf(BackupManager);
  });
});

describe('log lines for operators', () => {
  it('request lines carry session (8 chars), route and node; a failover logs the rewrite', async () => {
    const bus = new MemoryBus();
    const lines: Record<string, unknown>[] = [];
    const [a] = await startNodes(bus, ['a']);
    const b = makeNode(bus, 'b', { logger: capturingLogger(lines) });
    await b.start();
    await waitFor(
      'a and b to see each other',
      () => a!.membership.readyMembers().length === 1 && b.membership.readyMembers().length === 1,
    );
    const cookie = await setOn(a!, undefined, { x: 1 });
    await waitFor('b to hold the session', () => b.status().sessions.total === 1);
    const res = await call(sessionApp(b), 'GET', '/get', { cookie });
    expect(res.status).toBe(200);
    const prefix = keyOf(cookie).slice(0, 8);
    const request = lines.find((l) => l.msg === 'session request');
    expect(request).toMatchObject({
      level: 'debug',
      session: prefix,
      route: 'a',
      node: 'b',
      cluster: 'test',
      found: true,
    });
    const rewrite = lines.find((l) => l.msg === 'route rewritten to this node');
    expect(rewrite).toMatchObject({ level: 'debug', session: prefix, route: 'a', node: 'b' });
    // Every line that names a session uses the 8-character prefix, never the full key.
    for (const line of lines) {
      if ('session' in line) expect(line.session).toHaveLength(8);
      expect(JSON.stringify(line)).not.toContain(keyOf(cookie));
    }
  });
});

/** A memory channel whose connection status the test drives. */
class StatusChannel extends MemoryChannel {
  readonly #listeners: Array<(status: ChannelStatus, detail?: string) => void> = [];

  override onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#listeners.push(listener);
  }

  emit(status: ChannelStatus, detail?: string): void {
    for (const listener of this.#listeners) listener(status, detail);
  }
}

describe('the channel on /cluster', () => {
  it('follows the connection and counts broker refusals, and a stopped node no longer reports on a channel it was given', async () => {
    const channel = new StatusChannel(new MemoryBus());
    const lines: Record<string, unknown>[] = [];
    const node = createCluster({ cluster: 'c', node: 'a', channel, logger: capturingLogger(lines) });
    await node.start();
    expect(node.status().channel).toEqual({ kind: 'memory', status: 'connected' });

    channel.emit('error', 'Permissions Violation for Publish to "sessrep.c.delta"');
    expect(node.status().channel).toEqual({
      kind: 'memory',
      status: 'error',
      detail: 'Permissions Violation for Publish to "sessrep.c.delta"',
    });
    expect(node.stats.channelErrors).toBe(1);
    expect(lines.filter((line) => line.msg === 'the broker refused an operation')).toHaveLength(1);
    channel.emit('connected');
    expect(node.status().channel.status).toBe('connected');

    await node.stop();
    channel.emit('error', 'after stop');
    expect(node.stats.channelErrors).toBe(1);
    expect(lines.filter((line) => line.msg === 'the broker refused an operation')).toHaveLength(1);
    await channel.close();
  });
});
