/**
 * `npm run bench`: NATS floor, replication lag (async and ack) and HTTP throughput ON vs OFF for 2 and
 * 3 nodes; the delta vs backup managers (traffic per write and lag for 2, 4, 8 nodes); message
 * protection cost (no key vs encrypt vs sign); failover (an idle member SIGKILLed: noticed and dropped;
 * one SIGKILLed while the survivors serve reads: noticed; the probes' idle cost; a member SIGKILLed right after a burst of writes: first correct read and next write on a
 * survivor; one server of a 3-server NATS cluster SIGKILLed under ack load); persistence (DynamoDB coalescing, join from the
 * DynamoDB snapshot + JetStream vs from a peer); memory (heap bytes per session held); scale (backup
 * traffic per write from 2 to 16 node processes).
 *
 * Environment:
 * - `BENCH_SECTIONS=floor,lag,throughput,managers,crypto,failover,persistence,memory,scale` (default all; `lag` runs the floor
 *   with it, interleaved, since the floor is its baseline);
 * - `BENCH_QUICK=1` shrinks every phase (for trying the script, not for figures);
 * - `BENCH_ROUNDS=N` sets the ON/OFF pairs of the throughput section;
 * - `BENCH_MANAGER_SIZES=2,4,8` the cluster sizes of the managers section, `BENCH_SCALE_SIZES=2,4,8,16`
 *   those of the scale section; `BENCH_MEMORY_SESSIONS=100000` the sessions of the memory section,
 *   `BENCH_MEMORY_TOMCAT=0` leaves out its Tomcat measurement (Debian's tomcat10 and a JDK; skipped without them);
 * - `BENCH_PERSIST_SIZES=10000,100000` the session counts joined with; `BENCH_PERSIST_BUDGET_SEC=200`
 *   the persistence section's budget (a size that would exceed it is replaced by 50,000).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startNatsServer, type NatsServerHandle } from '../functions/launch/index.ts';
import { measureCrypto } from './crypto.ts';
import { measureFailover } from './failover.ts';
import { FloorProbe, type FloorResult } from './floor.ts';
import { LagProbe, type LagResult } from './lag.ts';
import { measureManagers } from './managers.ts';
import { measureMemory } from './memory.ts';
import { measurePersistence } from './persistence.ts';
import { measureScale } from './scale.ts';
import { formatReport, SECTIONS, type BenchReport, type Section } from './report.ts';
import { measureThroughput } from './throughput.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const SIZES = [2, 3];

function selectedSections(): Section[] {
  const raw = process.env.BENCH_SECTIONS?.trim();
  if (!raw || raw === 'all') return [...SECTIONS];
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new Error(`BENCH_SECTIONS: unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.join(', ')}`);
  return SECTIONS.filter((s) => names.includes(s));
}

/** A comma-separated list of positive integers from the environment, or `fallback`. */
function intList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return fallback;
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`${name} must be positive integers, got "${raw}"`);
  return list;
}

function persistSizes(): number[] {
  const raw = process.env.BENCH_PERSIST_SIZES;
  if (!raw) return QUICK ? [1000, 3000] : [10_000, 100_000];
  const sizes = raw.split(',').map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`BENCH_PERSIST_SIZES must be positive integers, got "${raw}"`);
  return sizes.sort((a, b) => a - b);
}

const SETTINGS: BenchReport['settings'] = {
  floor: { n: QUICK ? 300 : 2400, warmup: QUICK ? 50 : 500, payloadBytes: 400, replyBytes: 120 },
  lag: { n: QUICK ? 200 : 1600, warmup: QUICK ? 50 : 600, chunks: 4 },
  throughput: {
    connections: 20,
    durationSec: QUICK ? 2 : 6,
    warmupSec: QUICK ? 1 : 2,
    rounds: Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 2)),
    reads: QUICK ? 300 : 2000,
  },
  managers: {
    sizes: intList('BENCH_MANAGER_SIZES', [2, 4, 8]),
    writes: QUICK ? 60 : 300,
    sessionsPerNode: 10,
    burst: 20,
    lag: { n: QUICK ? 60 : 400, warmup: QUICK ? 20 : 100, chunks: QUICK ? 2 : 4 },
  },
  crypto: {
    nodes: 2,
    lag: { n: QUICK ? 60 : 800, warmup: QUICK ? 20 : 200, chunks: QUICK ? 2 : 4 },
    throughput: { connections: 20, durationSec: QUICK ? 2 : 5, warmupSec: QUICK ? 1 : 2, rounds: QUICK ? 1 : 2 },
  },
  memory: {
    sessions: intList('BENCH_MEMORY_SESSIONS', [QUICK ? 10_000 : 100_000])[0]!,
    attributeBytes: 1024,
    tomcat: process.env.BENCH_MEMORY_TOMCAT !== '0',
  },
  scale: {
    sizes: intList('BENCH_SCALE_SIZES', QUICK ? [2, 4] : [2, 4, 8, 16]),
    sessionsPerNode: 8,
    writes: QUICK ? 200 : 1000,
    concurrency: 16,
  },
  failover: {
    kills: QUICK ? 1 : 5,
    idleSec: QUICK ? 2 : 5,
    serverLossSec: QUICK ? 2 : 4,
    burstSessions: QUICK ? 200 : 1000,
  },
  persistence: {
    sizes: persistSizes(),
    joins: QUICK ? 1 : 2,
    seedConcurrency: 256,
    coalesce: { sessions: 200, writesPerSec: 2000, durationSec: QUICK ? 2 : 5 },
    budgetSec: Number(process.env.BENCH_PERSIST_BUDGET_SEC ?? 200),
    fallbackSize: 50_000,
  },
};

const started = performance.now();
const log = (line: string) =>
  process.stderr.write(
    `[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s load ${os.loadavg()[0]!.toFixed(1).padStart(4)}] ${line}\n`,
  );

function natsServerVersion(): string {
  try {
    return execFileSync('nats-server', ['--version'], { encoding: 'utf8' })
      .trim()
      .replace(/^nats-server:\s*/, '');
  } catch {
    return 'unknown';
  }
}

/**
 * Floor and lag for one cluster size, interleaved in chunks (floor, lag async, floor, lag async, ...
 * then the same with ack) so both see the same machine load; the floor aggregates all its chunks.
 * Without `withLag`, the floor alone.
 */
async function measureLatency(
  url: string,
  nodes: number,
  withLag: boolean,
): Promise<{ floor: FloorResult; lag: LagResult[] }> {
  const { floor: fs, lag: ls } = SETTINGS;
  const modes = ['async', 'ack'] as const;
  const floor = await FloorProbe.open(url, {
    peers: nodes - 1,
    payloadBytes: fs.payloadBytes,
    replyBytes: fs.replyBytes,
  });
  const lag: LagResult[] = [];
  try {
    log(`${nodes} nodes: NATS floor warm-up`);
    await floor.run(fs.warmup, false);
    if (!withLag) {
      await floor.run(fs.n, true);
      return { floor: floor.result(), lag };
    }
    for (const mode of modes) {
      log(`${nodes} nodes: replication lag, send ${mode}, interleaved with the floor`);
      const probe = await LagProbe.open(url, { nodes, mode });
      try {
        await probe.run(ls.warmup, false);
        for (let chunk = 0; chunk < ls.chunks; chunk++) {
          await floor.run(Math.ceil(fs.n / (ls.chunks * modes.length)), true);
          await probe.run(Math.ceil(ls.n / ls.chunks), true);
        }
        lag.push(probe.result());
      } finally {
        await probe.close();
      }
    }
    return { floor: floor.result(), lag };
  } finally {
    await floor.close();
  }
}

async function main(): Promise<void> {
  const sections = selectedSections();
  const has = (s: Section) => sections.includes(s);
  const loadStart = os.loadavg()[0]!;
  log(
    `sections: ${sections.join(', ')}${QUICK ? ' (quick)' : ''}; ${os.availableParallelism()} CPU(s), load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const report: BenchReport = {
    command: 'npm run bench',
    date: new Date().toISOString(),
    node: process.version,
    natsServer: natsServerVersion(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    loadAverage: { start: loadStart, end: loadStart },
    sections,
    quick: QUICK,
    settings: SETTINGS,
    errors: {},
    durationSec: 0,
  };
  /** Runs one section; a failure is reported and the next section still runs. */
  const section = async (name: Section, run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      report.errors[name] = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`section ${name} failed: ${report.errors[name]}`);
    }
  };

  let nats: NatsServerHandle | undefined;
  try {
    if (sections.some((s) => s !== 'persistence' && s !== 'memory')) {
      nats = await startNatsServer();
      log(`nats-server ${nats.url} (pid ${nats.pid})`);
    }
    const url = nats?.url ?? '';
    const pid = nats?.pid ?? 0;
    if (has('floor') || has('lag')) {
      await section(has('lag') ? 'lag' : 'floor', async () => {
        const floor: FloorResult[] = [];
        const lag: LagResult[] = [];
        for (const nodes of SIZES) {
          const { floor: f, lag: l } = await measureLatency(url, nodes, has('lag'));
          floor.push(f);
          lag.push(...l);
        }
        report.floor = floor;
        if (has('lag')) report.lag = lag;
      });
    }
    if (has('throughput')) {
      await section('throughput', async () => {
        log('throughput over HTTP');
        report.throughput = await measureThroughput(url, pid, { sizes: SIZES, ...SETTINGS.throughput, log });
      });
    }
    if (has('managers')) {
      await section('managers', async () => {
        report.managers = await measureManagers(url, pid, { ...SETTINGS.managers, log });
      });
    }
    if (has('crypto')) {
      await section('crypto', async () => {
        report.crypto = await measureCrypto(url, pid, { ...SETTINGS.crypto, log });
      });
    }
    if (has('memory')) {
      await section('memory', async () => {
        report.memory = await measureMemory({ ...SETTINGS.memory, log });
      });
    }
    if (has('scale')) {
      await section('scale', async () => {
        report.scale = await measureScale(url, { ...SETTINGS.scale, log });
      });
    }
    if (has('failover')) {
      await section('failover', async () => {
        report.failover = await measureFailover(url, { ...SETTINGS.failover, log });
      });
    }
    if (has('persistence')) {
      await section('persistence', async () => {
        report.persistence = await measurePersistence({ ...SETTINGS.persistence, log });
      });
    }
  } finally {
    await nats?.stop();
  }
  report.loadAverage.end = os.loadavg()[0]!;
  report.durationSec = (performance.now() - started) / 1000;
  const dir = join(REPO_ROOT, '.cache');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${formatReport(report)}\n\nJSON: .cache/bench.json\n`);
  if (Object.keys(report.errors).length > 0) process.exitCode = 1;
}

/** The bench is set through the environment (see the header); an argument gets the usage, never a run. */
function usage(args: readonly string[]): void {
  if (args.length === 0) return;
  const help = args.every((arg) => arg === '--help' || arg === '-h');
  (help ? process.stdout : process.stderr).write(
    `${help ? '' : `bench: unexpected argument(s) ${args.join(' ')}\n`}usage: [BENCH_SECTIONS=${SECTIONS.join(',')}] ` +
      '[BENCH_QUICK=1] [BENCH_ROUNDS=N] npm run bench\n' +
      'sections run in that order; more settings (cluster sizes, session counts) are documented in bench/run.ts.\n',
  );
  process.exit(help ? 0 : 2);
}

usage(process.argv.slice(2));
main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
