// Owns: the backup manager under real process and network faults: three CLI nodes in backup mode (ack) over a real
// nats-server; one node is SIGKILLed, SIGSTOPped past memberDropMs, or cut off from NATS by a reset or a silent
// partition (test/kit/faults.ts) while users keep writing on the other nodes. Counted as a user sees it: writes
// answered 200 that are missing afterwards, sessions in use that came back new, an ended session that came back,
// and 200 answers older than a write the user already had acknowledged. Every count must be 0; each result is
// printed as a `[fault-table]` line (the README's fault table).
import { describe, expect, it } from 'vitest';
import {
  cleanupsAfterEach,
  seeEachOther,
  CookieClient,
  cuttableLink,
  startNatsServer,
  startNode,
  uniqueCluster,
  waitFor,
  type NodeHandle,
  type StartNodeOptions,
} from '../kit/index.ts';

const cleanups = cleanupsAfterEach();

/**
 * Backup manager, ack mode, short timeouts: a 6 s session timeout (above the 5 s a takeover may wait for a
 * node that died just as it was asked), touch interval 1 s, sweeps every 300 ms.
 */
const BACKUP: Pick<StartNodeOptions, 'manager' | 'send' | 'maxInactive' | 'extraArgs'> = {
  manager: 'backup',
  send: 'ack',
  maxInactive: 6,
  extraArgs: ['--sweep-interval-ms', '300'],
};

async function start(opts: StartNodeOptions): Promise<NodeHandle> {
  const node = await startNode({ readyTimeoutMs: 30_000, ...BACKUP, ...opts, env: { LOG_LEVEL: 'info', ...opts.env } });
  cleanups.push(async () => {
    node.kill('SIGCONT');
    await node.stop();
  });
  return node;
}

/**
 * One user writing a counter to one session on changing nodes; each write answered 200 is acknowledged, and
 * every later 200 must show at least that value.
 */
class User {
  readonly client = new CookieClient();
  acknowledged = 0;
  /** The latest value answered 200. */
  value = 0;
  lost = 0;
  stale = 0;
  refused = 0;

  async write(node: NodeHandle): Promise<void> {
    const next = this.value + 1;
    const reply = await this.client
      .request(node.url, 'PUT', '/session/attributes/x', String(next))
      .catch(() => ({ status: 0, json: undefined }));
    if (reply.status === 200) {
      if (reply.json?.isNew && this.value > 0) this.lost++;
      this.acknowledged++;
      this.value = next;
    } else this.refused++;
  }

  /** Reads the session on `node`; resolves false when a 200 lacks an acknowledged write (a new session, or a lower value). */
  async read(node: NodeHandle): Promise<boolean> {
    const reply = await new CookieClient({ cookie: this.client.cookie! })
      .request(node.url, 'GET', '/session')
      .catch(() => ({ status: 0, json: undefined }));
    if (reply.status !== 200) {
      this.refused++;
      return true;
    }
    if (reply.json.isNew) this.lost++;
    else if ((reply.json.attributes.x ?? 0) < this.value) this.stale++;
    else return true;
    return false;
  }
}

type Fault = 'SIGKILL' | 'SIGSTOP' | 'reset' | 'silent';

interface Link {
  cut(): Promise<void> | void;
  heal(): Promise<void> | void;
}

async function faultRun(fault: Fault): Promise<void> {
  const nats = await startNatsServer({ host: '0.0.0.0' });
  cleanups.push(() => nats.stop());
  const cluster = uniqueCluster(`bk-${fault.toLowerCase()}`);
  let link: Link;
  let a: NodeHandle;
  if (fault === 'reset' || fault === 'silent') {
    const cuttable = await cuttableLink(fault, nats.port);
    cleanups.push(() => cuttable.dispose());
    a = await start({ cluster, node: 'a', ...cuttable.nodeOptions });
    link = cuttable;
  } else {
    a = await start({ cluster, node: 'a', nats: nats.url });
    link =
      fault === 'SIGSTOP'
        ? { cut: () => void a.kill('SIGSTOP'), heal: () => void a.kill('SIGCONT') }
        : { cut: () => void a.kill('SIGKILL'), heal: () => undefined };
  }
  const b = await start({ cluster, node: 'b', nats: nats.url });
  const c = await start({ cluster, node: 'c', nats: nats.url });
  await seeEachOther([a, b, c]);

  // A session ended before the fault: it must stay ended on every node.
  const ended = new CookieClient();
  expect((await ended.request(a.url, 'PUT', '/session/attributes/x', '1')).status).toBe(200);
  const endedCookie = ended.cookie!;
  expect((await ended.request(c.url, 'POST', '/session/invalidate')).status).toBeLessThan(300);

  // Users whose sessions a holds (created there: primary a), one created elsewhere.
  const users = [new User(), new User(), new User()];
  for (const [i, user] of users.entries()) await user.write(i < 2 ? a : b);
  expect(users.map((u) => u.acknowledged)).toEqual([1, 1, 1]);

  // Each user writes on b and c in turn and reads from every node that serves (a too, once it runs and is linked again).
  const others = [b, c];
  let serving = others;
  let running = true;
  const loops = users.map(async (user, i) => {
    for (let turn = i; running; turn++) {
      await user.write(others[turn % 2]!);
      await user.read(serving[turn % serving.length]!);
      // Kept: paces the load (not a wait for anything): a turn every twentieth of the timeout keeps the sessions in use.
      await new Promise((resolve) => setTimeout(resolve, (BACKUP.maxInactive! * 1000) / 20));
    }
  });

  const cutAt = Date.now();
  await link.cut();
  // Past memberDropMs (3 s) and past the 6 s session timeout.
  await waitFor('the fault to last 10 s', () => Date.now() - cutAt > 10_000, { timeoutMs: 15_000, intervalMs: 100 });
  await link.heal();
  const faultMs = Date.now() - cutAt;
  if (fault !== 'SIGKILL') {
    await waitFor('a to be ready again', async () => (await fetch(`${a.url}/readyz`)).status === 200, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }
  // From the moment a is ready again, its answers count too: 5 s of traffic, then every node once.
  if (fault !== 'SIGKILL') serving = [a, b, c];
  const healedAt = Date.now();
  await waitFor('5 s of traffic after the fault', () => Date.now() - healedAt > 5000, { timeoutMs: 10_000 });
  running = false;
  await Promise.all(loops);
  // The last word: every node that serves now holds every acknowledged write.
  let writesLost = 0;
  for (const user of users) for (const node of serving) if (!(await user.read(node))) writesLost++;

  let resurrected = 0;
  for (const node of serving) {
    const reply = await new CookieClient({ cookie: endedCookie }).request(node.url, 'GET', '/session');
    if (reply.status === 200 && !reply.json.isNew) resurrected++;
  }
  const sum = (pick: (user: User) => number) => users.reduce((total, user) => total + pick(user), 0);
  const counts = {
    writesAcknowledged: sum((u) => u.acknowledged),
    writesLost,
    sessionsEndedInUse: sum((u) => u.lost),
    sessionsResurrected: resurrected,
    staleReads: sum((u) => u.stale),
  };
  console.info(
    `[fault-table] ${JSON.stringify({ fault: `backup manager, ${fault}`, durationMs: faultMs, ...counts, refused: sum((u) => u.refused) })}`,
  );
  expect(counts.writesAcknowledged).toBeGreaterThan(30);
  expect(
    { ...counts, writesAcknowledged: 0 },
    [a, b, c]
      .map((n) =>
        n
          .output()
          .split('\n')
          .filter((l) => /took over|not reachable|ended|gap|recover|catching|resync|member/.test(l))
          .slice(-12)
          .join('\n'),
      )
      .join('\n---\n'),
  ).toEqual({ writesAcknowledged: 0, writesLost: 0, sessionsEndedInUse: 0, sessionsResurrected: 0, staleReads: 0 });
}

/** Each fault, and what the test's title adds to "no acknowledged write lost, no session in use ended, ...". */
const FAULTS: ReadonlyArray<readonly [Fault, string]> = [
  ['SIGKILL', 'of a node holding sessions'],
  ['SIGSTOP', 'past memberDropMs, then SIGCONT, reads on the resumed node included'],
  ['reset', '(NATS link) for 10 s, reads on the healed node included'],
  ['silent', 'partition (network namespace) for 10 s, reads on the healed node included'],
];

describe('backup manager under process and network faults: no acknowledged write lost, no session in use ended, no ended session back, no stale 200', () => {
  it.each(FAULTS)('%s %s', (fault) => faultRun(fault), 120_000);
});
