/** Formats benchmark results as a markdown report (pasteable into the README). */
import type { FloorResult } from './floor.ts';
import type { LagResult } from './lag.ts';
import type { Summary } from './stats.ts';
import type { ThroughputRun, ThroughputSummary } from './throughput.ts';

/** Everything one `npm run bench` measured, as written to `.cache/bench.json`. */
export interface BenchReport {
  command: string;
  date: string;
  node: string;
  natsServer: string;
  cpus: number;
  cpuModel: string;
  /** 1-minute load average at the start and at the end (other work on the box skews the figures). */
  loadAverage: { start: number; end: number };
  settings: {
    floor: { n: number; warmup: number; payloadBytes: number; replyBytes: number };
    lag: { n: number; warmup: number; chunks: number };
    throughput: { connections: number; durationSec: number; warmupSec: number; rounds: number };
  };
  floor: FloorResult[];
  lag: LagResult[];
  throughput: { runs: ThroughputRun[]; summary: ThroughputSummary[] };
  durationSec: number;
}

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const ratio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a');
const pair = (s: Summary) => `${ms(s.p50)} / ${ms(s.p99)}`;
const pct = (x: number) => `${(100 * x).toFixed(0)} %`;

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The markdown report. */
export function formatReport(r: BenchReport): string {
  const floorOf = (nodes: number) => r.floor.find((f) => f.peers === nodes - 1)!;
  const out: string[] = [];
  out.push(`## Benchmark`);
  out.push('');
  out.push(
    `\`${r.command}\` on ${r.date} · Node ${r.node} · nats-server ${r.natsServer} · ${r.cpus} CPU(s) (${r.cpuModel}) · ` +
      `one local nats-server started by the benchmark · everything (nodes, nats-server, load generator) shares this machine · load average ${r.loadAverage.start.toFixed(2)} at start, ${r.loadAverage.end.toFixed(2)} at end · took ${r.durationSec.toFixed(0)} s`,
  );
  out.push('');

  out.push(`### 1. Floor: raw NATS publish -> subscribe (ms, p50 / p99)`);
  out.push('');
  out.push(
    `One publisher connection, one subscriber connection per peer, all in this process; ${r.settings.floor.payloadBytes}-byte payload, ` +
      `paced one at a time, ${r.settings.floor.n} messages after ${r.settings.floor.warmup} warm-up, sent in chunks interleaved with the lag measurement below so both see the same machine load. Round trip: every peer answers ${r.settings.floor.replyBytes} bytes and the publisher waits for all answers.`,
  );
  out.push('');
  out.push(
    table(
      ['nodes', 'peers', 'one-way to B', 'one-way to all peers', 'round trip, all peers'],
      r.floor.map((f) => [String(f.peers + 1), String(f.peers), pair(f.oneWayToB), pair(f.oneWayToAll), pair(f.roundTripAll)]),
    ),
  );
  out.push('');

  out.push(`### 2. Replication lag: write on A -> visible in B's \`manager.find(key)\` (ms)`);
  out.push('');
  out.push(
    `In-process nodes, each with its own NATS connection (\`createCluster\` + \`NatsChannel\` + demo app, \`app.request('POST /counter')\` on A), ` +
      `${r.settings.lag.n} writes after ${r.settings.lag.warmup} warm-up, one at a time. Visibility is checked right after each delivery on B (a pass-through channel wrapper), lag counts from the start of the request on A. ` +
      `Ratios divide by the floor's one-way-to-B figure of the same size (target: lag p50 <= 2x floor p50).`,
  );
  out.push('');
  out.push(
    table(
      ['nodes', 'send', 'lag to B p50', 'p50 / floor p50', 'lag to B p99', 'p99 / floor p99', 'lag to all p50 / p99', 'request p50 / p99', 'A: request -> publish p50', 'publish -> B receives p50', 'B: receive -> applied p50', 'delta bytes'],
      r.lag.map((l) => {
        const f = floorOf(l.nodes);
        return [
          String(l.nodes),
          l.mode,
          ms(l.lagToB.p50),
          ratio(l.lagToB.p50 / f.oneWayToB.p50),
          ms(l.lagToB.p99),
          ratio(l.lagToB.p99 / f.oneWayToB.p99),
          pair(l.lagToAll),
          pair(l.request),
          ms(l.toPublish.p50),
          ms(l.publishToReceiveB.p50),
          ms(l.receiveToAppliedB.p50),
          String(l.deltaBytes),
        ];
      }),
    ),
  );
  const ack = r.lag.filter((l) => l.mode === 'ack');
  if (ack.length > 0) {
    out.push('');
    out.push(
      `\`ack\` request latency vs the round-trip floor: ` +
        ack.map((l) => `${l.nodes} nodes ${ms(l.request.p50)} ms p50 = ${ratio(l.request.p50 / floorOf(l.nodes).roundTripAll.p50)} the round-trip floor p50`).join('; ') +
        `. Ack timeouts: ${ack.map((l) => l.acksTimedOut).join(', ')}.`,
    );
  }
  out.push('');

  const t = r.settings.throughput;
  out.push(`### 3. Throughput: \`POST /counter\` over HTTP`);
  out.push('');
  out.push(
    `CLI node processes (\`node bin/session-replication.js serve --log-level warn\`), autocannon ${t.connections} connections, each with its own pre-created session, ` +
      `${t.durationSec} s per run after ${t.warmupSec} s warm-up; ON = the target is one node of an N-node NATS cluster, OFF = the same CLI without \`--nats\` (in-process channel, no peers). ` +
      `ON and OFF alternate, ${t.rounds} runs each; best run shown (target: ON >= 85 % of OFF).`,
  );
  out.push('');
  out.push(
    table(
      ['nodes', 'ON req/s', 'OFF req/s', 'ON / OFF', 'ON latency avg / p99 (ms)', 'OFF latency avg / p99 (ms)', 'target CPU/request ON / OFF (us, mean of runs)', 'OFF / ON CPU per request'],
      r.throughput.summary.map((s) => [
        String(s.nodes),
        String(s.on.reqPerSec),
        String(s.off.reqPerSec),
        pct(s.ratio),
        `${s.on.latencyAvgMs} / ${s.on.latencyP99Ms}`,
        `${s.off.latencyAvgMs} / ${s.off.latencyP99Ms}`,
        `${s.targetCpuUsPerReq.on} / ${s.targetCpuUsPerReq.off}`,
        pct(s.cpuRatio),
      ]),
    ),
  );
  out.push('');
  out.push(
    `With replication ON the peers and nats-server run on the same ${r.cpus} cores as the target and the load generator (see the CPU columns below), ` +
      `so ON/OFF req/s here also measures that contention. The last column (OFF / ON target CPU per request) is the ON/OFF throughput to expect ` +
      `when the target alone is CPU-bound. OFF is not free of replication work: the in-process channel still encodes each delta and delivers it back to the node itself, which decodes it.`,
  );
  out.push('');
  out.push(`All runs (CPU as % of one core during the run; ${r.cpus} cores in total):`);
  out.push('');
  out.push(
    table(
      ['nodes', 'replication', 'run', 'req/s', 'latency avg / p99 (ms)', 'errors / non-2xx', 'deltas / req', 'target CPU/req (us)', 'CPU target', 'CPU peers', 'CPU nats-server', 'CPU autocannon'],
      r.throughput.runs.map((x) => [
        String(x.nodes),
        x.replication,
        String(x.round),
        String(x.reqPerSec),
        `${x.latencyAvgMs} / ${x.latencyP99Ms}`,
        `${x.errors} / ${x.non2xx}`,
        String(x.deltasPerRequest),
        String(x.targetCpuUsPerReq),
        `${x.cpu.target} %`,
        `${x.cpu.peers} %`,
        `${x.cpu.natsServer} %`,
        `${x.cpu.loadGenerator} %`,
      ]),
    ),
  );
  return out.join('\n');
}
