/** The floor: raw NATS publish -> subscribe latency between separate connections, measured in-process. */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { nextTurn, summarize, withTimeout, type Summary } from './stats.ts';

/** Shape of the floor traffic: one publisher, `peers` subscriber connections. */
export interface FloorOptions {
  /** Subscriber connections (nodes - 1). */
  peers: number;
  /** Payload size in bytes (similar to a replication message). */
  payloadBytes: number;
  /** Size of the reply in the round-trip pass (similar to an ack). */
  replyBytes: number;
}

/** Floor latencies in milliseconds. */
export interface FloorResult {
  peers: number;
  payloadBytes: number;
  /** Publish -> first subscriber's callback (the "B" of the replication lag). */
  oneWayToB: Summary;
  /** Publish -> every subscriber's callback ran. */
  oneWayToAll: Summary;
  /** Publish with reply -> every subscriber answered and the publisher got every answer (the floor of an `ack` request). */
  roundTripAll: Summary;
}

/** A payload of `bytes` printable ASCII characters, JSON-looking like a delta. */
function payload(bytes: number): Uint8Array {
  const text = `{"v":1,"k":"delta","b":{"s":[{"x":[["counter","${'x'.repeat(Math.max(0, bytes - 40))}"]]}]}}`.slice(
    0,
    bytes,
  );
  return new TextEncoder().encode(text.padEnd(bytes, ' '));
}

interface InFlight {
  arrived: number[];
  count: number;
  replies: number;
  roundTrip: boolean;
  done: (t: number) => void;
}

/**
 * Open connections that measure the NATS floor in chunks, so floor and replication lag can be
 * interleaved under the same machine load. Messages are paced: one outstanding at a time, a
 * `setImmediate` turn between two.
 */
export class FloorProbe {
  readonly #samples = { toB: [] as number[], toAll: [] as number[], roundTrip: [] as number[] };
  #current: InFlight | undefined;

  private constructor(
    readonly options: FloorOptions,
    private readonly pub: NatsConnection,
    private readonly connections: NatsConnection[],
    private readonly subject: string,
    private readonly inbox: string,
    private readonly data: Uint8Array,
  ) {}

  /** Connects one publisher and `peers` subscribers to `url` and subscribes them. */
  static async open(url: string, options: FloorOptions): Promise<FloorProbe> {
    const tag = Math.random().toString(36).slice(2, 10);
    const connections: NatsConnection[] = [];
    try {
      const pub = await connect({ servers: url, name: `bench-floor-pub-${tag}` });
      connections.push(pub);
      const probe = new FloorProbe(
        options,
        pub,
        connections,
        `bench.floor.${tag}`,
        `bench.floor.${tag}.reply`,
        payload(options.payloadBytes),
      );
      const reply = payload(options.replyBytes);
      for (let i = 0; i < options.peers; i++) {
        const nc = await connect({ servers: url, name: `bench-floor-sub${i}-${tag}` });
        connections.push(nc);
        nc.subscribe(probe.subject, {
          callback: (_error, msg) => {
            const t = performance.now();
            const c = probe.#current;
            if (!c || c.arrived[i] !== undefined) return;
            c.arrived[i] = t;
            c.count++;
            if (c.roundTrip) {
              if (msg.reply) nc.publish(msg.reply, reply);
            } else if (c.count === options.peers) c.done(t);
          },
        });
      }
      pub.subscribe(probe.inbox, {
        callback: () => {
          const t = performance.now();
          const c = probe.#current;
          if (c?.roundTrip && ++c.replies === options.peers) c.done(t);
        },
      });
      await Promise.all(connections.map((nc) => nc.flush()));
      return probe;
    } catch (error) {
      await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
      throw error;
    }
  }

  /** Sends `n` one-way messages, then `n` round trips; keeps the samples when `record`. */
  async run(n: number, record: boolean): Promise<void> {
    for (const roundTrip of [false, true]) {
      for (let i = 0; i < n; i++) {
        let done!: (t: number) => void;
        const finished = new Promise<number>((resolve) => (done = resolve));
        const c: InFlight = { arrived: [], count: 0, replies: 0, roundTrip, done };
        this.#current = c;
        const t0 = performance.now();
        this.pub.publish(this.subject, this.data, roundTrip ? { reply: this.inbox } : undefined);
        const t1 = await withTimeout(finished, 5000, 'a floor message');
        this.#current = undefined;
        if (record) {
          if (roundTrip) this.#samples.roundTrip.push(t1 - t0);
          else {
            this.#samples.toB.push(c.arrived[0]! - t0);
            this.#samples.toAll.push(Math.max(...c.arrived) - t0);
          }
        }
        await nextTurn();
      }
    }
  }

  /** Summary of every recorded sample so far. */
  result(): FloorResult {
    return {
      peers: this.options.peers,
      payloadBytes: this.options.payloadBytes,
      oneWayToB: summarize(this.#samples.toB),
      oneWayToAll: summarize(this.#samples.toAll),
      roundTripAll: summarize(this.#samples.roundTrip),
    };
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.#current = undefined;
    await Promise.all(this.connections.map((nc) => nc.close().catch(() => undefined)));
  }
}
