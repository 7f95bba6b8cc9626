// Owns: unit tests of lib/channel/memory.ts (subject matching, pub/sub, queue groups, request/reply, close).
import { describe, expect, it } from 'vitest';
import type { ChannelMessage } from '../../../lib/channel/channel.ts';
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { subjectMatches } from '../../../lib/channel/subjects.ts';
import { ChannelRequestError } from '../../../lib/errors.ts';
import { waitFor } from '../../../functions/launch/index.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (m: ChannelMessage) => dec.decode(m.data);
const matches = (pattern: string, subject: string) => subjectMatches(pattern.split('.'), subject.split('.'));

/** The rejection of a promise (fails when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('subjectMatches', () => {
  it.each([
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.b.c', 'a.b.d', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.b.x.c', false],
    ['a.*', 'a', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*.*', 'a.b', true],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'a', false],
    ['>', 'a', true],
    ['>', 'a.b.c', true],
    ['a.*.>', 'a.b.c', true],
    ['a.*.>', 'a.b', false],
    ['*.b.>', 'x.b.y.z', true],
    ['*.b.>', 'x.c.y', false],
  ])('%s vs %s -> %s', (pattern, subject, expected) => {
    expect(matches(pattern, subject)).toBe(expected);
  });
});

describe('MemoryChannel publish/subscribe', () => {
  it('delivers to every matching subscriber on the bus, in publish order, asynchronously', async () => {
    const bus = new MemoryBus();
    const a = new MemoryChannel(bus);
    const b = new MemoryChannel(bus);
    const gotExact: string[] = [];
    const gotWildcard: string[] = [];
    const gotOther: string[] = [];
    b.subscribe('s.x.hb', (m) => gotExact.push(text(m)));
    b.subscribe('s.*.hb', (m) => gotWildcard.push(`${m.subject}:${text(m)}`));
    b.subscribe('s.x.delta', (m) => gotOther.push(text(m)));
    a.publish('s.x.hb', enc.encode('1'));
    a.publish('s.x.hb', enc.encode('2'));
    a.publish('s.y.hb', enc.encode('3'));
    // Never inside publish: handlers run later, like a broker.
    expect(gotExact).toEqual([]);
    await a.flush();
    expect(gotExact).toEqual(['1', '2']);
    expect(gotWildcard).toEqual(['s.x.hb:1', 's.x.hb:2', 's.y.hb:3']);
    expect(gotOther).toEqual([]);
  });

  it('delivers a copy: changing the published buffer afterwards changes nothing', async () => {
    const bus = new MemoryBus();
    const channel = new MemoryChannel(bus);
    const got: string[] = [];
    channel.subscribe('t', (m) => got.push(text(m)));
    const data = enc.encode('abc');
    channel.publish('t', data);
    data[0] = 0x7a;
    await channel.flush();
    expect(got).toEqual(['abc']);
  });

  it('separate buses do not see each other', async () => {
    const got: string[] = [];
    new MemoryChannel(new MemoryBus()).subscribe('t', (m) => got.push(text(m)));
    const other = new MemoryChannel(new MemoryBus());
    other.publish('t', enc.encode('x'));
    await other.flush();
    expect(got).toEqual([]);
  });

  it('unsubscribe stops delivery, including messages already queued', async () => {
    const bus = new MemoryBus();
    const channel = new MemoryChannel(bus);
    const got: string[] = [];
    const subscription = channel.subscribe('t', (m) => got.push(text(m)));
    channel.publish('t', enc.encode('queued'));
    subscription.unsubscribe();
    channel.publish('t', enc.encode('later'));
    await channel.flush();
    expect(got).toEqual([]);
  });

  it('a throwing handler does not stop delivery to others or later messages', async () => {
    const bus = new MemoryBus();
    const channel = new MemoryChannel(bus);
    const got: string[] = [];
    channel.subscribe('t', () => {
      throw new Error('handler bug');
    });
    channel.subscribe('t', (m) => got.push(`second:${text(m)}`));
    const flaky = channel.subscribe('t', (m) => {
      if (text(m) === '1') throw new Error('only the first');
      got.push(`third:${text(m)}`);
    });
    channel.publish('t', enc.encode('1'));
    channel.publish('t', enc.encode('2'));
    await channel.flush();
    expect(got.sort()).toEqual(['second:1', 'second:2', 'third:2']);
    flaky.unsubscribe();
  });
});

describe('queue groups', () => {
  it('deliver each message to exactly one member of each group, and to every plain subscriber', async () => {
    const bus = new MemoryBus();
    const counts = { g1: [0, 0, 0], g2: [0, 0], plain: 0 };
    const members = [0, 1, 2].map((i) =>
      new MemoryChannel(bus).subscribe('work', () => counts.g1[i]!++, { queue: 'g1' }),
    );
    for (const i of [0, 1]) new MemoryChannel(bus).subscribe('work', () => counts.g2[i]!++, { queue: 'g2' });
    new MemoryChannel(bus).subscribe('work', () => counts.plain++);
    const publisher = new MemoryChannel(bus);
    for (let i = 0; i < 300; i++) publisher.publish('work', enc.encode(String(i)));
    await publisher.flush();
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    expect(sum(counts.g1)).toBe(300);
    expect(sum(counts.g2)).toBe(300);
    expect(counts.plain).toBe(300);
    // Spread over the group, not all to one member.
    for (const n of counts.g1) expect(n).toBeGreaterThan(0);
    for (const m of members) m.unsubscribe();
  });
});

describe('request/reply', () => {
  it('resolves with the first reply', async () => {
    const bus = new MemoryBus();
    const server = new MemoryChannel(bus);
    server.subscribe('svc.echo', (m) => server.publish(m.reply!, enc.encode(`echo:${text(m)}`)));
    server.subscribe('svc.echo', (m) => setTimeout(() => server.publish(m.reply!, enc.encode('late')), 20));
    const client = new MemoryChannel(bus);
    const reply = await client.request('svc.echo', enc.encode('hi'), { timeoutMs: 1000 });
    expect(dec.decode(reply)).toBe('echo:hi');
  });

  it('gives each request its own reply subject', async () => {
    const bus = new MemoryBus();
    const server = new MemoryChannel(bus);
    server.subscribe('svc.add', (m) => server.publish(m.reply!, enc.encode(String(Number(text(m)) + 1))));
    const client = new MemoryChannel(bus);
    const replies = await Promise.all(
      [1, 2, 3, 4].map((n) => client.request('svc.add', enc.encode(String(n)), { timeoutMs: 1000 })),
    );
    expect(replies.map((r) => dec.decode(r))).toEqual(['2', '3', '4', '5']);
  });

  it('rejects with kind no-responders at once when nobody subscribes', async () => {
    const client = new MemoryChannel(new MemoryBus());
    const started = Date.now();
    const error = await rejection(client.request('nobody.home', enc.encode('x'), { timeoutMs: 5000 }));
    expect(error).toBeInstanceOf(ChannelRequestError);
    expect((error as ChannelRequestError).kind).toBe('no-responders');
    expect((error as ChannelRequestError).code).toBe('NO_RESPONDERS');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('rejects with kind timeout when a subscriber never answers', async () => {
    const bus = new MemoryBus();
    new MemoryChannel(bus).subscribe('slow', () => undefined);
    const client = new MemoryChannel(bus);
    const started = Date.now();
    const error = await rejection(client.request('slow', enc.encode('x'), { timeoutMs: 100 }));
    expect((error as ChannelRequestError).kind).toBe('timeout');
    expect((error as ChannelRequestError).code).toBe('REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
  });

  it('a reply after the timeout is ignored', async () => {
    const bus = new MemoryBus();
    const server = new MemoryChannel(bus);
    const replied: string[] = [];
    server.subscribe('late', (m) => replied.push(m.reply!));
    const client = new MemoryChannel(bus);
    const error = await rejection(client.request('late', enc.encode('x'), { timeoutMs: 30 }));
    expect((error as ChannelRequestError).kind).toBe('timeout');
    // The inbox is gone: answering now reaches nobody.
    expect(bus.route({ subject: replied[0]!, data: enc.encode('too late') })).toBe(0);
  });

  it('counts a queue group as one responder', async () => {
    const bus = new MemoryBus();
    let answered = 0;
    for (let i = 0; i < 3; i++) {
      const donor = new MemoryChannel(bus);
      donor.subscribe(
        'state',
        (m) => {
          answered++;
          donor.publish(m.reply!, enc.encode(`donor-${i}`));
        },
        { queue: 'donors' },
      );
    }
    const reply = await new MemoryChannel(bus).request('state', enc.encode('?'), { timeoutMs: 1000 });
    expect(dec.decode(reply)).toMatch(/^donor-\d$/);
    await waitFor('the single delivery', () => answered === 1);
  });
});

describe('close', () => {
  it('publish, subscribe and request then fail with kind closed; request rejects rather than throwing', async () => {
    const bus = new MemoryBus();
    const channel = new MemoryChannel(bus);
    await channel.close();
    const closed = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    const onPublish = closed(() => channel.publish('t', enc.encode('x')));
    const onSubscribe = closed(() => channel.subscribe('t', () => undefined));
    expect((onPublish as ChannelRequestError).kind).toBe('closed');
    expect((onSubscribe as ChannelRequestError).kind).toBe('closed');
    let pending: Promise<Uint8Array> | undefined;
    expect(() => (pending = channel.request('t', enc.encode('x'), { timeoutMs: 100 }))).not.toThrow();
    const error = await rejection(pending!);
    expect((error as ChannelRequestError).kind).toBe('closed');
    expect((error as ChannelRequestError).code).toBe('CHANNEL_CLOSED');
  });

  it("removes the channel's subscriptions from the bus, leaving others", async () => {
    const bus = new MemoryBus();
    const leaving = new MemoryChannel(bus);
    const staying = new MemoryChannel(bus);
    const got: string[] = [];
    leaving.subscribe('t', () => got.push('leaving'));
    staying.subscribe('t', () => got.push('staying'));
    await leaving.close();
    expect(bus.route({ subject: 't', data: enc.encode('x') })).toBe(1);
    await staying.flush();
    expect(got).toEqual(['staying']);
  });

  it('reports itself connected', () => {
    const statuses: string[] = [];
    new MemoryChannel(new MemoryBus()).onStatus((s) => statuses.push(s));
    expect(statuses).toEqual(['connected']);
  });
});
