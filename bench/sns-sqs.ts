/**
 * Replication over SNS/SQS vs NATS on the same machine: 2 in-process cluster nodes per transport, a
 * write (`POST /counter` through the demo app on A) until B's manager holds the new value, one write
 * at a time, the two transports interleaved in chunks so both see the same machine load.
 *
 * Brokers run in their own processes, as in production: nats-server (test/kit) and fauxqs 1.9.2 (its
 * CLI). With AWS_ENDPOINT_URL set, that SNS/SQS endpoint is used instead of fauxqs (LocalStack, AWS).
 *
 *   node --import tsx bench/sns-sqs.ts [--n 600] [--chunks 6] [--json]
 */
import { ListTopicsCommand, SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { connect } from '@nats-io/transport-node';
import { stringify } from 'devalue';
import type { Hono } from 'hono';
import { createDemoApp } from '../functions/demo-app.ts';
import type { Channel } from '../lib/channel/channel.ts';
import { NatsChannel } from '../lib/channel/nats.ts';
import { SnsSqsChannel } from '../lib/channel/sns-sqs/index.ts';
import { consoleLogger, createCluster, type ClusterNode, type SessionVariables } from '../lib/index.ts';
import { freePort, spawnTracked, startNatsServer, waitFor } from '../functions/launch/index.ts';
import { ProbeChannel } from './probe-channel.ts';
import { nextTurn, summarize, withTimeout, type Summary } from './stats.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const N = arg('n', 600);
const CHUNKS = arg('chunks', 6);
const WARMUP = arg('warmup', 50);

/** Two nodes of one cluster over a transport, with hooks that see B apply a write without polling. */
class Pair {
  readonly samples: { lag: number[]; request: number[]; hop: number[] } = { lag: [], request: [], hop: [] };
  readonly nodes: ClusterNode[] = [];
  #app?: Hono<{ Variables: SessionVariables }>;
  #cookie = '';
  #key = '';
  #counter = 0;
  #pending?: { expected: string; t0: number; tPub?: number; done: (t: number) => void };
  #deltaSubject = '';

  constructor(readonly name: string) {}

  async start(makeChannel: (cluster: string, node: string) => Promise<Channel>): Promise<void> {
    const cluster = `bench-${this.name}-${Math.random().toString(36).slice(2, 8)}`;
    this.#deltaSubject = `sessrep.${cluster}.delta`;
    for (const [index, node] of ['a', 'b'].entries()) {
      const inner = await makeChannel(cluster, node);
      const channel = new ProbeChannel(
        inner,
        index === 0
          ? {
              onPublish: (subject) => {
                if (this.#pending && subject === this.#deltaSubject) this.#pending.tPub ??= performance.now();
              },
            }
          : { onDelivered: () => this.#check() },
      );
      const sessions = createCluster({ cluster, node, channel, logger: consoleLogger('error') });
      this.nodes.push(sessions);
      await sessions.start();
    }
    await waitFor(
      `${this.name}: a and b see each other`,
      () => this.nodes.every((n) => n.membership.readyMembers().length === 1),
      { timeoutMs: 20_000 },
    );
    this.#app = createDemoApp(this.nodes[0]!);
    const first = await this.#app.request('http://bench.local/counter', { method: 'POST' });
    this.#cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    const id = this.#cookie.slice(this.#cookie.indexOf('=') + 1);
    this.#key = id.slice(0, id.lastIndexOf('.'));
    this.#counter = ((await first.json()) as { counter: number }).counter;
    await waitFor(`${this.name}: the session on b`, () => this.nodes[1]!.manager.find(this.#key), {
      timeoutMs: 10_000,
    });
  }

  #check(): void {
    const p = this.#pending;
    if (p && this.nodes[1]!.manager.find(this.#key)?.attributes.get('counter')?.value === p.expected)
      p.done(performance.now());
  }

  async run(n: number, record: boolean): Promise<void> {
    for (let i = 0; i < n; i++) {
      let done!: (t: number) => void;
      const seen = new Promise<number>((resolve) => (done = resolve));
      const p: { expected: string; t0: number; tPub?: number; done: (t: number) => void } = {
        expected: stringify(this.#counter + 1),
        t0: performance.now(),
        done,
      };
      this.#pending = p;
      const response = await this.#app!.request('http://bench.local/counter', {
        method: 'POST',
        headers: { cookie: this.#cookie },
      });
      const tResponse = performance.now();
      const tSeen = await withTimeout(seen, 15_000, `${this.name}: write ${this.#counter + 1} on b`);
      this.#pending = undefined;
      this.#counter = ((await response.json()) as { counter: number }).counter;
      if (record) {
        this.samples.lag.push(tSeen - p.t0);
        this.samples.request.push(tResponse - p.t0);
        if (p.tPub !== undefined) this.samples.hop.push(tSeen - p.tPub);
      }
      await nextTurn();
    }
  }

  async stop(): Promise<void> {
    for (const node of this.nodes.splice(0).reverse())
      await node
        .stop()
        .finally(() => node.channel.close())
        .catch(() => undefined);
  }
}

async function startFauxqsProcess(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const proc = spawnTracked(process.execPath, ['node_modules/fauxqs/dist/cli.js'], {
    name: 'fauxqs',
    env: { ...process.env, FAUXQS_PORT: String(port), FAUXQS_LOGGER: 'false' },
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const probe = new SNSClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    maxAttempts: 1,
  });
  await waitFor('fauxqs to answer', async () => (await probe.send(new ListTopicsCommand({}))) && true, {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  probe.destroy();
  return { endpoint, stop: async () => void (await proc.stop()) };
}

const fmt = (s: Summary) =>
  `${s.p50.toFixed(2).padStart(7)} ${s.p90.toFixed(2).padStart(7)} ${s.p99.toFixed(2).padStart(8)} ${s.max.toFixed(1).padStart(8)}`;

async function main(): Promise<void> {
  const nats = await startNatsServer();
  const external = process.env.AWS_ENDPOINT_URL;
  const fauxqs = external ? undefined : await startFauxqsProcess();
  const endpoint = external ?? fauxqs!.endpoint;
  const aws = () => {
    const config = {
      endpoint,
      region: process.env.AWS_REGION ?? 'us-east-1',
      credentials: {
        accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
      },
    };
    return { sns: new SNSClient(config), sqs: new SQSClient(config) };
  };
  const natsPair = new Pair('nats');
  const snsPair = new Pair('sns-sqs');
  const clusters: string[] = [];
  try {
    await natsPair.start(
      async (_cluster, node) =>
        new NatsChannel(await connect({ servers: nats.url, name: `bench-${node}`, noEcho: true })),
    );
    await snsPair.start(async (cluster, node) => {
      clusters.push(cluster);
      return SnsSqsChannel.connect({ ...aws(), cluster, node });
    });
    for (const pair of [natsPair, snsPair]) await pair.run(WARMUP, false);
    const per = Math.ceil(N / CHUNKS);
    for (let chunk = 0; chunk < CHUNKS; chunk++) for (const pair of [natsPair, snsPair]) await pair.run(per, true);
    const rows = [natsPair, snsPair].map((pair) => ({
      transport: pair.name,
      lag: summarize(pair.samples.lag),
      publishToApplied: summarize(pair.samples.hop),
      request: summarize(pair.samples.request),
    }));
    if (args.includes('--json')) {
      console.log(
        JSON.stringify({ n: N, endpoint: external ? 'external' : 'fauxqs 1.9.2 (own process)', rows }, null, 2),
      );
    } else {
      console.log(
        `replication lag, 2 nodes, delta manager, async; ${N} paced writes per transport, interleaved in ${CHUNKS} chunks`,
      );
      console.log(
        `SNS/SQS endpoint: ${external ?? 'fauxqs 1.9.2 in its own process'}; NATS: nats-server in its own process`,
      );
      console.log('                                              p50     p90      p99      max  (ms)');
      for (const row of rows) {
        console.log(`${row.transport.padEnd(8)} write on A -> applied on B       ${fmt(row.lag)}`);
        console.log(`${''.padEnd(8)} delta published -> applied on B  ${fmt(row.publishToApplied)}`);
        console.log(`${''.padEnd(8)} HTTP request on A                ${fmt(row.request)}`);
      }
    }
  } finally {
    await natsPair.stop();
    await snsPair.stop();
    const { sns, sqs } = aws();
    for (const cluster of clusters)
      await SnsSqsChannel.deleteClusterResources({ sns, sqs, cluster }).catch(() => undefined);
    await fauxqs?.stop();
    await nats.stop();
  }
}

await main();
