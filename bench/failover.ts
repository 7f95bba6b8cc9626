/**
 * Failover: how fast CLI nodes notice a SIGKILLed member with no traffic at all (found unreachable by
 * the ring probe, then dropped after the reconnect grace) and while they serve reads, what the probing
 * costs on the wire when idle, how long a survivor takes to serve a session correctly (and to answer the next write) when a
 * member is SIGKILLed right after a burst of writes (the side-by-side bench's failover step), and how
 * long the nodes stall when one server of a 3-server NATS cluster is SIGKILLed under ack-mode load
 * (the longest gap between two answered writes per node).
 */
import { startNatsCluster } from '../test/kit/nats-fixtures.ts';
import { ADMIN_HEADERS, startNode, type NodeHandle } from '../test/kit/node-process.ts';
import { logLines, natsServerOf, PinnedWriters } from '../test/kit/pinned-writers.ts';
import { waitFor } from '../functions/launch/index.ts';
import { sleep } from './stats.ts';

/** Settings of the failover section. */
export interface FailoverOptions {
  /** SIGKILLs of an idle member (a fresh 3-node cluster each). */
  kills: number;
  /** Seconds of idle traffic counted for the probing cost. */
  idleSec: number;
  /** Seconds of load after the killed NATS server's nodes reconnected. */
  serverLossSec: number;
  /** Sessions written on n1 (1-5 increments each, 16 at a time) before each burst kill. */
  burstSessions: number;
  log: (line: string) => void;
}

/** One idle SIGKILL: ms from the kill until each survivor listed the member unreachable, and until it dropped it. */
export interface IdleKill {
  unreachableMs: number[];
  droppedMs: number[];
}

/** One NATS server SIGKILLed under ack-mode load. */
export interface ServerLoss {
  manager: 'delta' | 'backup';
  /** Nodes that were connected to the killed server. */
  onKilled: string[];
  /** Longest time between two writes answered 200, per node, from the kill to the end. */
  longestGapMs: Record<string, number>;
  statuses: Record<string, Record<string, number>>;
  acksTimedOut: number;
  /** Members some node declared dead (a reconnect is no death: 0 expected). */
  declaredDead: number;
}

/** One SIGKILL of n1 right after the last answer of a burst of writes on it, in one send mode (delta manager). */
export interface BurstKill {
  send: 'async' | 'ack';
  /** ms from the kill until a read on n2 showed a session's last value. */
  firstReadMs: number;
  /** ms from that read's answer until the next write on n2 (another session) was answered. */
  nextWriteMs: number;
}

/** One SIGKILL of n1 right after a burst of writes on it, the survivors serving reads meanwhile. */
export interface LoadedKill {
  /** ms from the kill until each survivor (n2, n3) logged n1 unreachable, by the survivor's log timestamp. */
  unreachableMs: number[];
  /** Reads the survivors answered from the kill until both had. */
  reads: number;
}

export interface FailoverResult {
  idle: IdleKill[];
  /** Absent in reports from before this measurement. */
  loaded?: LoadedKill[];
  burst: BurstKill[];
  /** Per node, idle: messages sent and received per second, of which pings and pongs (the probes), and bytes. */
  idleCost: { messagesPerSec: number; probeMessagesPerSec: number; heartbeatsPerSec: number; bytesPerSec: number };
  serverLoss: ServerLoss[];
}

interface View {
  members: { node: string; self: boolean; state: string }[];
  stats: {
    acksTimedOut: number;
    messagesSent: number;
    messagesReceived: number;
    bytesSent: number;
    bytesReceived: number;
    sent: Record<string, number>;
    received: Record<string, number>;
  };
}

async function view(node: NodeHandle): Promise<View> {
  const res = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS, signal: AbortSignal.timeout(5000) });
  return (await res.json()) as View;
}

async function startThree(name: string, nats: string, extra: { manager?: string; send?: 'async' | 'ack' } = {}) {
  const nodes: NodeHandle[] = [];
  for (let i = 1; i <= 3; i++)
    nodes.push(
      await startNode({
        cluster: name,
        node: `n${i}`,
        nats,
        ...extra,
        readyTimeoutMs: 60_000,
        env: { LOG_LEVEL: 'info' },
      }),
    );
  await waitFor(
    'every node to list the two others',
    async () => {
      for (const node of nodes) if ((await view(node)).members.filter((m) => !m.self).length !== 2) return false;
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 50 },
  );
  return nodes;
}

/** Idle SIGKILLs of n1 on `natsUrl`, and the idle traffic of n2 before the first. */
async function idleKills(natsUrl: string, o: FailoverOptions): Promise<Pick<FailoverResult, 'idle' | 'idleCost'>> {
  const idle: IdleKill[] = [];
  let idleCost: FailoverResult['idleCost'] | undefined;
  for (let k = 0; k < o.kills; k++) {
    const nodes = await startThree(`bench-fo-idle-${Date.now().toString(36)}-${k}`, natsUrl);
    try {
      if (!idleCost) {
        await sleep(1000);
        const before = (await view(nodes[1]!)).stats;
        const started = performance.now();
        await sleep(o.idleSec * 1000);
        const after = (await view(nodes[1]!)).stats;
        const sec = (performance.now() - started) / 1000;
        const of = (s: View['stats'], kinds: string[]) =>
          kinds.reduce((sum, kind) => sum + (s.sent[kind] ?? 0) + (s.received[kind] ?? 0), 0);
        idleCost = {
          messagesPerSec:
            (after.messagesSent + after.messagesReceived - before.messagesSent - before.messagesReceived) / sec,
          probeMessagesPerSec: (of(after, ['ping', 'pong']) - of(before, ['ping', 'pong'])) / sec,
          heartbeatsPerSec: (of(after, ['hb']) - of(before, ['hb'])) / sec,
          bytesPerSec: (after.bytesSent + after.bytesReceived - before.bytesSent - before.bytesReceived) / sec,
        };
      }
      const survivors = nodes.slice(1);
      const unreachableMs: number[] = survivors.map(() => Number.NaN);
      const droppedMs: number[] = survivors.map(() => Number.NaN);
      const killed = performance.now();
      nodes[0]!.kill('SIGKILL');
      await waitFor(
        'the survivors to drop n1',
        async () => {
          const views = await Promise.all(survivors.map(view));
          const now = performance.now() - killed;
          for (const [i, v] of views.entries()) {
            const n1 = v.members.find((m) => m.node === 'n1');
            if (Number.isNaN(unreachableMs[i]!) && (!n1 || n1.state === 'unreachable')) unreachableMs[i] = now;
            if (Number.isNaN(droppedMs[i]!) && !n1) droppedMs[i] = now;
          }
          return droppedMs.every((x) => !Number.isNaN(x));
        },
        { timeoutMs: 30_000, intervalMs: 5 },
      );
      idle.push({ unreachableMs, droppedMs });
      o.log(
        `  idle SIGKILL ${k + 1}/${o.kills}: unreachable ${unreachableMs.map(Math.round)} ms, dropped ${droppedMs.map(Math.round)} ms`,
      );
    } finally {
      await Promise.allSettled(nodes.map((n) => n.stop()));
    }
  }
  return { idle, idleCost: idleCost! };
}

/** A request to `node` carrying `cookie` (`SESSIONID=...`); resolves with the status, JSON body and the cookie it set. */
async function call(node: NodeHandle, method: string, path: string, cookie?: string) {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: cookie ? { cookie } : {},
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json().catch(() => ({}))) as { counter?: number; attributes?: { counter?: number } };
  const set = res.headers.getSetCookie().find((c) => c.startsWith('SESSIONID='));
  return { status: res.status, body, cookie: set ? set.split(';')[0]! : cookie };
}

/** `sessions` sessions written on `node`, 1-5 increments each, 16 at a time: their cookies and last counters. */
async function writeBurst(node: NodeHandle, sessions: number) {
  const cookies: (string | undefined)[] = [];
  const counters: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < sessions; i = next++)
        for (let n = 0; n <= i % 5; n++) {
          const reply = await call(node, 'POST', '/counter', cookies[i]);
          cookies[i] = reply.cookie;
          counters[i] = reply.body.counter ?? Number.NaN;
        }
    }),
  );
  return { cookies, counters };
}

/**
 * SIGKILLs n1 right after the last answer of a burst of writes on it (async mode), then has 16 clients
 * read those sessions on n2 and n3 (alternately, back to back) until both survivors logged n1
 * unreachable (the log line's timestamp, not a `/cluster` poll that would wait behind the reads).
 */
async function loadedKill(natsUrl: string, k: number, o: FailoverOptions): Promise<LoadedKill> {
  const nodes = await startThree(`bench-fo-load-${Date.now().toString(36)}-${k}`, natsUrl);
  try {
    const [n1, ...survivors] = nodes as [NodeHandle, NodeHandle, NodeHandle];
    const { cookies } = await writeBurst(n1, o.burstSessions);
    const killedAt = Date.now();
    n1.kill('SIGKILL');
    let reading = true;
    let reads = 0;
    const readers = Array.from({ length: 16 }, async (_, j) => {
      for (let i = j; reading; i = (i + 16) % o.burstSessions) {
        await call(survivors[i % 2]!, 'GET', '/session', cookies[i]);
        reads++;
      }
    });
    const unreachableAt = (node: NodeHandle) =>
      logLines<{ member?: string }>(node, 'member unreachable: its subject has no responder').find(
        (l) => l.member === 'n1' && Number(l.time) >= killedAt,
      )?.time;
    try {
      await waitFor(
        'both survivors to log n1 unreachable',
        () => survivors.every((n) => unreachableAt(n) !== undefined),
        {
          timeoutMs: 30_000,
          intervalMs: 5,
        },
      );
    } finally {
      reading = false;
      await Promise.allSettled(readers);
    }
    const unreachableMs = survivors.map((n) => Number(unreachableAt(n)) - killedAt);
    o.log(`  loaded SIGKILL ${k + 1}/${o.kills}: unreachable ${unreachableMs.join(',')} ms (${reads} reads meanwhile)`);
    return { unreachableMs, reads };
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  }
}

/**
 * SIGKILLs n1 right after the last answer of a burst of increments on it (`burstSessions` sessions,
 * 1-5 increments each, 16 at a time), then reads session 0 on n2 until it shows its last value
 * (a fresh connection, as a load balancer's retry), then increments session 1 on n2.
 */
async function burstKill(natsUrl: string, send: 'async' | 'ack', k: number, o: FailoverOptions): Promise<BurstKill> {
  const nodes = await startThree(`bench-fo-burst-${send}-${Date.now().toString(36)}-${k}`, natsUrl, { send });
  try {
    const [n1, n2] = nodes as [NodeHandle, NodeHandle, NodeHandle];
    const { cookies, counters } = await writeBurst(n1, o.burstSessions);
    const killed = performance.now();
    n1.kill('SIGKILL');
    let firstReadMs = Number.NaN;
    while (performance.now() - killed < 10_000) {
      const reply = await call(n2, 'GET', '/session', cookies[0]);
      if (reply.status === 200 && reply.body.attributes?.counter === counters[0]) {
        firstReadMs = performance.now() - killed;
        break;
      }
      await sleep(2);
    }
    const writing = performance.now();
    const write = await call(n2, 'POST', '/counter', cookies[1]);
    const nextWriteMs = write.status === 200 ? performance.now() - writing : Number.NaN;
    o.log(
      `  burst SIGKILL (${send}) ${k + 1}/${o.kills}: first correct read ${firstReadMs.toFixed(1)} ms, next write ${nextWriteMs.toFixed(1)} ms`,
    );
    return { send, firstReadMs, nextWriteMs };
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  }
}

/** One server of a 3-server NATS cluster SIGKILLed under ack-mode load (the one n1 uses). */
async function serverLoss(manager: 'delta' | 'backup', o: FailoverOptions): Promise<ServerLoss> {
  const cluster = await startNatsCluster({ size: 3 });
  const nodes = await startThree(`bench-fo-srv-${manager}-${Date.now().toString(36)}`, cluster.urls.join(','), {
    manager,
    send: 'ack',
  });
  try {
    const victim = cluster.servers.find((s) => natsServerOf(nodes[0]!).endsWith(`:${s.port}`))!;
    const onKilled = nodes.filter((n) => natsServerOf(n).endsWith(`:${victim.port}`));
    const writers = new PinnedWriters(nodes, 2);
    await writers.start();
    await sleep(1500);
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await waitFor(
      'the nodes on the killed server to reconnect',
      () =>
        onKilled.every((node) =>
          logLines(node, 'channel connection changed').some(
            (l) => l.status === 'connected' && Number(l.time) >= killedAt,
          ),
        ),
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    await sleep(o.serverLossSec * 1000);
    const endedAt = Date.now();
    await writers.stop();
    const views = await Promise.all(nodes.map(view));
    const result: ServerLoss = {
      manager,
      onKilled: onKilled.map((n) => n.node),
      longestGapMs: Object.fromEntries(nodes.map((n) => [n.node, writers.longestGap(n.node, killedAt, endedAt)])),
      statuses: Object.fromEntries(nodes.map((n) => [n.node, writers.statuses(n.node, killedAt)])),
      acksTimedOut: views.reduce((sum, v) => sum + v.stats.acksTimedOut, 0),
      declaredDead: nodes.reduce((sum, n) => sum + logLines(n, 'member declared dead').length, 0),
    };
    o.log(`  NATS server loss (${manager}): longest gaps ${JSON.stringify(result.longestGapMs)} ms`);
    return result;
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await cluster.stop();
  }
}

/** Runs the failover section: idle SIGKILLs on `natsUrl`, then a NATS server loss per manager. */
export async function measureFailover(natsUrl: string, o: FailoverOptions): Promise<FailoverResult> {
  o.log(`failover: ${o.kills} idle SIGKILLs of a member (3 CLI nodes, no traffic)`);
  const idle = await idleKills(natsUrl, o);
  o.log(`failover: ${o.kills} SIGKILLs of a member right after a burst of writes on it, the survivors serving reads`);
  const loaded: LoadedKill[] = [];
  for (let k = 0; k < o.kills; k++) loaded.push(await loadedKill(natsUrl, k, o));
  o.log(`failover: ${o.kills} SIGKILLs of a member right after a burst of writes on it, per send mode`);
  const burst: BurstKill[] = [];
  for (let k = 0; k < o.kills; k++)
    for (const send of ['async', 'ack'] as const) burst.push(await burstKill(natsUrl, send, k, o));
  o.log('failover: one server of a 3-server NATS cluster SIGKILLed under ack-mode load');
  const losses: ServerLoss[] = [];
  for (const manager of ['delta', 'backup'] as const) losses.push(await serverLoss(manager, o));
  return { ...idle, loaded, burst, serverLoss: losses };
}

/** The failover section of the markdown report. */
export function formatFailover(f: FailoverResult, o: Omit<FailoverOptions, 'log'>): string[] {
  const all = (pick: (k: IdleKill) => number[]) => f.idle.flatMap(pick).filter(Number.isFinite);
  const range = (xs: number[]) => (xs.length ? `${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))}` : 'n/a');
  const c = f.idleCost;
  return [
    `Three CLI nodes (delta, async, default timing: probe every 40 ms, reconnect grace 1 s), no traffic; n1 SIGKILLed ${o.kills} times (a fresh cluster each); each survivor's \`/cluster\` polled every 5 ms.`,
    '',
    '| after SIGKILL of an idle member | ms (min-max over both survivors and every kill) |',
    '|---|---|',
    `| listed \`unreachable\` (acks stop waiting, proxies read from the backup) | ${range(all((k) => k.unreachableMs))} |`,
    `| dropped as dead (after the reconnect grace) | ${range(all((k) => k.droppedMs))} |`,
    '',
    ...(f.loaded
      ? [
          `Under load: n1 SIGKILLed right after a burst of writes on it (${o.burstSessions} sessions, 1-5 increments each, 16 at a time), then 16 clients read those sessions on n2 and n3 back to back; ms from the kill until each survivor logged n1 \`unreachable\` (its log timestamp), per kill (n2, n3): ${f.loaded.map((k) => k.unreachableMs.join('/')).join(', ')}; min-max ${range(f.loaded.flatMap((k) => k.unreachableMs).filter(Number.isFinite))}.`,
          '',
        ]
      : []),
    `Idle wire cost per node (${o.idleSec} s): ${c.messagesPerSec.toFixed(1)} messages/s sent+received, of which ${c.probeMessagesPerSec.toFixed(1)} probe pings and pongs and ${c.heartbeatsPerSec.toFixed(1)} heartbeats; ${Math.round(c.bytesPerSec)} bytes/s.`,
    '',
    `n1 SIGKILLed right after the last answer of a burst of increments on it (${o.burstSessions} sessions, 1-5 increments each, 16 at a time; delta manager; a fresh cluster each, ${o.kills} per mode); ms, median (min-max):`,
    '',
    '| send mode | kill → first correct read on n2 | then the next write on n2 answered |',
    '|---|---|---|',
    ...(['async', 'ack'] as const).map((send) => {
      const runs = (f.burst ?? []).filter((b) => b.send === send);
      const cell = (xs: number[]) => {
        const ok = xs.filter(Number.isFinite).sort((a, b) => a - b);
        return ok.length ? `${ok[ok.length >> 1]!.toFixed(1)} (${range(ok)})` : 'n/a';
      };
      return `| ${send} | ${cell(runs.map((b) => b.firstReadMs))} | ${cell(runs.map((b) => b.nextWriteMs))} |`;
    }),
    '',
    `One server of a 3-server NATS cluster (routes) SIGKILLed under ack-mode load (2 writers per node, each pinned to its node, every node given the three URLs), measured for ${o.serverLossSec} s after the nodes on it reconnected:`,
    '',
    '| manager | nodes on the killed server | longest gap between answered writes per node (ms) | answers after the kill | acks timed out | members declared dead |',
    '|---|---|---|---|---|---|',
    ...f.serverLoss.map(
      (s) =>
        `| ${s.manager} | ${s.onKilled.join(', ')} | ${Object.entries(s.longestGapMs)
          .map(([n, g]) => `${n} ${g}`)
          .join(', ')} | ${Object.entries(s.statuses)
          .map(([n, st]) => `${n} ${JSON.stringify(st)}`)
          .join(', ')} | ${s.acksTimedOut} | ${s.declaredDead} |`,
    ),
  ];
}
