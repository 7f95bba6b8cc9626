/** Throughput of `POST /counter` over real HTTP: CLI node processes under autocannon load, replication ON vs OFF. */
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import autocannon from 'autocannon';
import { ADMIN_HEADERS, startNode, type NodeHandle } from '../test/kit/node-process.ts';
import { waitFor } from '../functions/launch/index.ts';
import { round, sleep, summarize, type Summary } from './stats.ts';

/** Settings of the throughput part. */
export interface ThroughputOptions {
  /** Cluster sizes to measure, e.g. [2, 3]. */
  sizes: number[];
  /** autocannon connections; each carries its own session cookie. */
  connections: number;
  /** Seconds per measured run. */
  durationSec: number;
  /** Seconds of unmeasured load before the first runs of each size. */
  warmupSec: number;
  /** ON/OFF pairs per size (run alternately). */
  rounds: number;
  /** Sequential `GET /session` reads per read run (see {@link ReadRun}). */
  reads: number;
  /** Progress lines go here. */
  log: (line: string) => void;
}

/** CPU used during a run, as a share of one core (100 = one core busy). */
export interface CpuShare {
  target: number;
  peers: number;
  natsServer: number;
  loadGenerator: number;
}

/** One autocannon run. */
export interface ThroughputRun {
  nodes: number;
  replication: 'on' | 'off';
  round: number;
  reqPerSec: number;
  requests: number;
  latencyAvgMs: number;
  latencyP99Ms: number;
  errors: number;
  non2xx: number;
  durationSec: number;
  /** Target-process CPU time per request, microseconds. */
  targetCpuUsPerReq: number;
  /** CPU time per request of each peer (receiving the target's replication), mean over the peers, microseconds; 0 without peers. */
  peerCpuUsPerReq: number;
  cpu: CpuShare;
  /** CPU time per request of each part of the machine, microseconds (`peers`: all of them together). */
  cpuUsPerReq: CpuShare;
  /** Delta messages the target sent per request (about 1 with replication on, 0 off). */
  deltasPerRequest: number;
}

/**
 * Sequential `GET /session` requests from one keep-alive client with one session's cookie: ON on a
 * peer of the node that wrote the session (the read of the anchor bench's lag trials, whose p50 is
 * about one such round trip), OFF on the replication-off node.
 */
export interface ReadRun {
  /** Round trip in ms, every round pooled. */
  latency: Summary;
  /** Target-process CPU time per read, microseconds. */
  targetCpuUsPerReq: number;
}

/** Best-of figures for one cluster size. */
export interface ThroughputSummary {
  nodes: number;
  on: ThroughputRun;
  off: ThroughputRun;
  /** on.reqPerSec / off.reqPerSec. */
  ratio: number;
  /** Sequential reads, ON (on a peer of the writer) and OFF. */
  reads: { on: ReadRun; off: ReadRun };
  /** Target-process CPU per request, mean over every run, microseconds. */
  targetCpuUsPerReq: { on: number; off: number };
  /**
   * off / on target CPU per request: the ON/OFF throughput to expect when the target is CPU-bound
   * and peers and nats-server do not share its cores.
   */
  cpuRatio: number;
  /**
   * The ON/OFF throughput the CPU allows at most: each run's rate is bounded by the target's one thread (1 s of CPU
   * over its CPU per request) and by the machine's cores (their seconds over the CPU per request of the target, the
   * peers, nats-server and the load generator; OFF without the idle peers, as the anchor bench's baseline has
   * none); means over the runs.
   */
  cpuCeiling: number;
}

/** Linux clock ticks per second for /proc/<pid>/stat. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system) of a process in ms, from /proc; NaN when unavailable. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) of this process in ms. */
export function selfCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

interface ClusterView {
  members: Array<{ self: boolean; ready: boolean }>;
  stats: { sent?: { delta?: number } };
}

/** GET /cluster of a node process. */
export async function clusterView(node: NodeHandle): Promise<ClusterView> {
  const response = await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS });
  return (await response.json()) as ClusterView;
}

/** Creates `count` sessions on `node` with `POST /counter`; returns their cookie values. */
export async function createSessions(node: NodeHandle, count: number): Promise<string[]> {
  const cookies: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await fetch(`${node.url}/counter`, { method: 'POST' });
    await response.text();
    const cookie = response.headers.getSetCookie().find((line) => line.startsWith('SESSIONID='));
    if (response.status !== 200 || !cookie)
      throw new Error(`could not create a session on ${node.node}: ${response.status}`);
    cookies.push(cookie.split(';')[0]!);
  }
  return cookies;
}

/** Times `count` sequential `GET /session` requests with `cookie` on `node`, one keep-alive connection; adds them to `into`. */
async function readLoop(
  node: NodeHandle,
  cookie: string,
  count: number,
  into: { ms: number[]; cpuMs: number },
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise<void>((resolve, reject) => {
      const request = http.get(`${node.url}/session`, { agent, headers: { cookie } }, (response) => {
        response.resume();
        response.on('end', () =>
          response.statusCode === 200 ? resolve() : reject(new Error(`GET /session: ${response.statusCode}`)),
        );
      });
      request.on('error', reject);
    });
  try {
    const cpuBefore = cpuMs(node.pid);
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await get();
      into.ms.push(performance.now() - started);
    }
    into.cpuMs += cpuMs(node.pid) - cpuBefore;
  } finally {
    agent.destroy();
  }
}

/** Runs autocannon against `POST /counter` on `node`, one pre-created session cookie per connection. */
export function cannon(node: NodeHandle, cookies: string[], durationSec: number) {
  let next = 0;
  return autocannon({
    url: `${node.url}/counter`,
    method: 'POST',
    connections: cookies.length,
    duration: durationSec,
    setupClient: (client) => client.setHeaders({ cookie: cookies[next++ % cookies.length]! }),
  });
}

/** The figures of one autocannon run, without its labels. */
export type RunFigures = Omit<ThroughputRun, 'nodes' | 'replication' | 'round'>;

/**
 * One measured autocannon run of `POST /counter` on `node` (each connection with its own session),
 * with the CPU used meanwhile by the target, `others` (its peers), nats-server and this process.
 */
export async function measureRun(
  node: NodeHandle,
  others: readonly NodeHandle[],
  natsPid: number,
  cookies: string[],
  durationSec: number,
): Promise<RunFigures> {
  await sleep(300);
  const before = {
    target: cpuMs(node.pid),
    peers: others.map((p) => cpuMs(p.pid)),
    nats: cpuMs(natsPid),
    self: selfCpuMs(),
    deltas: (await clusterView(node)).stats.sent?.delta ?? 0,
  };
  const t0 = performance.now();
  const result = await cannon(node, cookies, durationSec);
  const wallMs = performance.now() - t0;
  const after = {
    target: cpuMs(node.pid),
    peers: others.map((p) => cpuMs(p.pid)),
    nats: cpuMs(natsPid),
    self: selfCpuMs(),
    deltas: (await clusterView(node)).stats.sent?.delta ?? 0,
  };
  const requests = result['2xx'] + result.non2xx;
  const share = (ms: number) => round((100 * ms) / wallMs, 1);
  const perRequest = (ms: number) => round((ms * 1000) / Math.max(1, requests), 1);
  const peersMs = after.peers.reduce((s, x, i) => s + x - before.peers[i]!, 0);
  return {
    reqPerSec: round(result['2xx'] / result.duration, 0),
    requests,
    latencyAvgMs: round(result.latency.average, 2),
    latencyP99Ms: round(result.latency.p99, 2),
    errors: result.errors,
    non2xx: result.non2xx,
    durationSec: round(result.duration, 2),
    targetCpuUsPerReq: round(((after.target - before.target) * 1000) / Math.max(1, requests), 0),
    peerCpuUsPerReq: round(
      (after.peers.reduce((s, x, i) => s + x - before.peers[i]!, 0) * 1000) /
        Math.max(1, others.length) /
        Math.max(1, requests),
      1,
    ),
    cpu: {
      target: share(after.target - before.target),
      peers: share(after.peers.reduce((s, x, i) => s + x - before.peers[i]!, 0)),
      natsServer: share(after.nats - before.nats),
      loadGenerator: share(after.self - before.self),
    },
    cpuUsPerReq: {
      target: perRequest(after.target - before.target),
      peers: perRequest(peersMs),
      natsServer: perRequest(after.nats - before.nats),
      loadGenerator: perRequest(after.self - before.self),
    },
    deltasPerRequest: round((after.deltas - before.deltas) / Math.max(1, requests), 3),
  };
}

/**
 * Measures `POST /counter` req/s on a CLI node that is one of an N-node NATS cluster (replication on)
 * and on the same CLI without `--nats` (in-process channel, no peers: replication off), alternating
 * ON and OFF `rounds` times per size. Starts and stops every node process it uses.
 */
export async function measureThroughput(
  natsUrl: string,
  natsPid: number,
  options: ThroughputOptions,
): Promise<{ runs: ThroughputRun[]; summary: ThroughputSummary[] }> {
  const tag = Math.random().toString(36).slice(2, 8);
  const started: NodeHandle[] = [];
  const common = { extraArgs: ['--log-level', 'warn'], readyTimeoutMs: 30_000 };
  const runs: ThroughputRun[] = [];
  const reads = new Map<number, { on: ReadRun; off: ReadRun }>();
  try {
    options.log('starting the replication-off node (no --nats)');
    const off = await startNode({ cluster: `bench-off-${tag}`, node: 'solo', ...common });
    started.push(off);
    const clusterNodes: NodeHandle[] = [];

    for (const size of options.sizes) {
      while (clusterNodes.length < size) {
        const name = `n${clusterNodes.length + 1}`;
        options.log(`starting cluster node ${name} (--nats ${natsUrl})`);
        const node = await startNode({ cluster: `bench-tp-${tag}`, node: name, nats: natsUrl, ...common });
        started.push(node);
        clusterNodes.push(node);
      }
      const target = clusterNodes[0]!;
      const peers = clusterNodes.slice(1, size);
      await waitFor(
        `${target.node} to see ${size - 1} ready member(s)`,
        async () => (await clusterView(target)).members.filter((m) => !m.self && m.ready).length === size - 1,
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      const cookiesOn = await createSessions(target, options.connections);
      const cookiesOff = await createSessions(off, options.connections);
      options.log(`${size} nodes: warming up ${options.warmupSec}s on each target`);
      await cannon(target, cookiesOn, options.warmupSec);
      await cannon(off, cookiesOff, options.warmupSec);

      // The reads: a session written on the target, read on a peer (ON), and one on the OFF node.
      const readOn = { ms: [] as number[], cpuMs: 0 };
      const readOff = { ms: [] as number[], cpuMs: 0 };
      const reader = peers[0] ?? target;
      const [readCookieOn] = await createSessions(target, 1);
      const [readCookieOff] = await createSessions(off, 1);
      await readLoop(reader, readCookieOn!, Math.ceil(options.reads / 4), { ms: [], cpuMs: 0 });
      await readLoop(off, readCookieOff!, Math.ceil(options.reads / 4), { ms: [], cpuMs: 0 });
      for (let r = 1; r <= options.rounds; r++) {
        await readLoop(reader, readCookieOn!, options.reads, readOn);
        await readLoop(off, readCookieOff!, options.reads, readOff);
      }
      const readRun = (x: { ms: number[]; cpuMs: number }): ReadRun => ({
        latency: summarize(x.ms),
        targetCpuUsPerReq: round((x.cpuMs * 1000) / Math.max(1, x.ms.length), 0),
      });
      reads.set(size, { on: readRun(readOn), off: readRun(readOff) });
      options.log(
        `${size} nodes, sequential GET /session: p50 ON (a peer) ${round(reads.get(size)!.on.latency.p50, 3)} ms, ` +
          `OFF ${round(reads.get(size)!.off.latency.p50, 3)} ms; target CPU ${reads.get(size)!.on.targetCpuUsPerReq} / ${reads.get(size)!.off.targetCpuUsPerReq} us/read`,
      );

      for (let r = 1; r <= options.rounds; r++) {
        for (const replication of ['on', 'off'] as const) {
          const node = replication === 'on' ? target : off;
          const others = replication === 'on' ? peers : [];
          const run: ThroughputRun = {
            nodes: size,
            replication,
            round: r,
            ...(await measureRun(
              node,
              others,
              natsPid,
              replication === 'on' ? cookiesOn : cookiesOff,
              options.durationSec,
            )),
          };
          runs.push(run);
          options.log(
            `${size} nodes, replication ${replication.padEnd(3)} round ${r}: ${run.reqPerSec} req/s, latency avg ${run.latencyAvgMs} ms p99 ${run.latencyP99Ms} ms, ` +
              `target ${run.targetCpuUsPerReq} us CPU/req, errors ${run.errors}, non-2xx ${run.non2xx}`,
          );
        }
      }
    }
  } finally {
    await Promise.all(started.map((node) => node.stop()));
  }
  const summary = options.sizes.map((size) => {
    const best = (replication: 'on' | 'off') =>
      runs
        .filter((r) => r.nodes === size && r.replication === replication)
        .reduce((a, b) => (b.reqPerSec > a.reqPerSec ? b : a));
    const on = best('on');
    const off = best('off');
    const meanCpu = (replication: 'on' | 'off') => {
      const xs = runs.filter((r) => r.nodes === size && r.replication === replication).map((r) => r.targetCpuUsPerReq);
      return round(xs.reduce((a, b) => a + b, 0) / xs.length, 0);
    };
    const targetCpuUsPerReq = { on: meanCpu('on'), off: meanCpu('off') };
    const meanOf = (replication: 'on' | 'off', parts: (cpu: CpuShare) => number) => {
      const xs = runs.filter((r) => r.nodes === size && r.replication === replication).map((r) => parts(r.cpuUsPerReq));
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    const cores = os.cpus().length;
    const bound = (targetUs: number, machineUs: number) => Math.min(1 / targetUs, cores / machineUs);
    const boundOff = bound(
      meanOf('off', (c) => c.target),
      meanOf('off', (c) => c.target + c.loadGenerator),
    );
    const boundOn = bound(
      meanOf('on', (c) => c.target),
      meanOf('on', (c) => c.target + c.peers + c.natsServer + c.loadGenerator),
    );
    return {
      nodes: size,
      on,
      off,
      ratio: round(on.reqPerSec / off.reqPerSec, 3),
      reads: reads.get(size)!,
      targetCpuUsPerReq,
      cpuRatio: round(targetCpuUsPerReq.off / targetCpuUsPerReq.on, 3),
      cpuCeiling: round(boundOn / boundOff, 3),
    };
  });
  return { runs, summary };
}
