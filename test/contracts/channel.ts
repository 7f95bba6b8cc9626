// Owns: the Channel contract suite as a reusable function, so every Channel implementation runs the same
// checks: run for memory and NATS by channel-contract.test.ts and for SNS/SQS by
// sns-sqs-channel.test.ts. Capabilities state what a broker cannot promise (SNS standard topics do not
// keep order; SNS cannot report "no responders" at once, only after a discovery window).
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel, ChannelMessage } from '../../lib/channel/channel.ts';
import { ChannelRequestError, InvalidOptionsError } from '../../lib/errors.ts';
import { waitFor } from '../kit/index.ts';

/** Makes `count` channels that see each other. */
export type ChannelFactory = (count: number) => Promise<Channel[]>;

/** What an implementation promises beyond the common contract. */
export interface ChannelCapabilities {
  /** Deliveries to one subscriber keep the publisher's order (NATS, memory: yes; SNS standard: no). */
  readonly ordered: boolean;
  /** `no-responders` arrives within this many ms (NATS, memory: at once; SNS/SQS: after its discovery window). */
  readonly noRespondersWithinMs: number;
  /** How long to wait for deliveries (default 10000 ms). */
  readonly deliveryTimeoutMs?: number;
  /** It offers `sync()`, a cheap round trip to the broker (NATS: PING/PONG; memory: deliveries are already queued). */
  readonly sync: boolean;
}

const utf8 = new TextEncoder();
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** Collects what a subscription receives. */
function collector() {
  const got: ChannelMessage[] = [];
  return {
    got,
    handler: (message: ChannelMessage) => void got.push(message),
    texts: () => got.map((m) => text(m.data)),
  };
}

/** Registers the contract suite for one implementation; `cleanup` runs after each test (after the channels closed). */
export function describeChannelContract(
  kind: string,
  factory: ChannelFactory,
  capabilities: ChannelCapabilities,
  cleanup?: () => Promise<void>,
): void {
  const sorted = (list: string[]) => (capabilities.ordered ? list : [...list].sort());
  const timeoutMs = capabilities.deliveryTimeoutMs ?? 10000;

  describe(`Channel contract: ${kind}`, () => {
    const open: Channel[] = [];
    let prefix = '';
    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((channel) => channel.close()));
      await cleanup?.();
    });
    /** `count` fresh channels and a subject prefix no other test uses. */
    async function channels(count: number): Promise<Channel[]> {
      prefix = `contract.${kind}.${Math.random().toString(36).slice(2, 10)}`;
      const made = await factory(count);
      open.push(...made);
      return made;
    }
    /** Makes subscriptions effective before another channel publishes. */
    const ready = (...list: Channel[]) => Promise.all(list.map((channel) => channel.flush()));

    it(`says whether it keeps the publish order (ordered: ${capabilities.ordered})`, async () => {
      const [a] = await channels(1);
      expect(a!.ordered ?? false).toBe(capabilities.ordered);
    });

    it(`reports its kind "${kind}"`, async () => {
      const [a] = await channels(1);
      expect(a!.kind).toBe(kind);
    });

    it(`delivers published bytes exactly${capabilities.ordered ? ' and in order' : ''} to every subscriber`, async () => {
      const [a, b, c] = await channels(3);
      const onB = collector();
      const onC = collector();
      b!.subscribe(`${prefix}.x`, onB.handler);
      c!.subscribe(`${prefix}.x`, onC.handler);
      await ready(b!, c!);
      const binary = new Uint8Array([0, 255, 1, 254, 0xc3]);
      a!.publish(`${prefix}.x`, binary);
      a!.publish(`${prefix}.x`, new Uint8Array(0));
      for (let i = 0; i < 100; i++) a!.publish(`${prefix}.x`, utf8.encode(`m${i}`));
      await waitFor('102 messages on b and c', () => onB.got.length === 102 && onC.got.length === 102, { timeoutMs });
      const bin = onB.got.find((m) => m.data.length === 5)!;
      expect([...bin.data]).toEqual([...binary]);
      expect(onB.got.filter((m) => m.data.length === 0)).toHaveLength(1);
      expect(onB.got.every((m) => m.subject === `${prefix}.x`)).toBe(true);
      const texts = (list: ReturnType<typeof collector>) =>
        list.got.filter((m) => m.data.length !== 5 && m.data.length !== 0).map((m) => text(m.data));
      const sent = Array.from({ length: 100 }, (_, i) => `m${i}`);
      expect(sorted(texts(onB))).toEqual(sorted(sent));
      expect(sorted(texts(onC))).toEqual(sorted(sent));
      // The publisher may reuse its buffer: what was delivered does not change.
      binary.fill(9);
      expect([...bin.data]).toEqual([0, 255, 1, 254, 0xc3]);
    });

    it('matches * to one token and > to one or more tokens, and nothing else', async () => {
      const [a, b] = await channels(2);
      const star = collector();
      const tail = collector();
      const exact = collector();
      const all = collector();
      b!.subscribe(`${prefix}.*.hb`, star.handler);
      b!.subscribe(`${prefix}.node.>`, tail.handler);
      b!.subscribe(`${prefix}.node`, exact.handler);
      b!.subscribe(`${prefix}.>`, all.handler);
      await ready(b!);
      const subjects = ['c1.hb', 'c2.hb', 'c1.c2.hb', 'hb', 'node', 'node.n1', 'node.n1.deep', 'nodes.n1', 'c1.hbx'];
      for (const s of subjects) a!.publish(`${prefix}.${s}`, utf8.encode(s));
      a!.publish(`${prefix}.end`, utf8.encode('end'));
      // Ordered: once the catch-all saw "end", everything else arrived. Unordered: wait for all of them.
      await waitFor(
        'every message on the catch-all',
        () => (capabilities.ordered ? all.texts().includes('end') : all.got.length === subjects.length + 1),
        { timeoutMs },
      );
      if (!capabilities.ordered) await b!.flush();
      expect(sorted(star.texts())).toEqual(['c1.hb', 'c2.hb']);
      expect(sorted(tail.texts())).toEqual(['node.n1', 'node.n1.deep']);
      expect(exact.texts()).toEqual(['node']);
      expect(sorted(all.texts())).toEqual(sorted([...subjects, 'end']));
    });

    it('refuses to publish to a wildcard subject or one with an empty token (InvalidOptionsError), and delivers nothing', async () => {
      const [a, b] = await channels(2);
      const all = collector();
      b!.subscribe(`${prefix}.>`, all.handler);
      await ready(b!);
      for (const bad of [`${prefix}.*`, `${prefix}.>`, `${prefix}..x`, `${prefix}.`]) {
        expect(() => a!.publish(bad, utf8.encode('bad')), bad).toThrow(InvalidOptionsError);
        await expect(a!.request(bad, utf8.encode('bad'), { timeoutMs: 500 }), bad).rejects.toThrow(InvalidOptionsError);
      }
      a!.publish(`${prefix}.good`, utf8.encode('good'));
      await waitFor('the good message', () => all.got.length >= 1, { timeoutMs });
      if (!capabilities.ordered) await b!.flush();
      expect(all.texts()).toEqual(['good']);
    });

    it('gives each message to exactly one member of a queue group, and to every plain subscriber', async () => {
      const [a, b, c] = await channels(3);
      const q1 = collector();
      const q2 = collector();
      const plain = collector();
      b!.subscribe(`${prefix}.work`, q1.handler, { queue: 'donors' });
      c!.subscribe(`${prefix}.work`, q2.handler, { queue: 'donors' });
      c!.subscribe(`${prefix}.work`, plain.handler);
      await ready(b!, c!);
      for (let i = 0; i < 60; i++) a!.publish(`${prefix}.work`, utf8.encode(String(i)));
      await waitFor(
        '60 messages to the group and to the plain subscriber',
        () => q1.got.length + q2.got.length === 60 && plain.got.length === 60,
        { timeoutMs },
      );
      const delivered = [...q1.texts(), ...q2.texts()].map(Number).sort((x, y) => x - y);
      expect(delivered).toEqual(Array.from({ length: 60 }, (_, i) => i));
      expect(q1.got.length).toBeGreaterThan(0);
      expect(q2.got.length).toBeGreaterThan(0);
    });

    it('stops delivering after unsubscribe', async () => {
      const [a, b] = await channels(2);
      const gone = collector();
      const stays = collector();
      const subscription = b!.subscribe(`${prefix}.u`, gone.handler);
      b!.subscribe(`${prefix}.u`, stays.handler);
      await ready(b!);
      a!.publish(`${prefix}.u`, utf8.encode('1'));
      await waitFor('first message', () => gone.got.length === 1 && stays.got.length === 1, { timeoutMs });
      subscription.unsubscribe();
      await ready(b!);
      a!.publish(`${prefix}.u`, utf8.encode('2'));
      await waitFor('second message on the remaining subscriber', () => stays.got.length === 2, { timeoutMs });
      expect(gone.texts()).toEqual(['1']);
    });

    it('survives a throwing handler: later messages are still delivered', async () => {
      const [a, b] = await channels(2);
      const got = collector();
      b!.subscribe(`${prefix}.t`, (message) => {
        got.handler(message);
        throw new Error('handler bug');
      });
      await ready(b!);
      a!.publish(`${prefix}.t`, utf8.encode('1'));
      a!.publish(`${prefix}.t`, utf8.encode('2'));
      await waitFor('both messages', () => got.got.length === 2, { timeoutMs });
    });

    it("request/reply: resolves with the responder's reply, and concurrent requests get their own replies", async () => {
      const [a, b] = await channels(2);
      b!.subscribe(`${prefix}.echo`, (message) => {
        expect(message.reply).toBeTruthy();
        b!.publish(message.reply!, utf8.encode(`echo:${text(message.data)}`));
      });
      await ready(b!);
      const reply = await a!.request(`${prefix}.echo`, utf8.encode('hi'), { timeoutMs: 5000 });
      expect(text(reply)).toBe('echo:hi');
      const many = await Promise.all(
        Array.from({ length: 20 }, (_, i) => a!.request(`${prefix}.echo`, utf8.encode(String(i)), { timeoutMs: 5000 })),
      );
      expect(many.map(text)).toEqual(Array.from({ length: 20 }, (_, i) => `echo:${i}`));
      // A plain publish carries no reply subject; publish with `reply` carries it.
      const seen = collector();
      b!.subscribe(`${prefix}.r`, seen.handler);
      await ready(b!);
      a!.publish(`${prefix}.r`, utf8.encode('no reply'));
      a!.publish(`${prefix}.r`, utf8.encode('with reply'), { reply: `${prefix}.inbox` });
      await waitFor('two messages', () => seen.got.length === 2, { timeoutMs });
      const byText = new Map(seen.got.map((m) => [text(m.data), m]));
      expect(byText.get('no reply')!.reply).toBeUndefined();
      expect(byText.get('with reply')!.reply).toBe(`${prefix}.inbox`);
    });

    it('request/reply through a queue group is answered by one member', async () => {
      const [a, b, c] = await channels(3);
      let answers = 0;
      for (const [channel, name] of [
        [b!, 'b'],
        [c!, 'c'],
      ] as const) {
        channel.subscribe(
          `${prefix}.state`,
          (message) => {
            answers++;
            channel.publish(message.reply!, utf8.encode(name));
          },
          { queue: 'donors' },
        );
      }
      await ready(b!, c!);
      for (let i = 0; i < 10; i++)
        expect(['b', 'c']).toContain(text(await a!.request(`${prefix}.state`, utf8.encode('?'), { timeoutMs: 5000 })));
      expect(answers).toBe(10);
    });

    it(`rejects with kind no-responders within ${capabilities.noRespondersWithinMs} ms when nobody subscribes`, async () => {
      const [a] = await channels(1);
      const started = Date.now();
      const error = await a!
        .request(`${prefix}.nobody`, utf8.encode('?'), { timeoutMs: 5000 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ChannelRequestError);
      expect(error).toMatchObject({ kind: 'no-responders', code: 'NO_RESPONDERS' });
      expect(Date.now() - started).toBeLessThan(capabilities.noRespondersWithinMs);
    });

    it('rejects with kind timeout after timeoutMs when subscribers never answer', async () => {
      const [a, b] = await channels(2);
      const heard = collector();
      b!.subscribe(`${prefix}.silent`, heard.handler);
      await ready(b!);
      // Longer than any no-responders window: the subscriber exists, so the outcome must be `timeout`.
      const timeout = Math.max(300, capabilities.noRespondersWithinMs + 300);
      const started = Date.now();
      const error = await a!
        .request(`${prefix}.silent`, utf8.encode('?'), { timeoutMs: timeout })
        .catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(ChannelRequestError);
      expect(error).toMatchObject({ kind: 'timeout', code: 'REQUEST_TIMEOUT' });
      expect(elapsed).toBeGreaterThanOrEqual(timeout - 20);
      expect(elapsed).toBeLessThan(timeout + 2000);
      expect(heard.texts()).toEqual(['?']);
    });

    if (!capabilities.sync)
      it('offers no sync (an async write is answered without a round trip to the broker)', async () => {
        const [a] = await channels(1);
        expect(a!.sync).toBeUndefined();
      });
    else
      it('sync: once it resolves the broker holds every earlier publish, so a subscriber that then flushes has them all', async () => {
        const [a, b] = await channels(2);
        const got = collector();
        b!.subscribe(`${prefix}.s`, got.handler);
        await ready(b!);
        const sent = Array.from({ length: 50 }, (_, i) => `m${i}`);
        for (const message of sent) a!.publish(`${prefix}.s`, utf8.encode(message));
        await a!.sync!();
        await b!.flush();
        expect(sorted(got.texts())).toEqual(sorted(sent));
      });

    it('ping, where the channel has one, resolves once the broker answered', async () => {
      const [a] = await channels(1);
      if (a!.ping) await expect(a!.ping()).resolves.toBeUndefined();
    });

    it('flush resolves once earlier publishes left, and close makes later calls fail with kind closed', async () => {
      const [a, b] = await channels(2);
      const got = collector();
      b!.subscribe(`${prefix}.f`, got.handler);
      await ready(b!);
      a!.publish(`${prefix}.f`, utf8.encode('before close'));
      await a!.flush();
      await waitFor('the flushed message', () => got.got.length === 1, { timeoutMs });
      await a!.close();
      expect(() => a!.publish(`${prefix}.f`, utf8.encode('after close'))).toThrow(
        expect.objectContaining({ kind: 'closed' }),
      );
      await expect(a!.request(`${prefix}.f`, utf8.encode('?'), { timeoutMs: 500 })).rejects.toMatchObject({
        kind: 'closed',
      });
      expect(() => a!.subscribe(`${prefix}.f`, () => undefined)).toThrow(expect.objectContaining({ kind: 'closed' }));
      await expect(a!.close()).resolves.toBeUndefined(); // idempotent
    });

    it('a request in flight when the channel closes rejects with kind closed, before its timeout', async () => {
      const [a, b] = await channels(2);
      const heard = collector();
      b!.subscribe(`${prefix}.pending`, heard.handler);
      await ready(b!);
      const timeout = 20_000;
      const started = Date.now();
      const pending = a!
        .request(`${prefix}.pending`, utf8.encode('?'), { timeoutMs: timeout })
        .catch((e: unknown) => e);
      // The request reached the responder, which never answers: it is in flight.
      await waitFor('the request at the responder', () => heard.got.length === 1, { timeoutMs });
      await a!.close();
      const error = await pending;
      expect(error).toBeInstanceOf(ChannelRequestError);
      expect(error).toMatchObject({ kind: 'closed' });
      expect(Date.now() - started).toBeLessThan(timeout);
    });
  });
}
