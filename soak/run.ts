/**
 * `npm run soak -- --minutes N`: steady load through every node of a 3-node NATS cluster (real
 * processes), RSS of each node sampled every second; reports the memory slope, error counts and
 * whether every node converged. Not part of CI; its latest result goes in the README.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CookieClient, startNatsServer, startNode, type NodeHandle } from '../test/kit/index.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    nodes: { type: 'string', default: '3' },
    sessions: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '16' },
    manager: { type: 'string', default: 'delta' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'npm run soak -- [--minutes 10] [--nodes 3] [--sessions 500] [--concurrency 16] [--manager delta|backup]',
  );
  process.exit(0);
}
const minutes = Number(values.minutes);
const nodeCount = Number(values.nodes);
const sessionCount = Number(values.sessions);
const concurrency = Number(values.concurrency);

/** Resident set size of a process in MiB, from /proc. */
function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : NaN;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

const nats = await startNatsServer();
const nodes: NodeHandle[] = [];
const cluster = `soak${Date.now().toString(36)}`;
try {
  for (let i = 1; i <= nodeCount; i++) {
    nodes.push(
      await startNode({
        cluster,
        node: `n${i}`,
        nats: nats.url,
        manager: values.manager as 'delta',
        send: 'ack',
        extraArgs: ['--log-level', 'warn'],
      }),
    );
  }
  console.log(
    `soak: ${nodeCount} nodes (${values.manager}, ack), ${sessionCount} sessions, ${concurrency} workers, ${minutes} min`,
  );
  const clients = Array.from({ length: sessionCount }, () => new CookieClient());
  const expected = new Map<CookieClient, number>();
  const errors = { http: 0, network: 0, lost: 0 };
  let requests = 0;
  const samples: Record<string, Array<[number, number]>> = Object.fromEntries(nodes.map((n) => [n.node, []]));
  const started = Date.now();
  const end = started + minutes * 60_000;
  const sampler = setInterval(() => {
    const t = (Date.now() - started) / 60_000;
    for (const node of nodes) samples[node.node]!.push([t, rssMiB(node.pid)]);
  }, 1000);
  const progress = setInterval(() => {
    const rss = nodes.map((n) => `${n.node} ${samples[n.node]!.at(-1)?.[1].toFixed(0)} MiB`).join(', ');
    console.log(
      `  ${((Date.now() - started) / 60_000).toFixed(1)} min: ${requests} requests, errors ${JSON.stringify(errors)}, RSS ${rss}`,
    );
  }, 30_000);
  let next = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const client = clients[next++ % clients.length]!;
      const node = nodes[Math.floor(Math.random() * nodes.length)]!;
      try {
        const res = await client.request(node.url, 'POST', '/counter');
        requests++;
        if (res.status !== 200) errors.http++;
        else {
          const counter = (res.json as { counter: number }).counter;
          // Ack mode: every answered increment is on every node, so a counter never goes back.
          if (counter !== (expected.get(client) ?? 0) + 1) errors.lost++;
          expected.set(client, counter);
        }
      } catch {
        errors.network++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(sampler);
  clearInterval(progress);
  // Convergence: every node answers every session with the last counter.
  let diverged = 0;
  for (const [client, counter] of expected) {
    for (const node of nodes) {
      const res = await client.request(node.url, 'GET', '/session');
      if ((res.json as { attributes: { counter?: number } }).attributes.counter !== counter) diverged++;
    }
  }
  const report = {
    date: new Date().toISOString(),
    minutes,
    nodes: nodeCount,
    manager: values.manager,
    sessions: sessionCount,
    requests,
    requestsPerSecond: Math.round(requests / (minutes * 60)),
    errors,
    diverged,
    rss: Object.fromEntries(
      nodes.map((n) => {
        const points = samples[n.node]!;
        const secondHalf = points.slice(Math.floor(points.length / 2));
        return [
          n.node,
          {
            startMiB: +points[0]![1].toFixed(1),
            endMiB: +points.at(-1)![1].toFixed(1),
            maxMiB: +Math.max(...points.map((p) => p[1])).toFixed(1),
            slopeMiBPerMinSecondHalf: +slope(secondHalf).toFixed(3),
          },
        ];
      }),
    ),
  };
  mkdirSync('.cache', { recursive: true });
  writeFileSync('.cache/soak.json', JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report, null, 2));
  if (errors.http + errors.network + errors.lost + diverged > 0) process.exitCode = 1;
} finally {
  await Promise.all(nodes.map((n) => n.stop()));
  await nats.stop();
}
