// Owns: unit tests of lib/membership/membership.ts on a MemoryBus (joins, graceful leave, suspicion, death, restarts).
import { describe, expect, it } from 'vitest';
import { ClusterBus, type Incoming } from '../../../lib/bus/cluster-bus.ts';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import type { MessageBody } from '../../../lib/codec/envelope.ts';
import {
  Membership,
  PING_RETRY_MS,
  PING_RETRY_WINDOW_MS,
  type LeaveReason,
  type MemberInfo,
  type MembershipOptions,
} from '../../../lib/membership/membership.ts';
import { ReplicationStats } from '../../../lib/stats.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { onCleanup } from '../../kit/memory-nodes.ts';
import { silentLogger } from '../../kit/logger.ts';

/** Probing off (tests of probing turn it on): a member found without responder is dead 100 ms later. */
const TIMING: MembershipOptions = {
  heartbeatIntervalMs: 50,
  memberDropMs: 300,
  pingTimeoutMs: 100,
  probeIntervalMs: 0,
  reconnectGraceMs: 100,
};

function clusterBus(
  memoryBus: MemoryBus,
  node: string,
  incarnation: string = crypto.randomUUID(),
  stats = new ReplicationStats(),
): ClusterBus {
  const channel = new MemoryChannel(memoryBus);
  onCleanup(() => channel.close());
  return new ClusterBus(channel, { cluster: 'm', node, incarnation }, 'sessrep', stats, silentLogger);
}

/** A real member: Membership plus the ping answering that createCluster wires; records every event. */
function member(memoryBus: MemoryBus, node: string, options: MembershipOptions = TIMING, startedAt = Date.now()) {
  const stats = new ReplicationStats();
  const bus = clusterBus(memoryBus, node, crypto.randomUUID(), stats);
  const membership = new Membership(bus, options, silentLogger, startedAt);
  const events: string[] = [];
  const leaves: Array<[string, LeaveReason]> = [];
  membership.onJoin((m) => events.push(`join:${m.node}`));
  membership.onLeave((m, reason) => {
    events.push(`leave:${m.node}:${reason}`);
    leaves.push([m.node, reason]);
  });
  const direct = bus.listen(bus.subjects.node(node), (incoming) => {
    if (incoming.message.kind === 'ping') membership.answerPing(incoming);
  });
  onCleanup(() => {
    membership.stop();
    direct.unsubscribe();
  });
  return {
    node,
    bus,
    membership,
    events,
    leaves,
    names: () => membership.members().map((m) => m.node),
    /** Heartbeats received from other processes so far. */
    heartbeats: () => stats.received.hb ?? 0,
  };
}

/**
 * A hand-driven member: heartbeats only when told to, and answers pings while `answering` is true.
 * Stands in for a node whose heartbeat timer stalled (or whose process is gone).
 */
function puppet(memoryBus: MemoryBus, node: string, incarnation: string = crypto.randomUUID()) {
  const bus = clusterBus(memoryBus, node, incarnation);
  const state = {
    answering: true,
    pings: 0,
    received: 0,
    /** When `dieOnNextPing` took effect. */
    diedAt: undefined as number | undefined,
    beat,
    stopAnswering,
    silence,
    reconnect,
    dieOnNextPing,
  };
  let dying = false;
  let responder = bus.listen(bus.subjects.node(node), onPing);
  function onPing(incoming: Incoming) {
    if (incoming.message.kind !== 'ping') return;
    state.received++;
    if (dying) {
      dying = false;
      state.diedAt = Date.now();
      silence();
      return;
    }
    if (!state.answering) return;
    state.pings++;
    bus.send(incoming.reply!, 'pong', { ready: true });
  }
  function beat(body: Partial<MessageBody<'hb'>> = {}) {
    bus.send(bus.subjects.heartbeat, 'hb', { started: 1_000, ready: true, ...body });
  }
  /** Still subscribed, but never answers: pings time out. */
  function stopAnswering() {
    state.answering = false;
  }
  /** Gone entirely: pings find no responder. */
  function silence() {
    responder.unsubscribe();
    responder = { unsubscribe: () => undefined };
  }
  /**
   * Killed just before the next ping arrives, the broker not yet aware: that ping is never answered,
   * and the subscriptions are gone right after it (the broker saw the connection close).
   */
  function dieOnNextPing() {
    dying = true;
  }
  /** Subscribed again, as a client that reconnected to the broker. */
  function reconnect() {
    responder.unsubscribe();
    responder = bus.listen(bus.subjects.node(node), onPing);
  }
  onCleanup(() => responder.unsubscribe());
  return state;
}

type Puppet = ReturnType<typeof puppet>;

/** Member `a` started with `options`, and beating puppets named `names` that it lists. */
async function watching(options: MembershipOptions, names: string[]) {
  const bus = new MemoryBus();
  const a = member(bus, 'a', options);
  a.membership.start();
  const puppets = names.map((name) => puppet(bus, name));
  for (const p of puppets) p.beat();
  await waitFor(`a to see ${names.join(', ')}`, () => names.every((name) => a.membership.has(name)));
  return { a, puppets };
}

const find = (membership: Membership, node: string): MemberInfo | undefined =>
  membership.members().find((m) => m.node === node);

describe('Membership', () => {
  it('members discover each other, each join reported once, oldest first', async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a', TIMING, 1000);
    const b = member(bus, 'b', TIMING, 3000);
    const c = member(bus, 'c', TIMING, 2000);
    for (const m of [a, b, c]) m.membership.start();
    await waitFor('everyone to see everyone', () => [a, b, c].every((m) => m.membership.members().length === 2));
    expect(a.names()).toEqual(['c', 'b']);
    expect(b.names()).toEqual(['a', 'c']);
    // Several heartbeat rounds later, still exactly one join per member.
    const heard = a.heartbeats();
    await waitFor('five more heartbeats', () => a.heartbeats() >= heard + 5);
    expect(a.events.sort()).toEqual(['join:b', 'join:c']);
    expect(a.membership.has('b')).toBe(true);
    expect(a.membership.has('zz')).toBe(false);
  });

  it('a hello is answered at once, so a joiner learns the cluster before the next heartbeat', async () => {
    const slow = { ...TIMING, heartbeatIntervalMs: 60_000, memberDropMs: 120_000, pingTimeoutMs: 1000 };
    const bus = new MemoryBus();
    const a = member(bus, 'a', slow);
    const b = member(bus, 'b', slow);
    a.membership.start();
    b.membership.start();
    await waitFor('both to know each other', () => a.membership.has('b') && b.membership.has('a'), { timeoutMs: 2000 });
  });

  it('readiness travels with heartbeats', async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    const b = member(bus, 'b');
    a.membership.start();
    b.membership.start();
    await waitFor('a to see b', () => a.membership.has('b'));
    expect(a.membership.readyMembers()).toEqual([]);
    b.membership.setReady(true);
    await waitFor(
      'a to see b ready',
      () =>
        a.membership
          .readyMembers()
          .map((m) => m.node)
          .join() === 'b',
    );
    expect(find(a.membership, 'b')?.ready).toBe(true);
  });

  it("a graceful leave removes the member at once, with reason 'left'", async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    const b = member(bus, 'b');
    a.membership.start();
    b.membership.start();
    await waitFor('a to see b', () => a.membership.has('b'));
    const left = Date.now();
    b.membership.stop();
    await waitFor('a to drop b', () => !a.membership.has('b'));
    expect(Date.now() - left).toBeLessThan(TIMING.memberDropMs);
    expect(a.leaves).toEqual([['b', 'left']]);
    expect(b.membership.members()).toEqual([]);
  });

  it('a silent member that still answers pings is kept as suspected, and alive again once it beats', async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    a.membership.start();
    const quiet = puppet(bus, 'quiet');
    quiet.beat();
    await waitFor('a to see quiet', () => a.membership.has('quiet'));
    expect(find(a.membership, 'quiet')?.state).toBe('alive');
    await waitFor('quiet to be suspected', () => find(a.membership, 'quiet')?.state === 'suspected');
    // It stays through several more verification rounds.
    await waitFor('three pings answered', () => quiet.pings >= 3, { timeoutMs: 5000 });
    expect(find(a.membership, 'quiet')?.state).toBe('suspected');
    expect(a.leaves).toEqual([]);
    quiet.beat();
    await waitFor('quiet to be alive again', () => find(a.membership, 'quiet')?.state === 'alive');
  });

  it('a member that stops answering pings is declared dead', async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    a.membership.start();
    const quiet = puppet(bus, 'quiet');
    quiet.beat();
    await waitFor('quiet to be suspected', () => find(a.membership, 'quiet')?.state === 'suspected');
    quiet.stopAnswering(); // pings now time out
    await waitFor('quiet to be dead', () => a.leaves.length > 0, { timeoutMs: 5000 });
    expect(a.leaves).toEqual([['quiet', 'dead']]);
    expect(a.membership.has('quiet')).toBe(false);
  });

  it('suspect(): a member whose subject finds no responder is unreachable at once and dead after reconnectGraceMs, long before memberDropMs', async () => {
    const slow = { ...TIMING, heartbeatIntervalMs: 5_000, memberDropMs: 10_000, pingTimeoutMs: 1_000 };
    const bus = new MemoryBus();
    const a = member(bus, 'a', slow);
    a.membership.start();
    const gone = puppet(bus, 'gone');
    gone.beat();
    await waitFor('a to see gone', () => a.membership.has('gone'));
    const lastBeat = Date.now();
    gone.silence();
    a.membership.suspect('gone');
    await waitFor('gone to be unreachable', () => find(a.membership, 'gone')?.state === 'unreachable');
    expect(a.membership.reachable('gone')).toBe(false);
    expect(a.membership.readyMembers()).toEqual([]);
    await waitFor('gone to be dead', () => a.leaves.length > 0, { timeoutMs: 5000 });
    expect(a.leaves).toEqual([['gone', 'dead']]);
    expect(Date.now() - lastBeat).toBeLessThan(slow.memberDropMs);
  });

  it('suspect(): a member that answers, or whose ping times out (paused), is kept', async () => {
    const slow = { ...TIMING, heartbeatIntervalMs: 5_000, memberDropMs: 10_000, pingTimeoutMs: 100 };
    const { a, puppets } = await watching(slow, ['live', 'paused']);
    const [live, paused] = puppets as [Puppet, Puppet];
    paused.stopAnswering(); // still subscribed: the broker does not answer no-responders for it
    a.membership.suspect('live');
    a.membership.suspect('paused');
    await waitFor('live to answer the ping', () => live.pings === 1);
    // Suspect again once the first ping to `paused` timed out: a second ping goes out only then.
    await waitFor('the ping to paused to time out', () => {
      a.membership.suspect('paused');
      return paused.pings === 0 && Date.now() - find(a.membership, 'paused')!.lastSeen > slow.pingTimeoutMs * 2;
    });
    expect(a.leaves).toEqual([]);
    expect(a.names().sort()).toEqual(['live', 'paused']);
  });

  it('a member that missed one heartbeat is pinged, and dropped soon after when its subject is gone', async () => {
    const timing = { ...TIMING, heartbeatIntervalMs: 50, memberDropMs: 10_000, pingTimeoutMs: 100 };
    const bus = new MemoryBus();
    const a = member(bus, 'a', timing);
    a.membership.start();
    const gone = puppet(bus, 'gone');
    gone.beat();
    await waitFor('a to see gone', () => a.membership.has('gone'));
    const lastBeat = Date.now();
    gone.silence();
    await waitFor('gone to be dead', () => a.leaves.length > 0, { timeoutMs: 5000 });
    expect(a.leaves).toEqual([['gone', 'dead']]);
    expect(Date.now() - lastBeat).toBeLessThan(timing.memberDropMs);
  });

  it("a restart under a new incarnation gives 'restarted' then a join; a stale heartbeat of the old run is ignored", async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    a.membership.start();
    const first = puppet(bus, 'r', 'incarnation-1');
    first.beat({ started: 1000 });
    await waitFor('a to see r', () => a.membership.has('r'));
    const second = puppet(bus, 'r', 'incarnation-2');
    second.beat({ started: 2000 });
    await waitFor('the restart', () => find(a.membership, 'r')?.incarnation === 'incarnation-2');
    expect(a.events).toEqual(['join:r', 'leave:r:restarted', 'join:r']);
    expect(find(a.membership, 'r')?.startedAt).toBe(2000);

    const heard = a.heartbeats();
    first.beat({ started: 1000 }); // delayed heartbeat of the previous run
    first.beat({ started: 1000, leaving: true }); // and its late leave
    await waitFor('both stale heartbeats to arrive', () => a.heartbeats() === heard + 2);
    expect(a.events).toEqual(['join:r', 'leave:r:restarted', 'join:r']);
    expect(find(a.membership, 'r')?.incarnation).toBe('incarnation-2');
  });

  it('stop sends a leave, stops heartbeating and forgets members; a second stop is harmless', async () => {
    const bus = new MemoryBus();
    const a = member(bus, 'a');
    const b = member(bus, 'b');
    a.membership.start();
    b.membership.start();
    await waitFor('b to see a', () => b.membership.has('a'));
    a.membership.stop();
    a.membership.stop();
    await waitFor('b to drop a', () => !b.membership.has('a'));
    expect(b.leaves).toEqual([['a', 'left']]);
    expect(a.membership.members()).toEqual([]);
  });

  describe('probing the ring (no traffic, heartbeats far apart)', () => {
    const PROBING: MembershipOptions = {
      heartbeatIntervalMs: 60_000,
      memberDropMs: 120_000,
      pingTimeoutMs: 100,
      probeIntervalMs: 20,
      reconnectGraceMs: 200,
    };

    it('a killed member (its subject left without responder) is found unreachable, then dropped as dead', async () => {
      const bus = new MemoryBus();
      const a = member(bus, 'a', PROBING);
      a.membership.start();
      const gone = puppet(bus, 'b');
      gone.beat();
      await waitFor('a to see b', () => a.membership.has('b'));
      await waitFor('a to probe b', () => gone.pings >= 2);
      gone.silence();
      await waitFor('b to be unreachable', () => find(a.membership, 'b')?.state === 'unreachable');
      expect(a.leaves).toEqual([]);
      await waitFor('b to be dead', () => a.leaves.length > 0, { timeoutMs: 5000 });
      expect(a.leaves).toEqual([['b', 'dead']]);
    });

    it('a probe in flight when the member died (never answered) does not hold up the next one', async () => {
      const bus = new MemoryBus();
      const a = member(bus, 'a', { ...PROBING, pingTimeoutMs: 60_000 });
      a.membership.start();
      const dying = puppet(bus, 'b');
      dying.beat();
      await waitFor('a to see b', () => a.membership.has('b'));
      dying.stopAnswering();
      const seen = dying.received;
      await waitFor('a probe to arrive and stay unanswered', () => dying.received > seen);
      dying.silence();
      // Found within the test's timeout, long before the unanswered probe's 60 s timeout.
      await waitFor('b to be unreachable', () => find(a.membership, 'b')?.state === 'unreachable');
      await waitFor('b to be dead', () => a.leaves.length > 0, { timeoutMs: 5000 });
      expect(a.leaves).toEqual([['b', 'dead']]);
    });

    it('a suspicion that comes while a ping to the member is in flight, after the quick retries, is followed up once the probe interval allows another ping', async () => {
      // a probes m (its successor), never z: only suspicions (late acks, others' heartbeats) ping z.
      const slow = {
        ...PROBING,
        heartbeatIntervalMs: 10_000,
        memberDropMs: 60_000,
        pingTimeoutMs: 60_000,
        probeIntervalMs: 300,
      };
      const { a, puppets } = await watching(slow, ['m', 'z']);
      const z = puppets[1]!;
      // z was killed, but the broker has not seen its connection close for longer than the quick retries went on.
      z.stopAnswering();
      const suspected = Date.now();
      a.membership.suspect('z');
      await waitFor('the quick retries to end', () => z.received >= 1 && Date.now() - suspected > 150);
      z.silence(); // now its subscriptions are gone
      a.membership.suspect('z'); // a second hint, while the first ping is in flight
      await waitFor('z to be found unreachable', () => find(a.membership, 'z')?.state === 'unreachable', {
        timeoutMs: 5000,
      });
      expect(find(a.membership, 'm')?.state).toBe('alive');
    });

    it('a ping that reached the member before its connection was seen closed (never answered) is followed by another within ~10 ms, not a probe interval later', async () => {
      // No probe tick and no other hint during the test: only the retry of the unanswered ping can find b gone.
      const { a, puppets } = await watching({ ...PROBING, probeIntervalMs: 60_000, pingTimeoutMs: 60_000 }, ['b']);
      const b = puppets[0]!;
      b.dieOnNextPing();
      a.membership.suspect('b');
      await waitFor('b to be unreachable', () => find(a.membership, 'b')?.state === 'unreachable', { timeoutMs: 5000 });
      expect(Date.now() - b.diedAt!).toBeLessThan(1000);
      expect(b.received).toBe(1);
    });

    it('a member that stays subscribed without answering (paused) gets at most ten pings in quick succession, then none without a hint or a probe', async () => {
      const { a, puppets } = await watching({ ...PROBING, probeIntervalMs: 60_000, pingTimeoutMs: 60_000 }, ['b']);
      const b = puppets[0]!;
      b.stopAnswering();
      const suspected = Date.now();
      a.membership.suspect('b');
      await waitFor('a second ping (the first retry)', () => b.received >= 2);
      // The retries stop PING_RETRY_WINDOW_MS (100) after the first ping; well after that, the count stays.
      await waitFor('300 ms to pass', () => Date.now() - suspected >= 300);
      const retried = b.received;
      expect(retried).toBeGreaterThanOrEqual(2);
      expect(retried).toBeLessThanOrEqual(PING_RETRY_WINDOW_MS / PING_RETRY_MS);
      await waitFor('300 more ms to pass', () => Date.now() - suspected >= 600);
      expect(b.received).toBe(retried);
      expect(find(a.membership, 'b')?.state).toBe('alive');
      expect(a.leaves).toEqual([]);
    });

    it('a paused member (subscribed, not answering) is still listed, and not unreachable, after many probes', async () => {
      const bus = new MemoryBus();
      const a = member(bus, 'a', PROBING);
      a.membership.start();
      const paused = puppet(bus, 'b');
      paused.beat();
      await waitFor('a to see b', () => a.membership.has('b'));
      paused.stopAnswering();
      const seen = paused.received;
      await waitFor('five more probes', () => paused.received >= seen + 5, { timeoutMs: 5000 });
      expect(find(a.membership, 'b')?.state).toBe('alive');
      expect(a.membership.reachable('b')).toBe(true);
      expect(a.leaves).toEqual([]);
    });

    it('a member whose client reconnects within reconnectGraceMs stays a member: unreachable, then alive, never dropped', async () => {
      const bus = new MemoryBus();
      const a = member(bus, 'a', { ...PROBING, reconnectGraceMs: 60_000 });
      a.membership.start();
      const flaky = puppet(bus, 'b');
      flaky.beat();
      await waitFor('a to see b', () => a.membership.has('b'));
      flaky.silence();
      a.membership.suspect('b'); // as a late ack would
      await waitFor('b to be unreachable', () => find(a.membership, 'b')?.state === 'unreachable');
      const pings = flaky.received;
      flaky.reconnect();
      await waitFor('b to be reachable again', () => find(a.membership, 'b')?.state === 'alive');
      expect(flaky.received).toBeGreaterThan(pings); // found back by a probe, not a heartbeat
      expect(a.leaves).toEqual([]);
      expect(a.events).toEqual(['join:b']);
    });

    it("a member found unreachable by one node is checked by the others, who drop it without their own traffic or probe's turn", async () => {
      const bus = new MemoryBus();
      // Ring a -> b -> c -> a: only b probes c.
      const a = member(bus, 'a', PROBING);
      const b = member(bus, 'b', PROBING);
      a.membership.start();
      b.membership.start();
      const c = puppet(bus, 'c');
      c.beat();
      await waitFor('a and b to see c', () => a.membership.has('c') && b.membership.has('c'));
      c.silence();
      await waitFor('b to drop c', () => b.leaves.length > 0, { timeoutMs: 5000 });
      await waitFor('a to drop c', () => a.leaves.length > 0, { timeoutMs: 5000 });
      expect(a.leaves).toEqual([['c', 'dead']]);
      expect(b.leaves).toEqual([['c', 'dead']]);
    });
  });
});
