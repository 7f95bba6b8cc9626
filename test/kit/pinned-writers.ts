// Owns: load for fault tests and benchmarks of CLI nodes: writers pinned to one node each that record when
// every write was answered (the longest gap per node), and reading a node's pino log lines.
import { CookieClient } from './cookie-client.ts';
import type { NodeHandle } from './node-process.ts';

/** One pino log line: its time and message, and the fields `T` names (any other field is unknown). */
export type PinoLine<T extends object = object> = T & { time: number; msg: string } & Record<string, unknown>;

/** Pino log lines of `node` whose message is `msg`; `T` types the fields the caller reads. */
export function logLines<T extends object = object>(node: NodeHandle, msg: string): Array<PinoLine<T>> {
  return node
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{') && line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line) as PinoLine<T>);
}

/** The NATS server `node` is connected to now (its last connect or reconnect log line). */
export function natsServerOf(node: NodeHandle): string {
  const lines = [
    ...logLines(node, 'connected to NATS'),
    ...logLines(node, 'channel connection changed').filter((l) => l.status === 'connected'),
  ].sort((a, b) => Number(a.time) - Number(b.time));
  const last = lines.at(-1);
  return String(last?.server ?? last?.detail);
}

/**
 * Writers pinned to one node each: `perNode` clients per node, each with its own session created there,
 * write in a loop through that node only and record when each write was answered, and with what.
 */
export class PinnedWriters {
  readonly answered = new Map<string, Array<{ at: number; status: number }>>();
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(
    private readonly nodes: NodeHandle[],
    private readonly perNode: number,
  ) {}

  async start(): Promise<void> {
    this.#running = true;
    for (const node of this.nodes) {
      this.answered.set(node.node, []);
      for (let i = 0; i < this.perNode; i++) {
        const client = new CookieClient();
        const created = await client.request(node.url, 'PUT', '/session/attributes/w', '0');
        if (created.status !== 200)
          throw new Error(`creating a session on ${node.node}: ${created.status} ${created.text}`);
        this.#loops.push(this.#loop(node, client));
      }
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  async #loop(node: NodeHandle, client: CookieClient): Promise<void> {
    const answers = this.answered.get(node.node)!;
    for (let seq = 1; this.#running; seq++) {
      try {
        const res = await fetch(new URL('/session/attributes/w', node.url), {
          method: 'PUT',
          headers: { cookie: `SESSIONID=${client.cookie}` },
          body: String(seq),
          signal: AbortSignal.timeout(30_000),
        });
        await res.arrayBuffer();
        answers.push({ at: Date.now(), status: res.status });
      } catch {
        answers.push({ at: Date.now(), status: 0 });
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The longest time between two writes answered 200 on `node` within [from, to], counting the edges. */
  longestGap(node: string, from: number, to: number): number {
    const times = this.answered
      .get(node)!
      .filter((a) => a.status === 200)
      .map((a) => a.at);
    const before = times.filter((t) => t < from).at(-1) ?? from;
    const inside = times.filter((t) => t >= from && t <= to);
    let gap = 0;
    let last = before;
    for (const t of [...inside, to]) {
      gap = Math.max(gap, t - last);
      last = t;
    }
    return gap;
  }

  statuses(node: string, from: number): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const a of this.answered.get(node)!) if (a.at >= from) counts[a.status] = (counts[a.status] ?? 0) + 1;
    return counts;
  }
}
