/** Formats benchmark results as a markdown report (pasteable into the README). */
import type { CryptoOptions, CryptoResult } from './crypto.ts';
import { type FailoverOptions, type FailoverResult, formatFailover } from './failover.ts';
import type { FloorResult } from './floor.ts';
import type { LagResult } from './lag.ts';
import type { ManagersOptions, ManagersResult, TrafficRow } from './managers.ts';
import type { MemoryOptions, MemoryResult } from './memory.ts';
import type { PersistenceOptions, PersistenceResult } from './persistence.ts';
import type { ScaleOptions, ScaleResult } from './scale.ts';
import type { Summary } from './stats.ts';
import type { ThroughputRun, ThroughputSummary } from './throughput.ts';

/** The sections `BENCH_SECTIONS` selects (default all). */
export const SECTIONS = [
  'floor',
  'lag',
  'throughput',
  'managers',
  'crypto',
  'failover',
  'persistence',
  'memory',
  'scale',
] as const;
export type Section = (typeof SECTIONS)[number];

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
  /** Sections run (`BENCH_SECTIONS`), and whether `BENCH_QUICK=1` shrank them. */
  sections: Section[];
  quick: boolean;
  settings: {
    floor: { n: number; warmup: number; payloadBytes: number; replyBytes: number };
    lag: { n: number; warmup: number; chunks: number };
    throughput: { connections: number; durationSec: number; warmupSec: number; rounds: number; reads: number };
    managers: Omit<ManagersOptions, 'log'>;
    crypto: Omit<CryptoOptions, 'log'>;
    failover: Omit<FailoverOptions, 'log'>;
    persistence: Omit<PersistenceOptions, 'log'>;
    memory: Omit<MemoryOptions, 'log'>;
    scale: Omit<ScaleOptions, 'log'>;
  };
  floor?: FloorResult[];
  lag?: LagResult[];
  throughput?: { runs: ThroughputRun[]; summary: ThroughputSummary[] };
  managers?: ManagersResult;
  crypto?: CryptoResult;
  failover?: FailoverResult;
  persistence?: PersistenceResult;
  memory?: MemoryResult;
  scale?: ScaleResult;
  /** Sections that failed, with the error. */
  errors: Partial<Record<Section, string>>;
  durationSec: number;
}

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const num = (x: number, digits = 2) => (Number.isFinite(x) ? String(Number(x.toFixed(digits))) : 'n/a');
const load = (l: { start: number; end: number }) => `load average ${l.start.toFixed(2)} -> ${l.end.toFixed(2)}`;
const ratio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a');
const pair = (s: Summary) => `${ms(s.p50)} / ${ms(s.p99)}`;
const pct = (x: number) => `${(100 * x).toFixed(0)} %`;

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** The markdown report. */
export function formatReport(r: BenchReport): string {
  const out: string[] = [];
  out.push(`## Benchmark`);
  out.push('');
  out.push(
    `\`${r.command}\`${r.quick ? ' (BENCH_QUICK=1: smoke run, not for figures)' : ''} on ${r.date} · Node ${r.node} · nats-server ${r.natsServer} · ${r.cpus} CPU(s) (${r.cpuModel}) · ` +
      `nats-server (and DynamoDB Local) started by the benchmark · everything (nodes, servers, load generator) shares this machine · load average ${r.loadAverage.start.toFixed(2)} at start, ${r.loadAverage.end.toFixed(2)} at end · took ${r.durationSec.toFixed(0)} s · sections: ${r.sections.join(', ')}`,
  );
  out.push('');
  let section = 0;
  const heading = (title: string) => {
    out.push(`### ${++section}. ${title}`);
    out.push('');
  };
  const floors = r.floor ?? [];
  const floorOf = (nodes: number) => floors.find((f) => f.peers === nodes - 1);

  if (floors.length > 0) {
    heading('Floor: raw NATS publish -> subscribe (ms, p50 / p99)');
    out.push(
      `One publisher connection, one subscriber connection per peer, all in this process; ${r.settings.floor.payloadBytes}-byte payload, ` +
        `paced one at a time, ${r.settings.floor.n} messages after ${r.settings.floor.warmup} warm-up, sent in chunks interleaved with the lag measurement below so both see the same machine load. Round trip: every peer answers ${r.settings.floor.replyBytes} bytes and the publisher waits for all answers.`,
    );
    out.push('');
    out.push(
      table(
        ['nodes', 'peers', 'one-way to B', 'one-way to all peers', 'round trip, all peers'],
        floors.map((f) => [
          String(f.peers + 1),
          String(f.peers),
          pair(f.oneWayToB),
          pair(f.oneWayToAll),
          pair(f.roundTripAll),
        ]),
      ),
    );
    out.push('');
  }

  if (r.lag && r.lag.length > 0) {
    const lags = r.lag;
    heading("Replication lag: write on A -> visible in B's `manager.find(key)` (ms)");
    out.push(
      `In-process nodes, each with its own NATS connection (\`createCluster\` + \`NatsChannel\` with \`noEcho\` like the CLI + demo app, \`app.request('POST /counter')\` on A), ` +
        `${r.settings.lag.n} writes after ${r.settings.lag.warmup} warm-up, one at a time. Visibility is checked right after each delivery on B (a pass-through channel wrapper) and right after B records the write's lag, lag counts from the start of the request on A. ` +
        `Ratios divide by the floor's one-way-to-B figure of the same size (target: lag p50 <= 2x floor p50).`,
    );
    out.push('');
    out.push(
      table(
        [
          'nodes',
          'send',
          'lag to B p50',
          'p50 / floor p50',
          'lag to B p99',
          'p99 / floor p99',
          'lag to all p50 / p99',
          'request p50 / p99',
          'A: request -> publish p50',
          'publish -> B receives p50',
          'B: receive -> applied p50',
          'delta bytes',
        ],
        lags.map((l) => {
          const f = floorOf(l.nodes);
          return [
            String(l.nodes),
            l.mode,
            ms(l.lagToB.p50),
            f ? ratio(l.lagToB.p50 / f.oneWayToB.p50) : 'n/a',
            ms(l.lagToB.p99),
            f ? ratio(l.lagToB.p99 / f.oneWayToB.p99) : 'n/a',
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
    const ack = lags.filter((l) => l.mode === 'ack');
    if (ack.length > 0) {
      out.push('');
      out.push(
        `\`ack\` request latency vs the round-trip floor: ` +
          ack
            .map(
              (l) =>
                `${l.nodes} nodes ${ms(l.request.p50)} ms p50 = ${ratio(l.request.p50 / (floorOf(l.nodes)?.roundTripAll.p50 ?? Number.NaN))} the round-trip floor p50`,
            )
            .join('; ') +
          `. Ack timeouts: ${ack.map((l) => l.acksTimedOut).join(', ')}.`,
      );
    }
    out.push('');
  }

  if (r.throughput) formatThroughput(r, r.throughput, heading, out);
  if (r.managers) formatManagers(r, r.managers, heading, out);
  if (r.crypto) formatCrypto(r, r.crypto, heading, out);
  if (r.failover) {
    heading('Failover: a killed member noticed without traffic, a NATS cluster server lost under load');
    out.push(...formatFailover(r.failover, r.settings.failover), '');
  }
  if (r.persistence) formatPersistence(r, r.persistence, heading, out);
  if (r.memory) formatMemory(r.memory, heading, out);
  if (r.scale) formatScale(r, r.scale, heading, out);

  const failed = Object.entries(r.errors);
  if (failed.length > 0) {
    out.push(
      `**Sections that failed:** ${failed.map(([name, error]) => `${name}: ${String(error).split('\n')[0]}`).join('; ')}`,
    );
    out.push('');
  }
  return out.join('\n').trimEnd();
}

type Heading = (title: string) => void;

/** Mean CPU per request of each part of an N-node ON run, `target + peers + nats-server + load generator` in µs. */
function machineCpu(runs: readonly ThroughputRun[], nodes: number): string {
  const on = runs.filter((r) => r.nodes === nodes && r.replication === 'on');
  const mean = (part: keyof ThroughputRun['cpuUsPerReq']) =>
    Math.round(on.reduce((sum, r) => sum + r.cpuUsPerReq[part], 0) / Math.max(1, on.length));
  return `${mean('target')} + ${mean('peers')} + ${mean('natsServer')} + ${mean('loadGenerator')}`;
}

function formatThroughput(
  r: BenchReport,
  tp: NonNullable<BenchReport['throughput']>,
  heading: Heading,
  out: string[],
): void {
  const t = r.settings.throughput;
  heading('Throughput: `POST /counter` over HTTP');
  out.push(
    `CLI node processes (\`node bin/session-replication.js serve --log-level warn\`), autocannon ${t.connections} connections, each with its own pre-created session, ` +
      `${t.durationSec} s per run after ${t.warmupSec} s warm-up; ON = the target is one node of an N-node NATS cluster, OFF = the same CLI without \`--nats\` (in-process channel, no peers). ` +
      `ON and OFF alternate, ${t.rounds} runs each; best run shown (target: ON >= 85 % of OFF).`,
  );
  out.push('');
  out.push(
    table(
      [
        'nodes',
        'ON req/s',
        'OFF req/s',
        'ON / OFF',
        'ON latency avg / p99 (ms)',
        'OFF latency avg / p99 (ms)',
        'target CPU/request ON / OFF (us, mean of runs)',
        'OFF / ON CPU per request',
        'machine CPU/request ON: target + peers + nats-server + load generator (us)',
        'CPU ceiling of ON / OFF',
      ],
      tp.summary.map((s) => [
        String(s.nodes),
        String(s.on.reqPerSec),
        String(s.off.reqPerSec),
        pct(s.ratio),
        `${s.on.latencyAvgMs} / ${s.on.latencyP99Ms}`,
        `${s.off.latencyAvgMs} / ${s.off.latencyP99Ms}`,
        `${s.targetCpuUsPerReq.on} / ${s.targetCpuUsPerReq.off}`,
        pct(s.cpuRatio),
        machineCpu(tp.runs, s.nodes),
        pct(s.cpuCeiling),
      ]),
    ),
  );
  out.push('');
  out.push(
    `CPU ceiling of ON / OFF: each run's rate is at most one core over the target's CPU per request (one thread) and at most the ${r.cpus} cores over the machine's ` +
      `(target + peers + nats-server + load generator; OFF: target + load generator), means of the runs; the ceiling divides ON's bound by OFF's. ` +
      `With replication ON the peers and nats-server run on the same ${r.cpus} cores as the target and the load generator (see the CPU columns below), ` +
      `so ON/OFF req/s here also measures that contention. The last column (OFF / ON target CPU per request) is the ON/OFF throughput to expect ` +
      `when the target alone is CPU-bound. OFF is not free of replication work: the in-process channel still encodes each delta and delivers it back to the node itself, which decodes it.`,
  );
  out.push('');
  out.push(
    `Reads: ${t.reads} sequential \`GET /session\` per run from one keep-alive client with one session's cookie (the cookie is never updated, as in the anchor bench's lag trials), ` +
      `alternating ON and OFF, ${t.rounds} runs each, pooled. ON reads on a peer of the node that wrote the session (the read whose round trip bounds the replication lag), OFF on the replication-off node.`,
  );
  out.push('');
  out.push(
    table(
      ['nodes', 'ON read p50 / p90 / p99 (ms)', 'OFF read p50 / p90 / p99 (ms)', 'target CPU/read ON / OFF (us)'],
      tp.summary.map((s) => [
        String(s.nodes),
        `${ms(s.reads.on.latency.p50)} / ${ms(s.reads.on.latency.p90)} / ${ms(s.reads.on.latency.p99)}`,
        `${ms(s.reads.off.latency.p50)} / ${ms(s.reads.off.latency.p90)} / ${ms(s.reads.off.latency.p99)}`,
        `${s.reads.on.targetCpuUsPerReq} / ${s.reads.off.targetCpuUsPerReq}`,
      ]),
    ),
  );
  out.push('');
  out.push(`All runs (CPU as % of one core during the run; ${r.cpus} cores in total):`);
  out.push('');
  out.push(
    runsTable(
      tp.runs.map((x) => ({ label: [String(x.nodes), x.replication, String(x.round)], run: x })),
      ['nodes', 'replication', 'run'],
    ),
  );
  out.push('');
}

function runsTable(rows: { label: string[]; run: ThroughputRunFigures }[], labels: string[]): string {
  return table(
    [
      ...labels,
      'req/s',
      'latency avg / p99 (ms)',
      'errors / non-2xx',
      'deltas / req',
      'target CPU/req (us)',
      'CPU/req per peer (us)',
      'CPU target',
      'CPU peers',
      'CPU nats-server',
      'CPU autocannon',
    ],
    rows.map(({ label, run: x }) => [
      ...label,
      String(x.reqPerSec),
      `${x.latencyAvgMs} / ${x.latencyP99Ms}`,
      `${x.errors} / ${x.non2xx}`,
      String(x.deltasPerRequest),
      String(x.targetCpuUsPerReq),
      String(x.peerCpuUsPerReq),
      `${x.cpu.target} %`,
      `${x.cpu.peers} %`,
      `${x.cpu.natsServer} %`,
      `${x.cpu.loadGenerator} %`,
    ]),
  );
}

type ThroughputRunFigures = Omit<ThroughputRun, 'nodes' | 'replication' | 'round'>;

function formatManagers(r: BenchReport, m: ManagersResult, heading: Heading, out: string[]): void {
  const s = r.settings.managers;
  heading('Managers: delta (all-to-all) vs backup (primary/backup) — when to choose which');
  out.push(
    `In-process nodes on one nats-server (each its own NATS connection, \`noEcho\`), ${s.sessionsPerNode} sessions per node created on that node, then ${s.writes} writes (\`POST\` of a counter attribute) spread over every session, each on its session's primary (sticky), one at a time ` +
      `(the next write starts in the next event-loop turn, so async writes are not batched together); "${s.burst} at once" = the same writes started ${s.burst} at a time on distinct sessions in one event-loop turn, as concurrent requests would (the delta manager sends one turn's async deltas of a node as one message, the backup manager one copy per write). Counts are the nodes' own stats counters (\`stats.sent\` / \`stats.received\` by kind, \`bytesSent\` / \`bytesReceived\`) summed over every node, ` +
      `before and after the writes, per write; membership traffic (hb, ping, pong) is left out (heartbeats every 10 s here, their bytes counted on the wire by a channel wrapper and subtracted). ` +
      `Deliveries = replication messages received and accepted, over all nodes. CPU = this process (every node and the requests) and nats-server, per write. Ratios: backup / delta at the same size and send mode. ${load(m.loadAverage)}.`,
  );
  out.push('');
  const deltaRow = (x: TrafficRow) =>
    m.traffic.find(
      (d) => d.manager === 'delta' && d.nodes === x.nodes && d.mode === x.mode && d.concurrency === x.concurrency,
    );
  const send = (x: TrafficRow) => (x.concurrency > 1 ? `${x.mode}, ${x.concurrency} at once` : x.mode);
  const kinds = (k: Record<string, number>) =>
    Object.entries(k)
      .map(([kind, n]) => `${num(n)} ${kind}`)
      .join(' + ') || '0';
  out.push(
    table(
      [
        'nodes',
        'manager',
        'send',
        'sent / write',
        'deliveries / write',
        'delivered kinds',
        'bytes sent / write',
        'bytes received / write',
        'deliveries vs delta',
        'bytes received vs delta',
        'CPU / write: process, nats-server (us)',
      ],
      m.traffic.map((x) => {
        const d = deltaRow(x);
        return [
          String(x.nodes),
          x.manager,
          send(x),
          num(x.sentPerWrite),
          num(x.deliveriesPerWrite),
          kinds(x.receivedByKind),
          int(x.bytesSentPerWrite),
          int(x.bytesReceivedPerWrite),
          d ? ratio(x.deliveriesPerWrite / d.deliveriesPerWrite) : 'n/a',
          d ? ratio(x.bytesReceivedPerWrite / d.bytesReceivedPerWrite) : 'n/a',
          `${int(x.processCpuUsPerWrite)}, ${int(x.natsCpuUsPerWrite)}`,
        ];
      }),
    ),
  );
  out.push('');
  if (m.lag.length > 0) {
    out.push(
      `Replication lag (ms): write on the primary A (demo app \`POST /counter\`) -> the new value visible in \`manager.find(key)\` on B: for delta the next node (and "all" = every other node), for backup the session's backup (the only other data holder). ` +
        `${s.lag.n} writes after ${s.lag.warmup} warm-up, delta and backup of the same size in ${s.lag.chunks} interleaved chunks.`,
    );
    out.push('');
    const rows: string[][] = [];
    for (const size of [...new Set(m.lag.map((l) => l.nodes))]) {
      for (const mode of ['async', 'ack'] as const) {
        const d = m.lag.find((l) => l.nodes === size && l.mode === mode && l.manager === 'delta');
        const b = m.lag.find((l) => l.nodes === size && l.mode === mode && l.manager === 'backup');
        if (!d || !b) continue;
        rows.push([
          String(size),
          mode,
          pair(d.lagToB),
          pair(d.lagToAll),
          pair(b.lagToB),
          ratio(b.lagToB.p50 / d.lagToB.p50),
          ratio(b.lagToB.p99 / d.lagToB.p99),
          `${ms(d.request.p50)} / ${ms(b.request.p50)}`,
          `${d.deltaBytes} / ${b.deltaBytes}`,
          `${d.acksTimedOut} / ${b.acksTimedOut}`,
        ]);
      }
    }
    out.push(
      table(
        [
          'nodes',
          'send',
          'delta: to B p50 / p99',
          'delta: to all p50 / p99',
          'backup: to backup p50 / p99',
          'backup / delta p50',
          'backup / delta p99',
          'request p50 delta / backup',
          'message bytes delta / backup',
          'ack timeouts delta / backup',
        ],
        rows,
      ),
    );
    out.push('');
  }
  const at = (manager: 'delta' | 'backup', nodes: number, concurrency = 1) =>
    m.traffic.find(
      (x) => x.manager === manager && x.nodes === nodes && x.mode === 'async' && x.concurrency === concurrency,
    );
  const largest = Math.max(...m.traffic.map((x) => x.nodes));
  const d = at('delta', largest);
  const b = at('backup', largest);
  const lines: string[] = [];
  if (d && b) {
    const sizes = [...new Set(m.traffic.map((x) => x.nodes))];
    lines.push(
      `- Deliveries per write (async): delta ${sizes.map((n) => num(at('delta', n)?.deliveriesPerWrite ?? Number.NaN)).join(' / ')}, backup ${sizes.map((n) => num(at('backup', n)?.deliveriesPerWrite ?? Number.NaN)).join(' / ')} for ${sizes.join(' / ')} nodes: ` +
        `delta grows with the cluster (every other node decodes every write), backup stays flat (one copy to the backup). At ${largest} nodes backup moves ${ratio(d.bytesReceivedPerWrite / b.bytesReceivedPerWrite)} fewer bytes per write and this process spent ${int(d.processCpuUsPerWrite)} vs ${int(b.processCpuUsPerWrite)} us of CPU per write.`,
    );
    const cheaperSizes = () => {
      const sizes = [...new Set(m.traffic.map((x) => x.nodes))].filter((n) => {
        const dn = at('delta', n, s.burst);
        const bn = at('backup', n, s.burst);
        return (
          dn &&
          bn &&
          dn.deliveriesPerWrite < bn.deliveriesPerWrite &&
          dn.bytesReceivedPerWrite < bn.bytesReceivedPerWrite
        );
      });
      return sizes.length > 0
        ? `Under such concurrency delta is the cheaper one on the wire at ${sizes.join(' and ')} nodes (fewer deliveries and bytes per write).`
        : '';
    };
    const dBurst = at('delta', largest, s.burst);
    const bBurst = at('backup', largest, s.burst);
    if (dBurst && bBurst) {
      lines.push(
        `- With ${s.burst} writes per event-loop turn (concurrent requests) the delta manager's async deltas of one turn share a message: at ${largest} nodes delta sends ${num(dBurst.sentPerWrite, 3)} messages per write ` +
          `but they still reach every node (${num(dBurst.deliveriesPerWrite, 2)} deliveries, ${int(dBurst.bytesReceivedPerWrite)} bytes received per write); backup sends ${num(bBurst.sentPerWrite, 2)} copy per write (${num(bBurst.deliveriesPerWrite, 2)} delivery, ${int(bBurst.bytesReceivedPerWrite)} bytes). ` +
          cheaperSizes(),
      );
    }
  }
  lines.push(
    '- Choose **delta** for small clusters, non-sticky load balancing (every node serves every session from memory, failover costs nothing), the JetStream log and the DynamoDB snapshot store (both work with the delta manager only), and ack writes that every member confirmed.',
    '- Choose **backup** when the cluster grows (traffic and CPU per write stay flat) or sessions are large, with sticky sessions: a request on a node that is neither primary nor backup fetches the session and takes it over (one extra round trip), and a lost primary is served by its backup.',
  );
  out.push(...lines);
  out.push('');
}

function formatCrypto(r: BenchReport, c: CryptoResult, heading: Heading, out: string[]): void {
  const s = r.settings.crypto;
  heading('Message protection cost: no key vs `encrypt` (AES-256-GCM) vs `sign` (HMAC-SHA256)');
  out.push(
    `One random 256-bit cluster key. Lag: ${c.nodes} in-process nodes per configuration as in the lag section, ${s.lag.n} writes after ${s.lag.warmup} warm-up, the three configurations in ${s.lag.chunks} interleaved chunks; ` +
      `with protection the receiver's delivery handler only starts the (asynchronous, WebCrypto) verification, so visibility is also checked right after B applied the write. ` +
      `Throughput: ${c.nodes}-node CLI clusters (\`--cluster-key k1:<base64>\` and \`--protection encrypt|sign\`), autocannon ${s.throughput.connections} connections on n1, ${s.throughput.durationSec} s per run, the three alternating, ${s.throughput.rounds} run(s) each, best run shown; CPU per request is the mean of the runs. Ratios: against no key, same run. ${load(c.loadAverage)}.`,
  );
  out.push('');
  const base = (mode: string) => c.lag.find((l) => l.mode === mode && l.protection === 'none');
  out.push(
    table(
      [
        'send',
        'protection',
        'lag to B p50',
        'vs no key',
        'lag to B p99',
        'vs no key',
        'A: request -> publish p50',
        'B: receive -> applied p50',
        'request p50 / p99',
        'message bytes',
        'ack timeouts',
      ],
      c.lag.map((l) => {
        const b = base(l.mode);
        return [
          l.mode,
          l.protection,
          ms(l.lagToB.p50),
          b ? ratio(l.lagToB.p50 / b.lagToB.p50) : 'n/a',
          ms(l.lagToB.p99),
          b ? ratio(l.lagToB.p99 / b.lagToB.p99) : 'n/a',
          ms(l.toPublish.p50),
          ms(l.receiveToAppliedB.p50),
          pair(l.request),
          String(l.deltaBytes),
          String(l.acksTimedOut),
        ];
      }),
    ),
  );
  out.push('');
  out.push(
    table(
      ['protection', 'req/s (best)', 'vs no key', 'latency avg / p99 (ms)', 'target CPU/request (us)', 'vs no key'],
      c.summary.map((x) => [
        x.protection,
        String(x.best.reqPerSec),
        pct(x.ratio),
        `${x.best.latencyAvgMs} / ${x.best.latencyP99Ms}`,
        String(x.targetCpuUsPerReq),
        ratio(x.cpuRatio),
      ]),
    ),
  );
  out.push('');
  out.push('All runs:');
  out.push('');
  out.push(
    runsTable(
      c.runs.map((x) => ({ label: [x.protection, String(x.round)], run: x })),
      ['protection', 'run'],
    ),
  );
  out.push('');
}

function formatPersistence(r: BenchReport, p: PersistenceResult, heading: Heading, out: string[]): void {
  const s = r.settings.persistence;
  heading('Persistence: DynamoDB snapshots + JetStream log');
  out.push(
    `Its own nats-server with JetStream and DynamoDB Local (the AWS jar, in memory, \`-Xmx256m\`, one JVM on this machine); in-process delta nodes, each with its own NATS connection; store: ${p.settings.shards} shards, ${p.settings.batchSize} items per transaction, ${p.settings.concurrency} in flight; snapshot interval ${p.coalescing.snapshotIntervalMs} ms. Section took ${p.durationSec.toFixed(0)} s, ${load(p.loadAverage)}. ` +
      `DynamoDB Local is an emulator that in effect serves one request at a time (on this machine 8 concurrent write transactions were slower than 1, and the 16 shard queries of a load slower in parallel than one after another), so DynamoDB times here are the emulator's on a shared box, not AWS's; the item counts are exact.`,
  );
  out.push('');
  const co = p.coalescing;
  out.push(
    `**Coalescing.** ${co.sessions} sessions, writes (\`POST\` of a counter, async) paced at ${co.targetWritesPerSec}/s for ${co.loadSec} s through the middleware of the snapshot leader; DynamoDB item writes counted from the snapshot writer's \`status.itemsWritten\` until everything was flushed (dirty 0, checkpoint = last log sequence).`,
  );
  out.push('');
  out.push(
    table(
      [
        'sessions',
        'session writes/s (target / achieved)',
        'session writes',
        'JetStream messages / write',
        'DynamoDB item writes',
        'item writes/s',
        'item writes / session write',
        'flushes',
        'failed writes',
      ],
      [
        [
          String(co.sessions),
          `${co.targetWritesPerSec} / ${co.sessionWritesPerSec}`,
          int(co.sessionWrites),
          num(co.logMessages / Math.max(1, co.sessionWrites), 3),
          int(co.itemWrites),
          int(co.itemWritesPerSec),
          num(co.ratio, 3),
          String(co.flushes),
          String(co.failed),
        ],
      ],
    ),
  );
  out.push('');
  out.push(
    `**Join.** A seed node (log + store) gets N sessions through its middleware (\`app.request\`, ${s.seedConcurrency} in parallel; two attributes each), then the benchmark waits until its snapshot writer flushed everything. ` +
      `A new node then joins: **snapshot** = with the log and the store (DynamoDB load of every shard in parallel, then JetStream replay from the checkpoint); **peer** = without them (state transfer pages from the seed node, ${'up to 1000 sessions / 512 KB each'}). ` +
      `Time = connect + \`createCluster\` + \`start()\` until ready; "log replayed" = JetStream messages after the snapshot's checkpoint (0 when the writer had caught up); the two paths alternate; the joiner is stopped before the next one. All in one process, so the donor's page building and the joiner's decoding share one event loop (the page protocol is request/response, so they would not overlap anyway); DynamoDB Local runs in its own JVM.`,
  );
  out.push('');
  if (p.reduced) {
    out.push(
      `**Reduced:** ${int(p.reduced.requested)} sessions were estimated to need about ${p.reduced.estimatedSec} s more on this machine (section budget ${p.reduced.budgetSec} s), so ${int(p.reduced.measured)} were measured instead.`,
    );
    out.push('');
  }
  out.push(
    table(
      [
        'sessions',
        'created in (s)',
        'created / s',
        'snapshot complete after (s) more',
        'items stored / s (from the first session)',
        'DynamoDB JVM CPU meanwhile',
        'JetStream messages',
      ],
      p.sizes.map((x) => [
        int(x.sessions),
        num(x.seedSec, 1),
        int(x.seedPerSec),
        num(x.flushWaitSec, 1),
        int(x.flushItemsPerSec),
        `${x.dynamodbCpuPct} %`,
        int(x.logMessages),
      ]),
    ),
  );
  out.push('');
  const best = (x: PersistenceResult['sizes'][number], path: 'snapshot' | 'peer') =>
    Math.min(...x.joins.filter((j) => j.path === path).map((j) => j.wallMs));
  out.push(
    table(
      [
        'sessions',
        'join from',
        'attempt',
        'join (ms)',
        'vs peer (best / best)',
        'state transfer (ms)',
        'DynamoDB load (ms)',
        'log replayed',
        'pages',
        'sessions held',
        'CPU ms: process / DynamoDB JVM / nats-server',
      ],
      p.sizes.flatMap((x) =>
        x.joins.map((j) => [
          int(x.sessions),
          j.path,
          String(j.attempt),
          int(j.wallMs),
          j.path === 'snapshot' && j.attempt === 1 ? ratio(best(x, 'snapshot') / best(x, 'peer')) : '',
          int(j.stateTransferMs),
          j.loadMs !== undefined ? int(j.loadMs) : '',
          j.replayed !== undefined ? String(j.replayed) : '',
          String(j.pages),
          `${int(j.held)}${j.held === x.sessions ? '' : ' (incomplete)'}`,
          `${int(j.cpuMs.process)} / ${int(j.cpuMs.dynamodb)} / ${int(j.cpuMs.nats)}`,
        ]),
      ),
    ),
  );
  out.push('');
  if (p.warnings.length > 0) {
    out.push(
      `Warnings logged by the nodes (${p.warnings.length}, first 5): ${p.warnings
        .slice(0, 5)
        .map((w) => `\`${w.replaceAll('`', "'")}\``)
        .join('; ')}`,
    );
    out.push('');
  }
}

function formatMemory(m: MemoryResult, heading: Heading, out: string[]): void {
  heading('Memory: heap bytes per session held');
  out.push(
    'One node alone on the in-process channel, in a fresh child process (`--expose-gc`, a full collection before each reading); ' +
      'the sessions are created through the session middleware (`app.request`, 64 at a time), each with 4 attributes of 256 characters; ' +
      `heap growth divided by the sessions. ${load(m.loadAverage)}; the section took ${m.durationSec} s.`,
  );
  out.push('');
  const t = m.tomcat;
  const joined = t.rows.find((x) => x.node === 'joined');
  const tomcatRows = t.rows.map((x) => ({
    label: x.node === 'joined' ? 'Tomcat DeltaManager, after the join' : 'Tomcat DeltaManager, serving node',
    row: x,
  }));
  out.push(
    table(
      [
        'node',
        'sessions',
        'attribute bytes / session',
        'heap bytes / session',
        'overhead beyond the attributes',
        'vs Tomcat after the join',
      ],
      [...m.rows.map((x) => ({ label: `this project, ${x.manager} manager`, row: x })), ...tomcatRows].map(
        ({ label, row }) => [
          label,
          int(row.sessions),
          int(row.attributeBytes),
          int(row.heapBytesPerSession),
          ratio(row.heapBytesPerSession / row.attributeBytes),
          joined ? ratio(row.heapBytesPerSession / joined.heapBytesPerSession) : 'n/a',
        ],
      ),
    ),
  );
  out.push('');
  if (t.skipped) out.push(`Tomcat not measured: ${t.skipped}.`);
  else if (t.error) out.push(`Tomcat measurement failed: \`${t.error.split('\n')[0]!.replaceAll('`', "'")}\`.`);
  else {
    out.push(
      `Tomcat: ${t.version}, ${t.java}; two instances in throwaway CATALINA_BASEs, one cluster (SimpleTcpCluster, DeltaManager, static membership on loopback), ` +
        'a servlet that creates a session and sets the same 4 attributes. The serving node created the sessions alone (its row is its growth over them); ' +
        `the other node then started and received all of them in the DeltaManager state transfer (its row is its heap after the join minus its heap after joining the 500 warm-up sessions). ` +
        `Heap: \`jcmd GC.run\` twice, then \`GC.heap_info\` (used). Creating the sessions took ${t.createSec} s, the join (JVM start to serving with every session) ${t.joinSec} s. ` +
        `JVM flags (\`jcmd VM.flags\`): \`${t.jvmFlags}\`.`,
    );
    out.push('');
    for (const x of t.rows)
      out.push(
        `- ${x.node === 'joined' ? 'after the join' : 'serving node'}: live bytes (\`GC.class_histogram\`) ${int(x.liveBytesPerSession)} / session; ` +
          `largest classes (bytes and instances per session): ${x.topClasses
            .map((c) => `${c.name} ${int(c.bytesPerSession)} (${num(c.instancesPerSession)})`)
            .join(', ')}.`,
      );
  }
  out.push('');
}

function formatScale(r: BenchReport, s: ScaleResult, heading: Heading, out: string[]): void {
  const o = r.settings.scale;
  heading('Scale: backup-manager traffic per write from 2 to 16 node processes');
  out.push(
    `\`session-replication serve --manager backup --send async\` processes on one nats-server; ${o.sessionsPerNode} sessions per node created on that node, ` +
      `then ${o.writes} \`POST /counter\` writes, ${o.concurrency} at a time, each on its session's primary. Counted from every node's \`/metrics\` ` +
      `(messages and bytes received); heartbeats, pings and pongs left out (their size measured on a 2 s idle window first). ${load(s.loadAverage)}.`,
  );
  out.push('');
  const first = s.rows[0];
  out.push(
    table(
      [
        'nodes',
        'deliveries / write',
        'kinds',
        'bytes received / write',
        `vs ${first?.nodes ?? '?'} nodes`,
        'heartbeat bytes / s (whole cluster)',
      ],
      s.rows.map((x) => [
        String(x.nodes),
        num(x.deliveriesPerWrite),
        Object.entries(x.receivedByKind)
          .map(([k, n]) => `${num(n)} ${k}`)
          .join(' + ') || '0',
        int(x.bytesReceivedPerWrite),
        first ? ratio(x.bytesReceivedPerWrite / first.bytesReceivedPerWrite) : 'n/a',
        int(x.heartbeatBytesPerSec),
      ]),
    ),
  );
  out.push('');
}
