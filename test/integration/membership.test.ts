// Owns: integration tests of membership's failure detection over a real nats-server (pings, "no responders").
import { afterEach, describe, expect, inject, it } from 'vitest';
import { holdingChannel, type HoldingChannel } from '../kit/holding-channel.ts';
import { createNatsNode, Harness, uniqueCluster, waitFor, waitForMembership } from '../kit/index.ts';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.stopAll();
  harness = undefined;
});

describe('a member killed while a ping to it was on its way', () => {
  it('is found unreachable within a fraction of the probe interval once the broker dropped its subscriptions', async () => {
    // a probes b (its successor) every second, and pings it once it missed a heartbeat (1.5 s of silence);
    // no ping times out during the test: either would find b gone about a second after the first probe,
    // only a quick retry finds it sooner.
    const timing = {
      heartbeatIntervalMs: 1_000,
      memberDropMs: 10_000,
      pingTimeoutMs: 60_000,
      probeIntervalMs: 1_000,
    } as const;
    const cluster = uniqueCluster('it-member-raced');
    harness = new Harness(inject('natsUrl'), cluster, timing);
    const [a] = await harness.start('a');
    let held: HoldingChannel | undefined;
    const b = await createNatsNode(inject('natsUrl'), cluster, 'b', timing, (inner) => {
      held = holdingChannel(inner, [`sessrep.${cluster}.node.b`]);
      return held;
    });
    harness.nodes.push(b);
    await b.sessions.start();
    await waitForMembership(harness.nodes);

    // b's process is gone but the broker has not seen its connection close: the ping reaches its
    // subscription and is never answered.
    held!.hold();
    await waitFor('a probe to reach b, unanswered', () => held!.held === 1, { timeoutMs: 5_000, intervalMs: 1 });
    // Now the broker sees the connection close and drops its subscriptions (no leave is sent).
    await b.nc.close();
    const closed = Date.now();
    await waitFor(
      'a to list b unreachable',
      () => a!.sessions.membership.members().find((m) => m.node === 'b')?.state === 'unreachable',
      { timeoutMs: 5_000 },
    );
    const foundMs = Date.now() - closed;
    expect(foundMs).toBeLessThan(500);
    expect(a!.sessions.membership.readyMembers()).toEqual([]);
    console.info(`[it-member-raced] b found unreachable ${foundMs} ms after its connection closed`);
  });
});
