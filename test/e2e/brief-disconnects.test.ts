// Owns: brief disconnects of a member's NATS client under ack-mode load (issue 13): one server of a 3-server
// NATS cluster lost (every node keeps answering writes, measured as the longest gap between two answered
// writes per node), and one node's link reset and restored at once (nobody drops it, its primaries stay).
import { afterEach, describe, expect, it } from 'vitest';
import { resolveOptions } from '../../lib/cluster/index.ts';
import {
  ADMIN_HEADERS,
  logLines,
  natsServerOf,
  PinnedWriters,
  startForwarder,
  startNatsCluster,
  startNatsServer,
  startNode,
  uniqueCluster,
  waitFor,
  type NatsClusterHandle,
  type NodeHandle,
} from '../kit/index.ts';

const running: NodeHandle[] = [];
const servers: Array<{ stop(): Promise<void> } | { close(): Promise<void> }> = [];
let cluster: NatsClusterHandle | undefined;

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((node) => node.stop()));
  await cluster?.stop();
  cluster = undefined;
  await Promise.allSettled(servers.splice(0).map((s) => ('stop' in s ? s.stop() : s.close())));
});

interface View {
  members: { node: string; self: boolean; ready: boolean; state: string }[];
  sessions: { total: number; primary?: number; backup?: number };
  channel: { status: string; detail?: string };
  stats: { acksTimedOut: number };
}

async function view(node: NodeHandle): Promise<View> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(5000) });
  return (await res.json()) as View;
}

/** Starts n1..n3 of `name` (ack mode) on the NATS URLs `natsOf(i)` gives, and waits until each lists the others ready. */
async function startThree(name: string, manager: 'delta' | 'backup', natsOf: (i: number) => string) {
  const nodes: NodeHandle[] = [];
  for (let i = 1; i <= 3; i++) {
    const node = await startNode({
      cluster: name,
      node: `n${i}`,
      nats: natsOf(i),
      manager,
      send: 'ack',
      readyTimeoutMs: 60_000,
      env: { LOG_LEVEL: 'info' },
    });
    running.push(node);
    nodes.push(node);
  }
  await waitFor(
    'every node to list the two others as ready',
    async () => {
      for (const node of nodes)
        if ((await view(node)).members.filter((m) => !m.self && m.ready).length !== 2) return false;
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return nodes;
}

describe('one server of a 3-server NATS cluster killed under ack-mode load', () => {
  for (const manager of ['delta', 'backup'] as const) {
    it(`${manager}: every node keeps answering writes; no write waits out ackTimeoutMs`, async () => {
      cluster = await startNatsCluster({ size: 3 });
      const urls = cluster.urls.join(',');
      const name = uniqueCluster(`srvloss-${manager}`);
      const nodes = await startThree(name, manager, () => urls);
      const victim = cluster.servers.findIndex((s) => natsServerOf(nodes[0]!).endsWith(`:${s.port}`));
      expect(victim, `n1 on ${natsServerOf(nodes[0]!)}; servers ${urls}`).toBeGreaterThanOrEqual(0);
      const onVictim = nodes.filter((n) => natsServerOf(n).endsWith(`:${cluster!.servers[victim]!.port}`));

      const writers = new PinnedWriters(nodes, 2);
      await writers.start();
      // Load established before the kill: every node answered a few writes.
      await waitFor(
        'every node to answer writes',
        () => nodes.every((node) => (writers.answered.get(node.node)?.length ?? 0) >= 20),
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      const killedAt = Date.now();
      cluster.servers[victim]!.kill('SIGKILL');
      // Every node on the killed server reconnects elsewhere.
      await waitFor(
        'the nodes on the killed server to reconnect to another',
        () =>
          onVictim.every((node) =>
            logLines(node, 'channel connection changed').some(
              (l) => l.status === 'connected' && Number(l.time) >= killedAt - 50,
            ),
          ),
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      // Kept: proves no write waits out ackTimeoutMs and nobody is declared dead (no condition to wait on): load
      // goes on until a write stuck since the kill would have timed out and a silent member been dropped (defaults).
      const { ackTimeoutMs, memberDropMs, pingTimeoutMs } = resolveOptions({ cluster: name });
      const outlastMs = Math.max(ackTimeoutMs, memberDropMs + pingTimeoutMs) + 1000;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, killedAt + outlastMs - Date.now())));
      const endedAt = Date.now();
      await writers.stop();

      const views = await Promise.all(nodes.map(view));
      const gaps = nodes.map((node) => writers.longestGap(node.node, killedAt - 100, endedAt));
      console.info(
        `[figure] NATS server loss (${manager}, ack): ${onVictim.map((n) => n.node).join(',')} on the killed server; ` +
          `longest gap between answered writes per node ${nodes.map((n, i) => `${n.node} ${gaps[i]} ms`).join(', ')}; ` +
          `statuses ${nodes.map((n) => `${n.node} ${JSON.stringify(writers.statuses(n.node, killedAt))}`).join(' ')}; ` +
          `acks timed out ${views.map((v) => v.stats.acksTimedOut).join('/')}; ` +
          `members found unreachable ${nodes.map((n) => logLines(n, 'member unreachable: its subject has no responder').length).join('/')}`,
      );
      for (const [i, v] of views.entries()) expect(v.stats.acksTimedOut, nodes[i]!.node).toBe(0);
      // The nodes that reconnected were never dropped (nor their backup primaries moved): a reconnect is no death.
      const dropped = nodes.flatMap((node) =>
        logLines(node, 'member declared dead').map((l) => `${node.node} dropped ${l.member}`),
      );
      expect(dropped).toEqual([]);
    }, 180_000);
  }
});

describe("one node's NATS link reset and restored at once (its client reconnects within a second)", () => {
  it('backup, ack: the others never drop it, its primaries stay its own, writes through it go on', async () => {
    const nats = await startNatsServer();
    servers.push(nats);
    const forwarder = await startForwarder(nats.port);
    servers.push(forwarder);
    const name = uniqueCluster('reconnect');
    const nodes = await startThree(name, 'backup', (i) => (i === 3 ? forwarder.url : nats.url));
    const [n1, n2, n3] = nodes as [NodeHandle, NodeHandle, NodeHandle];
    // Sessions on every node, so that n3 is a primary and a backup, and writes go on everywhere.
    const writers = new PinnedWriters(nodes, 2);
    await writers.start();
    await waitFor('writes on every node', () => nodes.every((n) => writers.statuses(n.node, 0)['200']! >= 5), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const primariesBefore = (await view(n3)).sessions.primary;

    const resetAt = Date.now();
    await forwarder.reset();
    await waitFor(
      'n3 to notice the disconnect',
      () => logLines(n3, 'channel connection changed').some((l) => l.status === 'disconnected'),
      { timeoutMs: 10_000, intervalMs: 10 },
    );
    await forwarder.heal();
    const back = await waitFor(
      'n3 to reconnect',
      () =>
        logLines(n3, 'channel connection changed').find((l) => l.status === 'connected' && Number(l.time) >= resetAt),
      { timeoutMs: 10_000, intervalMs: 10 },
    );
    const disconnectedMs = Number(back.time) - resetAt;
    // Writes through n3 are answered 200 again after the reconnect.
    const answeredAfter = () =>
      writers.answered.get('n3')!.filter((a) => a.status === 200 && a.at > Number(back.time)).length;
    await waitFor('writes through n3 answered again', () => answeredAfter() >= 10, {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    await writers.stop();

    const found = [n1, n2].map((n) => logLines(n, 'member unreachable: its subject has no responder').length);
    console.info(
      `[figure] link reset of n3 (backup, ack): disconnected ${disconnectedMs} ms; found unreachable by n1/n2 ${found.join('/')} times; ` +
        `statuses ${nodes.map((n) => `${n.node} ${JSON.stringify(writers.statuses(n.node, resetAt))}`).join(' ')}`,
    );
    const dropped = nodes.flatMap((node) =>
      logLines(node, 'member declared dead').map((l) => `${node.node} dropped ${l.member}`),
    );
    expect(dropped).toEqual([]);
    for (const node of [n1, n2]) expect((await view(node)).members.map((m) => m.node)).toContain('n3');
    // Nobody took n3's sessions over because it was gone: it is still primary of at least as many.
    expect((await view(n3)).sessions.primary).toBeGreaterThanOrEqual(primariesBefore ?? 0);
  }, 180_000);
});
