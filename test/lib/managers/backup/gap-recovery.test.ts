// Owns: unit tests of the backup manager's gap recovery on the in-process channel with the fault
// injector: a node that missed an ownership broadcast is reconciled after its reconnect, a cut-off or
// unreconciled node ends nothing, a primary without data asks instead of answering "new session",
// and an entry nobody holds data for is ended everywhere.
import { afterEach, describe, expect, it } from 'vitest';
import type { BackupManager } from '../../../../lib/managers/backup/backup-manager.ts';
import { createTestCluster, type TestCluster } from '../../../../lib/testing/index.ts';
import { waitFor } from '../../../../functions/launch/index.ts';
import { attributesOn, counterApp } from '../../../kit/memory-nodes.ts';

const clusters: TestCluster[] = [];
afterEach(async () => {
  await Promise.all(clusters.splice(0).map((cluster) => cluster.stop()));
});

/** Sessions expire after this long idle (an unanswered ack or fetch gives up well before). */
const MAX_INACTIVE_SECONDS = 2;
/** The sweep interval (createTestCluster's default, spelled out: a test waits a number of sweeps). */
const SWEEP_INTERVAL_MS = 50;

/** Three backup-manager nodes whose sessions expire after MAX_INACTIVE_SECONDS idle. */
async function start(): Promise<TestCluster> {
  const cluster = await createTestCluster({
    nodes: 3,
    app: counterApp,
    manager: 'backup',
    sendMode: 'ack',
    maxInactiveSeconds: MAX_INACTIVE_SECONDS,
    sweepIntervalMs: SWEEP_INTERVAL_MS,
    fetchTimeoutMs: 300,
    ackTimeoutMs: 200,
  });
  clusters.push(cluster);
  return cluster;
}

const managerOf = (cluster: TestCluster, index: number) => cluster.nodes[index]!.manager as BackupManager;

async function post(cluster: TestCluster, index: number): Promise<number> {
  return ((await (await cluster.request(index, '/counter', { method: 'POST' })).json()) as { n: number }).n;
}

/** The one session key the cluster knows (read from n1's map). */
async function onlyKey(cluster: TestCluster): Promise<string> {
  return waitFor('every node to know the session', () => {
    const keys = cluster.nodes.map((_, i) => [...managerOf(cluster, i).entries()].map((e) => e.key));
    return keys.every((k) => k.length === 1 && k[0] === keys[0]![0]) && keys[0]![0];
  });
}

/** Keeps using the session on node `index` every tenth of its timeout for `ms`, checking the counter goes on from `from`. */
async function keepUsing(cluster: TestCluster, index: number, from: number, ms: number): Promise<number> {
  let n = from;
  const until = Date.now() + ms;
  while (Date.now() < until) {
    expect(await post(cluster, index)).toBe(++n);
    // Kept: paces the uses (time must pass while the session is in use; no condition to wait on).
    await new Promise((resolve) => setTimeout(resolve, MAX_INACTIVE_SECONDS * 100));
  }
  return n;
}

describe('backup manager gap recovery', () => {
  it('a node that missed a .map broadcast drops its stale primary role after its reconnect and never ends the session in use elsewhere', async () => {
    const cluster = await start();
    expect(await post(cluster, 0)).toBe(1);
    const key = await onlyKey(cluster);
    expect(managerOf(cluster, 0).entry(key)).toMatchObject({ primary: 'n1', backup: 'n2' });
    // n3 takes the session over; its claim never reaches n1.
    cluster.faults.drop({ from: 'n3', subject: 'sessrep.*.map' });
    expect(await post(cluster, 2)).toBe(2);
    await cluster.nodes[2]!.channel.flush();
    expect(managerOf(cluster, 2).entry(key)).toMatchObject({ primary: 'n3', backup: 'n2' });
    expect(managerOf(cluster, 0).entry(key)).toMatchObject({ primary: 'n1' });
    cluster.faults.heal();
    await waitFor('n1 to learn that n3 is primary', () => managerOf(cluster, 0).entry(key)?.primary === 'n3');
    expect(managerOf(cluster, 0).inspect(key)).toBeUndefined();
    // Longer than the timeout as n1 last saw it: the session in use on n3 lives on.
    const n = await keepUsing(cluster, 2, 2, 1.5 * MAX_INACTIVE_SECONDS * 1000);
    expect(await post(cluster, 0)).toBe(n + 1);
    expect(cluster.nodes.reduce((sum, node) => sum + node.stats.sessionsExpired, 0)).toBe(0);
  });

  it('a cut-off node ends nothing from its stale view; after the heal every node agrees and the counter goes on', async () => {
    const cluster = await start();
    expect(await post(cluster, 0)).toBe(1);
    const key = await onlyKey(cluster);
    cluster.faults.partition('n1');
    await waitFor("n2 to take n1's session over", () => managerOf(cluster, 1).entry(key)?.primary === 'n2');
    // n1 sees the session idle for longer than its timeout.
    const n = await keepUsing(cluster, 1, 1, 1.5 * MAX_INACTIVE_SECONDS * 1000);
    expect(managerOf(cluster, 0).inspect(key)?.ended).toBeUndefined();
    expect(cluster.nodes[0]!.stats.sessionsExpired).toBe(0);
    cluster.faults.heal();
    await waitFor('every node to agree on the holders', () => {
      const entries = cluster.nodes.map((_, i) => managerOf(cluster, i).entry(key));
      return entries.every(
        (e) => e && !e.ended && e.primary === entries[0]!.primary && e.backup === entries[0]!.backup,
      );
    });
    // Whichever primary won, it holds the writes made on n2 during the cut.
    const primary = cluster.nodes.findIndex((node) => node.node === managerOf(cluster, 0).entry(key)!.primary);
    await waitFor('the primary to hold the latest write', () => attributesOn(cluster.nodes[primary]!, key)?.n === n);
    // n1 was cut off for longer than memberDropMs: it serves again once it reconciled.
    await waitFor(
      'n1 to have reconciled',
      () => !cluster.nodes[0]!.manager.catchingUp && cluster.nodes[0]!.stats.resyncs >= 1,
    );
    expect(await post(cluster, 0)).toBe(n + 1);
    expect(await post(cluster, 1)).toBe(n + 2);
    expect(await post(cluster, 2)).toBe(n + 3);
  });

  it('a stalled or disconnected node does not expire until it reconciled', async () => {
    const cluster = await start();
    expect(await post(cluster, 0)).toBe(1);
    const key = await onlyKey(cluster);
    cluster.faults.partition('n1');
    // Idle past its timeout on every node, but n1 is cut off: only the connected nodes end it.
    await waitFor(
      'the connected nodes to end the idle session',
      () => !managerOf(cluster, 1).entry(key) || managerOf(cluster, 1).entry(key)?.ended,
    );
    // Kept: proves n1 does NOT end it (no condition to wait on); a dozen of its sweeps past the timeout.
    await new Promise((resolve) => setTimeout(resolve, 12 * SWEEP_INTERVAL_MS));
    expect(managerOf(cluster, 0).entry(key)?.ended).toBeUndefined();
    cluster.faults.heal();
    await waitFor(
      'n1 to learn the end after the heal',
      () => managerOf(cluster, 0).entry(key)?.ended === true || managerOf(cluster, 0).entry(key) === undefined,
    );
    expect(managerOf(cluster, 0).inspect(key)?.attributes.size ?? 0).toBe(0);
  });

  it('a backup promoted without data asks the members for the session instead of starting a new one', async () => {
    const cluster = await start();
    // n1's copies to its backup n2 are lost: n2 knows the entry (from .map) but holds no data.
    cluster.faults.drop({ from: 'n1', subject: 'sessrep.*.node.n2' });
    expect(await post(cluster, 0)).toBe(1);
    const key = await onlyKey(cluster);
    expect(managerOf(cluster, 1).inspect(key)).toBeUndefined();
    // n1 falls silent for n2 and n3, which promote n2; n1 misses nothing and never hears of it.
    cluster.faults
      .drop({ from: 'n1', subject: 'sessrep.*.hb' })
      .drop({ from: 'n1', subject: '_INBOX.>' })
      .drop({ from: 'n2', subject: 'sessrep.*.map' });
    await waitFor('n2 to be promoted without data', () => managerOf(cluster, 1).entry(key)?.primary === 'n2');
    expect(managerOf(cluster, 1).inspect(key)).toBeUndefined();
    expect(managerOf(cluster, 0).entry(key)).toMatchObject({ primary: 'n1' });
    cluster.faults.heal();
    await waitFor('n2 to see n1 again', () =>
      cluster.nodes[1]!.status().members.some((m) => m.node === 'n1' && m.ready),
    );
    // The request on n2 finds the session on n1 rather than answering a new one.
    expect(await post(cluster, 1)).toBe(2);
  });

  it('a backup promoted without data asks the members, and its entry is ended everywhere when nobody has the session', async () => {
    const cluster = await start();
    // n1's copies to its backup n2 are lost: n2 knows the entry (from .map) but holds no data.
    cluster.faults.drop({ from: 'n1', subject: 'sessrep.*.node.n2' });
    expect(await post(cluster, 0)).toBe(1);
    const key = await onlyKey(cluster);
    expect(managerOf(cluster, 1).entry(key)).toMatchObject({ primary: 'n1', backup: 'n2' });
    expect(managerOf(cluster, 1).inspect(key)).toBeUndefined();
    // n1 leaves for good: n2 is promoted with nothing to serve.
    await cluster.nodes[0]!.stop();
    cluster.faults.heal();
    await waitFor('n2 to be promoted', () => managerOf(cluster, 1).entry(key)?.primary === 'n2');
    await waitFor('the entry without data to end on every remaining node', () =>
      [1, 2].every(
        (i) => managerOf(cluster, i).entry(key)?.ended === true || managerOf(cluster, i).entry(key) === undefined,
      ),
    );
    expect([...managerOf(cluster, 1).entries()]).toHaveLength(0);
    expect([...managerOf(cluster, 2).entries()]).toHaveLength(0);
  });
});
