/**
 * Encryption cost: replication lag (in-process nodes) and `POST /counter` throughput (CLI node
 * processes) with no cluster key, with `encrypt` (AES-256-GCM) and with `sign` (HMAC-SHA256), all in
 * the same run and interleaved so every configuration sees the same machine load.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { ClusterKeyConfig } from '../lib/codec/protection.ts';
import { startNode, type NodeHandle } from '../test/kit/node-process.ts';
import { waitFor } from '../functions/launch/index.ts';
import { interleave, LagProbe, type LagResult } from './lag.ts';
import { round } from './stats.ts';
import { cannon, clusterView, createSessions, measureRun, type RunFigures } from './throughput.ts';

export type Protection = 'none' | 'encrypt' | 'sign';
export const PROTECTIONS: readonly Protection[] = ['none', 'encrypt', 'sign'];

/** Settings of the crypto section. */
export interface CryptoOptions {
  /** Cluster size of both the lag and the throughput part. */
  nodes: number;
  lag: { n: number; warmup: number; chunks: number };
  throughput: { connections: number; durationSec: number; warmupSec: number; rounds: number };
  log: (line: string) => void;
}

/** One autocannon run against the first node of a cluster with the given protection. */
export interface CryptoRun extends RunFigures {
  protection: Protection;
  round: number;
}

/** Best run and mean target CPU per request of one protection. */
export interface CryptoSummary {
  protection: Protection;
  best: CryptoRun;
  /** Target CPU per request, mean of the runs, microseconds. */
  targetCpuUsPerReq: number;
  /** best req/s / best req/s without a key. */
  ratio: number;
  /** Target CPU per request / the same without a key. */
  cpuRatio: number;
}

export interface CryptoResult {
  nodes: number;
  lag: LagResult[];
  runs: CryptoRun[];
  summary: CryptoSummary[];
  loadAverage: { start: number; end: number };
}

/** A random 256-bit cluster key (the same one for the in-process nodes and the CLI nodes of one run). */
function randomKey(): ClusterKeyConfig {
  return { id: 'k1', secret: randomBytes(32).toString('base64') };
}

export async function measureCrypto(natsUrl: string, natsPid: number, options: CryptoOptions): Promise<CryptoResult> {
  const loadStart = os.loadavg()[0]!;
  const key = randomKey();
  const lag: LagResult[] = [];
  for (const mode of ['async', 'ack'] as const) {
    options.log(`crypto: lag ${mode}, ${options.nodes} nodes, no key / encrypt / sign interleaved`);
    const probes: LagProbe[] = [];
    try {
      for (const protection of PROTECTIONS) {
        probes.push(
          await LagProbe.open(natsUrl, {
            nodes: options.nodes,
            mode,
            ...(protection !== 'none' ? { protection: { keys: [key], mode: protection } } : {}),
          }),
        );
      }
      lag.push(...(await interleave(probes, options.lag)));
    } finally {
      for (const probe of probes) await probe.close();
    }
  }

  const t = options.throughput;
  const tag = Math.random().toString(36).slice(2, 8);
  const started: NodeHandle[] = [];
  const runs: CryptoRun[] = [];
  try {
    const clusters = new Map<Protection, NodeHandle[]>();
    for (const protection of PROTECTIONS) {
      options.log(`crypto: starting ${options.nodes} CLI nodes, protection ${protection}`);
      const keyArgs =
        protection === 'none' ? [] : ['--cluster-key', `${key.id}:${key.secret}`, '--protection', protection];
      const outcomes = await Promise.allSettled(
        Array.from({ length: options.nodes }, (_, i) =>
          startNode({
            cluster: `bench-crypto-${protection}-${tag}`,
            node: `n${i + 1}`,
            nats: natsUrl,
            extraArgs: ['--log-level', 'warn', ...keyArgs],
            readyTimeoutMs: 60_000,
          }),
        ),
      );
      const nodes = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      started.push(...nodes);
      const failed = outcomes.find((o) => o.status === 'rejected');
      if (failed) throw failed.reason;
      clusters.set(protection, nodes);
    }
    const cookies = new Map<Protection, string[]>();
    for (const [protection, nodes] of clusters) {
      const target = nodes[0]!;
      await waitFor(
        `${target.node} (${protection}) to see ${options.nodes - 1} ready member(s)`,
        async () => (await clusterView(target)).members.filter((m) => !m.self && m.ready).length === options.nodes - 1,
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      cookies.set(protection, await createSessions(target, t.connections));
    }
    options.log(`crypto: warming up ${t.warmupSec}s on each target`);
    for (const protection of PROTECTIONS)
      await cannon(clusters.get(protection)![0]!, cookies.get(protection)!, t.warmupSec);
    for (let r = 1; r <= t.rounds; r++) {
      for (const protection of PROTECTIONS) {
        const [target, ...peers] = clusters.get(protection)!;
        const run: CryptoRun = {
          protection,
          round: r,
          ...(await measureRun(target!, peers, natsPid, cookies.get(protection)!, t.durationSec)),
        };
        runs.push(run);
        options.log(
          `crypto: ${protection.padEnd(7)} round ${r}: ${run.reqPerSec} req/s, latency avg ${run.latencyAvgMs} ms p99 ${run.latencyP99Ms} ms, target ${run.targetCpuUsPerReq} us CPU/req, errors ${run.errors}, non-2xx ${run.non2xx}`,
        );
      }
    }
  } finally {
    await Promise.all(started.map((node) => node.stop()));
  }
  const best = (protection: Protection) =>
    runs.filter((r) => r.protection === protection).reduce((a, b) => (b.reqPerSec > a.reqPerSec ? b : a));
  const meanCpu = (protection: Protection) => {
    const xs = runs.filter((r) => r.protection === protection).map((r) => r.targetCpuUsPerReq);
    return round(xs.reduce((a, b) => a + b, 0) / xs.length, 0);
  };
  const base = { best: best('none'), cpu: meanCpu('none') };
  const summary = PROTECTIONS.map((protection): CryptoSummary => {
    const b = best(protection);
    const cpu = meanCpu(protection);
    return {
      protection,
      best: b,
      targetCpuUsPerReq: cpu,
      ratio: round(b.reqPerSec / base.best.reqPerSec, 3),
      cpuRatio: round(cpu / base.cpu, 3),
    };
  });
  return { nodes: options.nodes, lag, runs, summary, loadAverage: { start: loadStart, end: os.loadavg()[0]! } };
}
