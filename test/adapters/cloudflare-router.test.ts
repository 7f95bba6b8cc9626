// Owns: unit tests of the Durable Object router (adapters/cloudflare sessionNodeRouter): which member
// a request goes to, what the member is told, and the errors for a missing binding or member list.
// The members themselves run for real in workerd (test/package/cloudflare.test.ts).
import { describe, expect, it } from 'vitest';
import { InvalidOptionsError } from '../../lib/errors.ts';
import { MEMBER_HEADER, sessionNodeRouter, type DurableObjectNamespaceLike } from '../../adapters/cloudflare/index.ts';

const KEY = 'k'.repeat(24);

/** A namespace that answers with the member name and the header it was told, and counts requests per member. */
function recordingNamespace() {
  const calls: Array<{ member: string; header: string | null; url: string; body: string }> = [];
  const namespace: DurableObjectNamespaceLike = {
    idFromName: (name) => ({ name }),
    get: (id) => ({
      async fetch(request) {
        const member = (id as { name: string }).name;
        calls.push({
          member,
          header: request.headers.get(MEMBER_HEADER),
          url: request.url,
          body: await request.text(),
        });
        return Response.json({ member });
      },
    }),
  };
  return { namespace, calls };
}

describe('sessionNodeRouter', () => {
  it('sends a request to the member its session cookie names, telling it its name, with the request unchanged', async () => {
    const { namespace, calls } = recordingNamespace();
    const router = sessionNodeRouter({ binding: 'NODES', members: ['a', 'b', 'c'] });
    const res = await router.fetch(
      new Request('https://shop.example/cart?x=1', {
        method: 'POST',
        body: 'apple',
        headers: { cookie: `theme=dark; SESSIONID=${KEY}.b` },
      }),
      { NODES: namespace },
    );
    expect(await res.json()).toEqual({ member: 'b' });
    expect(calls).toEqual([{ member: 'b', header: 'b', url: 'https://shop.example/cart?x=1', body: 'apple' }]);
  });

  it('overwrites a member header a client sent', async () => {
    const { namespace, calls } = recordingNamespace();
    const router = sessionNodeRouter({ binding: 'NODES', members: ['a', 'b'] });
    await router.fetch(
      new Request('https://shop.example/', { headers: { cookie: `SESSIONID=${KEY}.a`, [MEMBER_HEADER]: 'evil' } }),
      { NODES: namespace },
    );
    expect(calls.map((c) => c.header)).toEqual(['a']);
  });

  it('spreads requests without a usable cookie over the members (no cookie, unknown member, malformed id, other cookie name)', async () => {
    const { namespace, calls } = recordingNamespace();
    const router = sessionNodeRouter({ binding: 'NODES', members: ['a', 'b'], cookieName: 'SID' });
    const cookies = [undefined, `SID=${KEY}.zz`, 'SID=not-an-id', `SESSIONID=${KEY}.a`];
    for (let i = 0; i < 200; i++) {
      const cookie = cookies[i % cookies.length];
      await router.fetch(new Request('https://shop.example/', cookie ? { headers: { cookie } } : {}), {
        NODES: namespace,
      });
    }
    const counts = { a: calls.filter((c) => c.member === 'a').length, b: calls.filter((c) => c.member === 'b').length };
    expect(counts.a + counts.b).toBe(200);
    // Random choice: each member gets a share (the chance of fewer than 50 of 200 is below 1e-12).
    expect(counts.a).toBeGreaterThan(50);
    expect(counts.b).toBeGreaterThan(50);
    // With the configured cookie name, the route is followed.
    await router.fetch(new Request('https://shop.example/', { headers: { cookie: `SID=${KEY}.b` } }), {
      NODES: namespace,
    });
    expect(calls.at(-1)?.member).toBe('b');
  });

  it('answers 500 naming the binding when the Worker has no such Durable Object namespace', async () => {
    const router = sessionNodeRouter({ binding: 'NODES', members: ['a'] });
    const res = await router.fetch(new Request('https://shop.example/'), { OTHER: 'x' });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'no Durable Object namespace bound as "NODES"', code: 'NO_BINDING' });
  });

  it('refuses an empty member list and member names that are not node ids', () => {
    expect(() => sessionNodeRouter({ binding: 'NODES', members: [] })).toThrow(InvalidOptionsError);
    expect(() => sessionNodeRouter({ binding: 'NODES', members: ['a', 'b.c', ''] })).toThrow(
      /member names are node ids.*"b\.c", ""/,
    );
  });
});
