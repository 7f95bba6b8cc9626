/** Replication lag: a write through the demo app on node A until node B's manager holds it, with in-process nodes on NATS. */
import { connect } from '@nats-io/transport-node';
import { stringify } from 'devalue';
import type { Hono } from 'hono';
import { createDemoApp } from '../functions/demo-app.ts';
import { NatsChannel } from '../lib/channel/nats.ts';
import type { ClusterKeyConfig, ProtectionMode } from '../lib/codec/protection.ts';
import type { BackupManager } from '../lib/managers/backup/backup-manager.ts';
import { consoleLogger, createCluster, type ClusterNode, type SendMode, type SessionVariables } from '../lib/index.ts';
import { waitFor } from '../functions/launch/index.ts';
import { ProbeChannel } from './probe-channel.ts';
import { nextTurn, summarize, withTimeout, type Summary } from './stats.ts';

/** One lag configuration. */
export interface LagOptions {
  nodes: number;
  mode: SendMode;
  /** Replication strategy (default `delta`). With `backup`, B is the session's backup, the only other data holder. */
  manager?: 'delta' | 'backup';
  /** Cluster keys and protection mode (default: none, plain messages). */
  protection?: { keys: ClusterKeyConfig[]; mode: ProtectionMode };
}

/** Measures several configurations under the same machine load: warm-up, then `chunks` rounds of each in turn. */
export async function interleave(
  probes: readonly LagProbe[],
  settings: { n: number; warmup: number; chunks: number },
): Promise<LagResult[]> {
  for (const probe of probes) await probe.run(settings.warmup, false);
  for (let chunk = 0; chunk < settings.chunks; chunk++) {
    for (const probe of probes) await probe.run(Math.ceil(settings.n / settings.chunks), true);
  }
  return probes.map((probe) => probe.result());
}

/** Lag figures in milliseconds. */
export interface LagResult {
  nodes: number;
  mode: SendMode;
  manager: 'delta' | 'backup';
  protection: 'none' | ProtectionMode;
  /** Other nodes the write must reach (delta: every other node; backup: the backup only). */
  holders: number;
  /** Request start on A -> B's `manager.find(key)` holds the new value (B: the next node, or the session's backup). */
  lagToB: Summary;
  /** Request start on A -> every other data holder has the new value. */
  lagToAll: Summary;
  /** `app.request` on A until its Response resolved (in `ack` mode this waits for every ack). */
  request: Summary;
  /** Request start on A -> A publishes the delta (middleware, handler, commit, encode). */
  toPublish: Summary;
  /** A publishes the delta -> B has applied it (NATS hop, decode, validate, merge). */
  publishToB: Summary;
  /** A publishes the delta -> the delta reaches B's subscription callback (NATS hop plus whatever A still runs first). */
  publishToReceiveB: Summary;
  /** B's handling: the delta reaches B's subscription -> B has applied it (decode, validate, merge). */
  receiveToAppliedB: Summary;
  /** Mean size of a replication message (delta, or copy to the backup) on the wire for this workload (one counter attribute), bytes. */
  deltaBytes: number;
  /** Acks that timed out on A (should be 0). */
  acksTimedOut: number;
}

interface Pending {
  key: string;
  expected: string;
  t0: number;
  tPub?: number;
  /** When the first delta of this write reached B's subscription. */
  tRecvB?: number;
  seen: Array<number | undefined>;
  count: number;
  done: () => void;
}

/**
 * `nodes` in-process cluster nodes (each with its own NATS connection through `NatsChannel`, `noEcho`
 * like the CLI, wrapped in a pass-through {@link ProbeChannel}) and the demo app on node A. Each write
 * is `POST /counter` through `app.request`, one at a time; the new value's arrival is checked right
 * after every delivery on the data holders and right after they record a write's lag (with message
 * protection the delivery handler only starts the asynchronous decrypt), so nothing polls.
 */
export class LagProbe {
  readonly #samples = {
    toB: [] as number[],
    toAll: [] as number[],
    request: [] as number[],
    toPublish: [] as number[],
    publishToB: [] as number[],
    publishToReceiveB: [] as number[],
    receiveToAppliedB: [] as number[],
  };
  readonly #nodes: ClusterNode[] = [];
  #pending: Pending | undefined;
  #deltaBytes = 0;
  #deltaCount = 0;
  #app?: Hono<{ Variables: SessionVariables }>;
  #cookie = '';
  #key = '';
  #counter = 0;
  /** Data holders watched (node index -> slot in `seen`); slot 0 is B. Empty until the session exists. */
  readonly #slots = new Map<number, number>();
  /** The subject A publishes a write's data on (`.delta`, or the backup's own subject). */
  #dataSubject = '';

  private constructor(readonly options: LagOptions) {}

  /** Starts the nodes, waits until they see each other, and creates the session written to. */
  static async open(url: string, options: LagOptions): Promise<LagProbe> {
    const probe = new LagProbe(options);
    try {
      await probe.#start(url);
      return probe;
    } catch (error) {
      await probe.close();
      throw error;
    }
  }

  async #start(url: string): Promise<void> {
    const { nodes: count, mode, manager = 'delta', protection } = this.options;
    const cluster = `bench-lag-${manager}-${count}-${mode}-${protection?.mode ?? 'plain'}-${Math.random().toString(36).slice(2, 8)}`;
    const logger = consoleLogger('error');
    const names = Array.from({ length: count }, (_, i) => String.fromCharCode(97 + i));
    for (const [index, name] of names.entries()) {
      const connection = await connect({ servers: url, name: `${cluster}-${name}`, noEcho: true });
      const channel = new ProbeChannel(
        new NatsChannel(connection),
        index === 0
          ? {
              onPublish: (subject, data) => {
                const p = this.#pending;
                if (!p || subject !== this.#dataSubject) return;
                p.tPub ??= performance.now();
                this.#deltaBytes += data.byteLength;
                this.#deltaCount++;
              },
            }
          : {
              onReceive: (message) => {
                const p = this.#pending;
                if (
                  p &&
                  p.tRecvB === undefined &&
                  this.#slots.get(index) === 0 &&
                  message.subject === this.#dataSubject
                )
                  p.tRecvB = performance.now();
              },
              onDelivered: () => this.#check(index),
            },
      );
      const node = createCluster({
        cluster,
        node: name,
        channel,
        manager,
        sendMode: mode,
        logger,
        ...(protection ? { clusterKeys: protection.keys, protection: protection.mode } : {}),
      });
      if (index > 0) {
        // Right after the node applied a write (synchronously after the merge): covers asynchronous (protected) deliveries.
        const record = node.stats.recordLag.bind(node.stats);
        node.stats.recordLag = (lagMs, now) => {
          record(lagMs, now);
          this.#check(index);
        };
      }
      this.#nodes.push(node);
      await node.start();
    }
    await waitFor(
      'every node to see every other as ready',
      () => this.#nodes.every((n) => n.membership.readyMembers().length === count - 1),
      {
        timeoutMs: 10_000,
      },
    );
    this.#app = createDemoApp(this.#nodes[0]!);
    const first = await this.#app.request('http://bench.local/counter', { method: 'POST' });
    const cookie = first.headers.get('set-cookie')?.split(';')[0];
    if (!cookie || first.status !== 200)
      throw new Error(`could not create a session: ${first.status} ${await first.text()}`);
    const id = cookie.slice(cookie.indexOf('=') + 1);
    this.#cookie = cookie;
    this.#key = id.slice(0, id.lastIndexOf('.'));
    this.#counter = ((await first.json()) as { counter: number }).counter;
    if (manager === 'backup') {
      const entry = (this.#nodes[0]!.manager as BackupManager).entry(this.#key);
      const backup = entry ? names.indexOf(entry.backup) : -1;
      if (backup <= 0) throw new Error(`the session has no backup on another node (entry ${JSON.stringify(entry)})`);
      this.#slots.set(backup, 0);
      this.#dataSubject = `sessrep.${cluster}.node.${names[backup]}`;
    } else {
      for (let index = 1; index < count; index++) this.#slots.set(index, index - 1);
      this.#dataSubject = `sessrep.${cluster}.delta`;
    }
    await waitFor(
      'the session on every data holder',
      () => [...this.#slots.keys()].every((index) => this.#nodes[index]!.manager.find(this.#key)),
      { timeoutMs: 5000 },
    );
  }

  /** Node `index` may just have applied the pending write: records when it first holds the new value. */
  #check(index: number): void {
    const p = this.#pending;
    const slot = this.#slots.get(index);
    if (!p || slot === undefined || p.seen[slot] !== undefined) return;
    if (this.#nodes[index]!.manager.find(p.key)?.attributes.get('counter')?.value !== p.expected) return;
    p.seen[slot] = performance.now();
    if (++p.count === this.#slots.size) p.done();
  }

  /** Makes `n` paced writes on A; keeps the samples when `record`. */
  async run(n: number, record: boolean): Promise<void> {
    const app = this.#app!;
    for (let i = 0; i < n; i++) {
      let done!: () => void;
      const visible = new Promise<void>((resolve) => (done = resolve));
      const p: Pending = { key: this.#key, expected: stringify(this.#counter + 1), t0: 0, seen: [], count: 0, done };
      this.#pending = p;
      p.t0 = performance.now();
      const response = await app.request('http://bench.local/counter', {
        method: 'POST',
        headers: { cookie: this.#cookie },
      });
      const tResponse = performance.now();
      await withTimeout(visible, 10_000, `write ${this.#counter + 1} to reach every data holder`);
      this.#pending = undefined;
      const body = (await response.json()) as { counter: number };
      if (response.status !== 200 || body.counter !== this.#counter + 1)
        throw new Error(`unexpected answer ${response.status} ${JSON.stringify(body)}`);
      this.#counter = body.counter;
      if (record) {
        const seen = p.seen as number[];
        this.#samples.toB.push(seen[0]! - p.t0);
        this.#samples.toAll.push(Math.max(...seen) - p.t0);
        this.#samples.request.push(tResponse - p.t0);
        if (p.tPub !== undefined) {
          this.#samples.toPublish.push(p.tPub - p.t0);
          this.#samples.publishToB.push(seen[0]! - p.tPub);
          if (p.tRecvB !== undefined) {
            this.#samples.publishToReceiveB.push(p.tRecvB - p.tPub);
            this.#samples.receiveToAppliedB.push(seen[0]! - p.tRecvB);
          }
        }
      }
      await nextTurn();
    }
  }

  /** Summary of every recorded write so far. */
  result(): LagResult {
    const s = this.#samples;
    return {
      nodes: this.options.nodes,
      mode: this.options.mode,
      manager: this.options.manager ?? 'delta',
      protection: this.options.protection?.mode ?? 'none',
      holders: this.#slots.size,
      lagToB: summarize(s.toB),
      lagToAll: summarize(s.toAll),
      request: summarize(s.request),
      toPublish: summarize(s.toPublish),
      publishToB: summarize(s.publishToB),
      publishToReceiveB: summarize(s.publishToReceiveB),
      receiveToAppliedB: summarize(s.receiveToAppliedB),
      deltaBytes: Math.round(this.#deltaBytes / Math.max(1, this.#deltaCount)),
      acksTimedOut: this.#nodes[0]?.stats.acksTimedOut ?? 0,
    };
  }

  /** Stops every node (graceful leave), then closes its channel and so its NATS connection. */
  async close(): Promise<void> {
    this.#pending = undefined;
    for (const node of this.#nodes.splice(0).reverse())
      await node
        .stop()
        .finally(() => node.channel.close())
        .catch(() => undefined);
  }
}
