/** `npm run bench`: NATS floor, replication lag (async and ack) and HTTP throughput ON vs OFF, for 2 and 3 nodes. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerHandle } from '../test/kit/nats-server.ts';
import { REPO_ROOT } from '../test/kit/node-process.ts';
import { FloorProbe, type FloorResult } from './floor.ts';
import { LagProbe, type LagResult } from './lag.ts';
import { formatReport, type BenchReport } from './report.ts';
import { measureThroughput } from './throughput.ts';

/** `BENCH_QUICK=1` shrinks every phase (for trying the script, not for figures); `BENCH_ROUNDS=N` sets the ON/OFF pairs. */
const QUICK = process.env.BENCH_QUICK === '1';
const SIZES = [2, 3];
const SETTINGS: BenchReport['settings'] = {
  floor: { n: QUICK ? 300 : 2400, warmup: QUICK ? 50 : 500, payloadBytes: 400, replyBytes: 120 },
  lag: { n: QUICK ? 200 : 1600, warmup: QUICK ? 50 : 600, chunks: 4 },
  throughput: { connections: 20, durationSec: QUICK ? 2 : 6, warmupSec: QUICK ? 1 : 2, rounds: Number(process.env.BENCH_ROUNDS ?? 2) },
};

const started = performance.now();
const log = (line: string) => process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);

function natsServerVersion(): string {
  try {
    return execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim().replace(/^nats-server:\s*/, '');
  } catch {
    return 'unknown';
  }
}

/**
 * Floor and lag for one cluster size, interleaved in chunks (floor, lag async, floor, lag async, ...
 * then the same with ack) so both see the same machine load; the floor aggregates all its chunks.
 */
async function measureLatency(url: string, nodes: number): Promise<{ floor: FloorResult; lag: LagResult[] }> {
  const { floor: fs, lag: ls } = SETTINGS;
  const modes = ['async', 'ack'] as const;
  const floor = await FloorProbe.open(url, { peers: nodes - 1, payloadBytes: fs.payloadBytes, replyBytes: fs.replyBytes });
  const lag: LagResult[] = [];
  try {
    log(`${nodes} nodes: NATS floor warm-up`);
    await floor.run(fs.warmup, false);
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
  const loadStart = os.loadavg()[0]!;
  let nats: NatsServerHandle | undefined;
  try {
    nats = await startNatsServer();
    log(`nats-server ${nats.url} (pid ${nats.pid})`);
    const floor: FloorResult[] = [];
    const lag: LagResult[] = [];
    for (const nodes of SIZES) {
      const { floor: f, lag: l } = await measureLatency(nats.url, nodes);
      floor.push(f);
      lag.push(...l);
    }
    log('throughput over HTTP');
    const throughput = await measureThroughput(nats.url, nats.pid, { sizes: SIZES, ...SETTINGS.throughput, log });

    const report: BenchReport = {
      command: 'npm run bench',
      date: new Date().toISOString(),
      node: process.version,
      natsServer: natsServerVersion(),
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      loadAverage: { start: loadStart, end: os.loadavg()[0]! },
      settings: SETTINGS,
      floor,
      lag,
      throughput,
      durationSec: (performance.now() - started) / 1000,
    };
    const dir = join(REPO_ROOT, '.cache');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'bench.json'), `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`${formatReport(report)}\n\nJSON: .cache/bench.json\n`);
  } finally {
    await nats?.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
