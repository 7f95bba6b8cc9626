/**
 * `npm run bench:read-share`: how much of the side-by-side bench's "lag" figure is replication and how
 * much is the read that observes it, for this project and for Tomcat, through one client.
 *
 * The side-by-side bench measures lag as the time from a write's answer on node1 until a GET on node2
 * returns the value. When the first GET already sees it (99 % of trials here), that figure is the
 * duration of one GET. This script repeats the trial and then reads the same value again at once: the
 * read again costs what any read costs, so `lag - read again` is replication's share of the figure.
 *
 * Runs against clusters that are already serving (it starts nothing):
 * - this project: nodes started with `session-replication serve` (the demo app: `PUT
 *   /session/attributes/lag`, `GET /session`), `--project WRITE_PORT,READ_PORT`;
 * - Tomcat: `../shared/anchor-bench/tomcat/run.sh start delta8 node1 node2 node3` (`/app/set`,
 *   `/app/get`), `--tomcat 18081,18082`.
 * Both are measured in turns (`--rounds`, each `--trials` writes per system) so they share the machine's
 * load. A write whose value is not seen within 1 s counts as a timeout and out of the figures.
 */
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { summarize, type Summary } from './stats.ts';

/** The system under test: the request paths and cookie name differ. */
type Kind = 'project' | 'tomcat';

/** One round's figures for one system, in milliseconds. */
interface ShareResult {
  kind: Kind;
  /** Write answered on the writer -> a read on the reader returned the value. */
  lag: Summary;
  /** The read right after that one, of the same value: what a read costs without replication. */
  readAgain: Summary;
  /** Reads whose first try already saw the value, percent of the trials. */
  firstReadSeenPct: number;
  /** Writes not seen on the reader within 1 s. */
  timeouts: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 });

/** One keep-alive HTTP request on 127.0.0.1; resolves the body and the session cookie it set, if any. */
function call(
  port: number,
  method: string,
  path: string,
  cookie: string | undefined,
  body?: unknown,
): Promise<{ body: string; setCookies: string[] }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {};
    if (cookie) headers.Cookie = cookie;
    if (payload) headers['Content-Type'] = 'application/json';
    if (method !== 'GET') headers['Content-Length'] = payload?.length ?? 0;
    const req = request({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ body: text, setCookies: res.headers['set-cookie'] ?? [] }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`no answer from 127.0.0.1:${port}${path} within 5 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Writes and reads the `lag` value of one session on one system (fixed session cookie, never updated). */
class SessionClient {
  #cookie: string | undefined;
  constructor(
    readonly kind: Kind,
    readonly writePort: number,
    readonly readPort: number,
  ) {}

  async write(value: string): Promise<void> {
    const answer =
      this.kind === 'tomcat'
        ? await call(this.writePort, 'GET', `/app/set?k=lag&v=${encodeURIComponent(value)}`, this.#cookie)
        : await call(this.writePort, 'PUT', '/session/attributes/lag', this.#cookie, value);
    const name = this.kind === 'tomcat' ? 'JSESSIONID' : 'SESSIONID';
    for (const line of answer.setCookies) {
      const match = new RegExp(`^${name}=([^;]*)`).exec(line);
      if (match && !this.#cookie) this.#cookie = `${name}=${match[1]}`;
    }
  }

  async read(): Promise<string | undefined> {
    if (this.kind === 'tomcat') {
      const { body } = await call(this.readPort, 'GET', '/app/get?k=lag', this.#cookie);
      return body.split(' ')[0];
    }
    const { body } = await call(this.readPort, 'GET', '/session', this.#cookie);
    try {
      return (JSON.parse(body) as { attributes?: { lag?: string } }).attributes?.lag;
    } catch {
      return undefined;
    }
  }
}

/** `trials` writes on the writer, each polled on the reader until seen (1 s at most) and read once more. */
async function measure(client: SessionClient, trials: number): Promise<ShareResult> {
  const lag: number[] = [];
  const readAgain: number[] = [];
  let firstSeen = 0;
  let timeouts = 0;
  for (let i = 0; i < trials; i++) {
    const value = `v${i}x${Math.floor(Math.random() * 1e9)}`;
    await client.write(value);
    const answered = performance.now();
    let polls = 0;
    let seen = false;
    while (!seen && performance.now() - answered < 1000) {
      polls++;
      seen = (await client.read()) === value;
    }
    if (!seen) {
      timeouts++;
      continue;
    }
    lag.push(performance.now() - answered);
    if (polls === 1) firstSeen++;
    const again = performance.now();
    await client.read();
    readAgain.push(performance.now() - again);
  }
  return {
    kind: client.kind,
    lag: summarize(lag),
    readAgain: summarize(readAgain),
    firstReadSeenPct: Math.round((1000 * firstSeen) / trials) / 10,
    timeouts,
  };
}

/** `"W,R"` as two ports. */
function ports(text: string, flag: string): [number, number] {
  const parts = text.split(',').map(Number);
  if (parts.length !== 2 || parts.some((port) => !Number.isInteger(port) || port <= 0 || port > 65535))
    throw new Error(`--${flag} takes WRITE_PORT,READ_PORT (e.g. 18001,18002), got ${JSON.stringify(text)}`);
  return [parts[0]!, parts[1]!];
}

const USAGE =
  'usage: npm run bench:read-share -- [--project W,R] [--tomcat W,R] [--trials 1000] [--rounds 3]\n' +
  'W and R: HTTP ports of the writing and the reading node of a cluster already serving (see bench/read-share.ts).\n';

async function main(): Promise<void> {
  let values: { project?: string; tomcat?: string; trials: string; rounds: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        project: { type: 'string' },
        tomcat: { type: 'string' },
        trials: { type: 'string', default: '1000' },
        rounds: { type: 'string', default: '3' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`bench:read-share: ${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const trials = Number(values.trials);
  const rounds = Number(values.rounds);
  const clients: SessionClient[] = [];
  try {
    if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer`);
    if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer`);
    if (values.project) clients.push(new SessionClient('project', ...ports(values.project, 'project')));
    if (values.tomcat) clients.push(new SessionClient('tomcat', ...ports(values.tomcat, 'tomcat')));
    if (clients.length === 0) throw new Error('name at least one cluster: --project W,R or --tomcat W,R');
  } catch (error) {
    process.stderr.write(`bench:read-share: ${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  for (const client of clients) {
    await client.write('init');
    const deadline = Date.now() + 10_000;
    while ((await client.read()) !== 'init') {
      if (Date.now() > deadline) throw new Error(`${client.kind}: the reader never saw the first write`);
    }
    await measure(client, Math.min(500, trials)); // Warm-up (JIT, connections), not counted.
  }
  const ms = (value: number) => value.toFixed(3);
  for (let round = 1; round <= rounds; round++) {
    for (const client of clients) {
      const r = await measure(client, trials);
      process.stdout.write(
        `round ${round} ${r.kind.padEnd(7)} lag p50 ${ms(r.lag.p50)} ms · read again p50 ${ms(r.readAgain.p50)} ms · ` +
          `replication's share ${ms(r.lag.p50 - r.readAgain.p50)} ms · lag p90 ${ms(r.lag.p90)} · ` +
          `first read sees it ${r.firstReadSeenPct} % · timeouts ${r.timeouts}\n`,
      );
    }
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:read-share failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
