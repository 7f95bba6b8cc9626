// Owns: unit tests of lib/managers/gaps.ts on the memory channel: the link probe that takes a broker which stopped
// answering (a silent partition: no disconnect is ever reported) for a disconnect, and its answer for the reconnect;
// a stall past memberDropMs seen by the first request after it, before the watch's own tick.
import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { FaultInjector, faultyChannel } from '../../../lib/testing/faults.ts';
import { waitFor } from '../../../functions/launch/index.ts';
import { call, makeNode, sessionApp, stopNode } from '../../kit/memory-nodes.ts';

/** A memory channel whose round trips to the "broker" hang while `silent` is set, like a half-open TCP link. */
class SilentChannel extends MemoryChannel {
  silent = false;
  readonly #waiting: Array<() => void> = [];

  async ping(): Promise<void> {
    if (this.silent) await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  speak(): void {
    this.silent = false;
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}

describe('gap watch: silent link', () => {
  for (const manager of ['delta', 'backup'] as const) {
    it(`${manager}: a broker that stops answering counts as a disconnect past memberDropMs (not ready), its answer as the reconnect`, async () => {
      const channel = new SilentChannel(new MemoryBus());
      const node = makeNode(new MemoryBus(), 'a', { channel, manager });
      await node.start();
      expect(node.ready).toBe(true);
      channel.silent = true;
      // memberDropMs (300 ms) for the probe to count as a disconnect, as long again for the gap to be long.
      await waitFor('a to be catching up', () => node.manager.catchingUp === true, { timeoutMs: 5000 });
      expect(node.ready).toBe(false);
      channel.speak();
      await waitFor('a to have caught up', () => node.manager.catchingUp === false && node.ready, { timeoutMs: 5000 });
    });
  }
});

/** Blocks the event loop for `ms`, as a SIGSTOP or a long GC pause does. */
function stallFor(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: nothing else runs
  }
}

describe('gap watch: stall', () => {
  for (const manager of ['delta', 'backup'] as const) {
    it(`${manager}: the first request after a stall past memberDropMs is held back before the watch ticks, until a round trip to the broker came back`, async () => {
      const channel = new SilentChannel(new MemoryBus());
      const node = makeNode(new MemoryBus(), 'a', { channel, manager });
      await node.start();
      const app = sessionApp(node);
      expect(node.manager.catchingUp).toBe(false);
      // What the connection kept during the stall is read only after it: the broker's answer to a round trip begun
      // after the resume proves it was. Hold that answer back.
      channel.silent = true;
      stallFor(450); // memberDropMs is 300 ms here
      // Synchronously after the stall, as a request already waiting in the socket is handled: no timer has run yet.
      expect(node.manager.catchingUp).toBe(true);
      expect(node.ready).toBe(false);
      let answered: number | undefined;
      const request = call(app, 'POST', '/set', { body: { x: 1 } }).then((res) => (answered = res.status));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(answered, 'the request waits while the round trip is out').toBeUndefined();
      channel.speak();
      expect(await request).toBe(200);
      expect(node.manager.catchingUp).toBe(false);
      expect(node.ready).toBe(true);
    });

    it(`${manager}: requests in a loop that never yields to the event loop past memberDropMs are served, each stall costing one round trip`, async () => {
      const node = makeNode(new MemoryBus(), 'a', { manager });
      await node.start();
      const app = sessionApp(node);
      const cookie = (await call(app, 'POST', '/set', { body: { x: 1 } })).cookie;
      const until = Date.now() + 1000; // memberDropMs is 300 ms here
      let served = 0;
      while (Date.now() < until) {
        const res = await call(app, 'GET', '/get', { cookie });
        expect(res.status).toBe(200);
        served++;
      }
      expect(served).toBeGreaterThan(10);
    });
  }
});

describe('gap watch: catching up once the members are back', () => {
  /** Three nodes on one bus, each through `faults`; memberDropMs long against the 50 ms heartbeats. */
  async function threeNodes(manager: 'delta' | 'backup', faults: FaultInjector) {
    const bus = new MemoryBus();
    const nodes = ['n1', 'n2', 'n3'].map((name) =>
      makeNode(bus, name, {
        manager,
        memberDropMs: 2000,
        channel: faultyChannel(new MemoryChannel(bus), name, faults),
      }),
    );
    for (const node of nodes) await node.start();
    await waitFor('every node to see the others ready', () =>
      nodes.every((node) => node.membership.readyMembers().length === 2),
    );
    return nodes;
  }

  for (const manager of ['delta', 'backup'] as const) {
    it(`${manager}: a node cut off past memberDropMs serves again once every member it had was heard from, not memberDropMs after the reconnect`, async () => {
      const faults = new FaultInjector();
      const [, , n3] = await threeNodes(manager, faults);
      faults.partition('n3');
      await waitFor('n3 to be catching up', () => n3!.manager.catchingUp === true, { timeoutMs: 10_000 });
      faults.heal();
      const healedAt = Date.now();
      // Heartbeats every 50 ms bring both members back at once; the old rule waited memberDropMs (2 s) more.
      await waitFor('n3 to have caught up', () => n3!.manager.catchingUp === false && n3!.ready, {
        timeoutMs: 10_000,
        intervalMs: 10,
      });
      expect(Date.now() - healedAt, 'caught up before memberDropMs passed after the reconnect').toBeLessThan(1500);
    });

    it(`${manager}: a member it had that is not back holds the catch-up until memberDropMs after the reconnect`, async () => {
      const faults = new FaultInjector();
      const [, n2, n3] = await threeNodes(manager, faults);
      faults.partition('n3');
      await waitFor('n3 to be catching up', () => n3!.manager.catchingUp === true, { timeoutMs: 10_000 });
      await stopNode(n2!); // Gone while n3 was cut off: n3 never hears it again.
      faults.heal();
      const healedAt = Date.now();
      await waitFor('n3 to have caught up', () => n3!.manager.catchingUp === false && n3!.ready, {
        timeoutMs: 10_000,
        intervalMs: 10,
      });
      expect(Date.now() - healedAt, 'waited memberDropMs for the member that did not come back').toBeGreaterThanOrEqual(
        1900,
      );
    });
  }
});
