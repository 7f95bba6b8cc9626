// Owns: unit tests of lib/admin (adminRoutes): the required guard (401/403, constant-time token in
// Bearer or Basic), separate liveness and readiness, the cluster views, drain, the member proxy the
// dashboard uses instead of CORS, the dashboard page and Prometheus /metrics with a lag histogram.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { adminRoutes } from '../../../lib/admin/index.ts';
import { COVERED_STATS } from '../../../lib/admin/metrics.ts';
import { InvalidOptionsError, MemoryBus, MemoryChannel, type ChannelStatus } from '../../../lib/index.ts';
import { freePort, waitFor } from '../../../functions/launch/index.ts';
import { makeNode, onCleanup, sessionApp, startNodes } from '../../kit/memory-nodes.ts';

const TOKEN = 'admin-token-for-tests-0123456789';
const BEARER = { authorization: `Bearer ${TOKEN}` };
const basic = (user: string, password: string) => ({ authorization: `Basic ${btoa(`${user}:${password}`)}` });
const GUARDED = ['/cluster', '/cluster/sessions', '/cluster/drain', '/cluster/ui', '/metrics', '/cluster/members/b'];

describe('the guard', () => {
  it('is required: no token and no authorize, or a short token, throws InvalidOptionsError', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a']);
    expect(() => adminRoutes(a!, {})).toThrow(InvalidOptionsError);
    expect(() => adminRoutes(a!, {})).toThrow(/token.*authorize/);
    expect(() => adminRoutes(a!, { token: 'short' })).toThrow(InvalidOptionsError);
    expect(() => adminRoutes(a!, { authorize: () => true })).not.toThrow();
  });

  it('answers 401 with a challenge without or with a wrong token, and lets Bearer and Basic (any user) through', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a']);
    const admin = adminRoutes(a!, { token: TOKEN });
    for (const path of GUARDED) {
      const none = await admin.request(path);
      expect(none.status, path).toBe(401);
      expect(none.headers.get('www-authenticate'), path).toMatch(/^Basic realm="session-replication admin"/);
      expect((await admin.request(path, { headers: { authorization: `Bearer ${TOKEN}x` } })).status, path).toBe(401);
      expect(
        (await admin.request(path, { headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } })).status,
        path,
      ).toBe(401);
      expect(
        (await admin.request(path, { headers: basic('admin', 'wrong-password-of-any-length') })).status,
        path,
      ).toBe(401);
      expect((await admin.request(path, { headers: { authorization: 'Basic !!!not-base64' } })).status, path).toBe(401);
    }
    expect((await admin.request('/cluster', { headers: BEARER })).status).toBe(200);
    expect((await admin.request('/cluster', { headers: basic('anyone', TOKEN) })).status).toBe(200);
    expect((await admin.request('/metrics', { headers: basic('', TOKEN) })).status).toBe(200);
  });

  it('authorize(c) decides per request (403 when it refuses), after the token when both are set', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a']);
    const byHeader = adminRoutes(a!, { authorize: (c) => c.req.header('x-operator') === 'yes' });
    expect((await byHeader.request('/cluster')).status).toBe(403);
    expect((await byHeader.request('/cluster', { headers: { 'x-operator': 'yes' } })).status).toBe(200);
    const both = adminRoutes(a!, { token: TOKEN, authorize: async (c) => c.req.method === 'GET' });
    expect((await both.request('/cluster', { headers: { 'x-operator': 'yes' } })).status).toBe(401);
    expect((await both.request('/cluster', { headers: BEARER })).status).toBe(200);
    expect((await both.request('/cluster/drain', { method: 'POST', headers: BEARER })).status).toBe(403);
    expect(a!.drainStatus().state).toBe('serving');
  });

  it('leaves the probes open and sends no CORS header on any route', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a']);
    const admin = adminRoutes(a!, { token: TOKEN });
    expect((await admin.request('/healthz')).status).toBe(200);
    expect((await admin.request('/readyz')).status).toBe(200);
    for (const path of [...GUARDED, '/healthz', '/readyz']) {
      for (const headers of [{}, BEARER, { ...BEARER, origin: 'https://elsewhere.example' }]) {
        const res = await admin.request(path, { headers });
        expect(res.headers.get('access-control-allow-origin'), path).toBeNull();
      }
    }
    const preflight = await admin.request('/cluster', {
      method: 'OPTIONS',
      headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'GET' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('probes', () => {
  it('/healthz is alive while joining and draining; /readyz is 503 until joined and again while draining', async () => {
    const bus = new MemoryBus();
    await startNodes(bus, ['b']);
    const a = makeNode(bus, 'a');
    const admin = adminRoutes(a, { token: TOKEN });
    const joining = await admin.request('/readyz');
    expect(joining.status).toBe(503);
    expect(await joining.json()).toMatchObject({ ready: false, node: 'a', reason: 'joining' });
    expect((await admin.request('/healthz')).status).toBe(200);
    await a.start();
    const ready = await admin.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, node: 'a', stateTransfer: 'done' });
    expect(await (await admin.request('/healthz')).json()).toMatchObject({ status: 'alive', node: 'a', ready: true });

    expect((await admin.request('/cluster/drain', { method: 'POST', headers: BEARER })).status).toBe(202);
    const draining = await admin.request('/readyz');
    expect(draining.status).toBe(503);
    expect(await draining.json()).toMatchObject({ ready: false, draining: true, reason: 'draining' });
    expect((await admin.request('/healthz')).status).toBe(200);
  });

  it('/healthz fails once the channel reports it closed for good (a NATS connection that gave up)', async () => {
    const bus = new MemoryBus();
    const channel = new ReportingChannel(bus);
    const a = makeNode(bus, 'a', { channel });
    await a.start();
    const admin = adminRoutes(a, { authorize: () => true });
    expect((await admin.request('/healthz')).status).toBe(200);
    channel.report('reconnecting');
    expect((await admin.request('/healthz')).status).toBe(200);
    channel.report('closed');
    const dead = await admin.request('/healthz');
    expect(dead.status).toBe(503);
    expect(await dead.json()).toMatchObject({ status: 'closed', node: 'a' });
  });
});

/** A memory channel whose connection status the test sets. */
class ReportingChannel extends MemoryChannel {
  readonly #listeners: Array<(status: ChannelStatus) => void> = [];
  override onStatus(listener: (status: ChannelStatus) => void): void {
    this.#listeners.push(listener);
    super.onStatus(listener);
  }
  report(status: ChannelStatus): void {
    for (const listener of this.#listeners) listener(status);
  }
}

describe('cluster views and drain', () => {
  it('/cluster and /cluster/sessions (key prefixes only, a bounded limit)', async () => {
    const [a] = await startNodes(new MemoryBus(), ['a', 'b']);
    const admin = adminRoutes(a!, { token: TOKEN });
    const app = sessionApp(a!);
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await app.request('/set', { method: 'POST', body: JSON.stringify({ i }) });
      keys.push(((await res.json()) as { id: string }).id.split('.')[0]!);
    }
    const cluster = await admin.request('/cluster', { headers: BEARER });
    expect(cluster.headers.get('cache-control')).toBe('no-store');
    expect(await cluster.json()).toMatchObject({
      cluster: 'test',
      node: 'a',
      members: [{ node: 'a' }, { node: 'b' }],
      sessions: { total: 5 },
    });
    const two = (await (await admin.request('/cluster/sessions?limit=2', { headers: BEARER })).json()) as {
      total: number;
      sessions: { key: string }[];
    };
    expect(two.total).toBe(5);
    expect(two.sessions).toHaveLength(2);
    const all = await (await admin.request('/cluster/sessions', { headers: BEARER })).text();
    for (const key of keys) {
      expect(all).toContain(`"${key.slice(0, 8)}"`);
      expect(all).not.toContain(key);
    }
    for (const bad of ['0', '-1', 'abc', '1001', '2.5'])
      expect((await admin.request(`/cluster/sessions?limit=${bad}`, { headers: BEARER })).status, bad).toBe(400);
  });

  it('POST /cluster/drain starts draining (202) and GET reports it; a cross-origin POST is refused', async () => {
    const [a, b] = await startNodes(new MemoryBus(), ['a', 'b']);
    const admin = adminRoutes(b!, { token: TOKEN });
    const cross = await admin.request('http://127.0.0.1:8082/cluster/drain', {
      method: 'POST',
      headers: { ...BEARER, origin: 'https://evil.example' },
    });
    expect(cross.status).toBe(403);
    expect(b!.drainStatus().state).toBe('serving');
    const sameOrigin = await admin.request('http://127.0.0.1:8082/cluster/drain', {
      method: 'POST',
      headers: { ...BEARER, origin: 'http://127.0.0.1:8082' },
    });
    expect(sameOrigin.status).toBe(202);
    expect(await sameOrigin.json()).toMatchObject({ state: expect.stringMatching(/^draining|drained$/) });
    await waitFor(
      'b drained',
      async () =>
        ((await (await admin.request('/cluster/drain', { headers: BEARER })).json()) as { state: string }).state ===
        'drained',
    );
    await waitFor('a to see b draining', () => a!.status().members.find((m) => m.node === 'b')?.draining === true);
  });
});

describe('the dashboard and the member proxy', () => {
  it("serves the page same-origin only (CSP connect-src 'self') and proxies other members under the same mount path", async () => {
    const bus = new MemoryBus();
    const ports = [await freePort(), await freePort()];
    const withUrl = await Promise.all(
      ['x1', 'x2'].map(async (name, i) => {
        const node = makeNode(bus, name, { cluster: 'proxy', advertiseUrl: `http://127.0.0.1:${ports[i]}` });
        await node.start();
        const app = new Hono().route('/ops', adminRoutes(node, { token: TOKEN }));
        const server = serve({ fetch: app.fetch, port: ports[i]!, hostname: '127.0.0.1' });
        onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
        return { node, app };
      }),
    );
    const [x1, x2] = withUrl;
    await waitFor('x1 to see x2 with its URL', () =>
      x1!.node.status().members.some((m) => m.node === 'x2' && m.url !== undefined && m.ready),
    );
    const base = `http://127.0.0.1:${ports[0]}/ops`;

    const page = await fetch(`${base}/cluster/ui`, { headers: BEARER });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'");
    const html = await page.text();
    expect(html).toContain('/cluster/members/');
    expect(html).not.toMatch(/fetch\(`\$\{base\(view\.url\)\}/);

    const viaProxy = await fetch(`${base}/cluster/members/x2`, { headers: BEARER });
    expect(viaProxy.status).toBe(200);
    expect(await viaProxy.json()).toMatchObject({ node: 'x2', cluster: 'proxy' });
    const sessions = await fetch(`${base}/cluster/members/x2/sessions?limit=5`, { headers: BEARER });
    expect(await sessions.json()).toMatchObject({ node: 'x2', total: 0 });
    // The caller's credentials go along: without them neither this node nor the member answers.
    expect((await fetch(`${base}/cluster/members/x2`)).status).toBe(401);
    expect((await x1!.app.request('/ops/cluster/members/nobody', { headers: BEARER })).status).toBe(404);
    await x2!.node.stop();
    await waitFor('x2 to leave', () => !x1!.node.status().members.some((m) => m.node === 'x2'));
    expect((await fetch(`${base}/cluster/members/x2`, { headers: BEARER })).status).toBe(404);
  });
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Sample lines of a Prometheus text exposition (TYPE and HELP lines are checked separately). */
function samples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries(
        [...match[2]!.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]),
      );
      return { name: match[1]!, labels, value: match[3] === '+Inf' ? Infinity : Number(match[3]) };
    });
}

describe('/metrics', () => {
  it('is Prometheus text with a counter for every tracked stat and a lag histogram with cumulative buckets', async () => {
    const [a, b] = await startNodes(new MemoryBus(), ['a', 'b']);
    const app = sessionApp(a!);
    for (let i = 0; i < 4; i++)
      expect((await app.request('/set', { method: 'POST', body: JSON.stringify({ i }) })).status).toBe(200);
    await waitFor('b to apply the four sessions', () => b!.status().sessions.total === 4);
    const res = await adminRoutes(b!, {
      token: TOKEN,
      extraMetrics: () => '# HELP extra_metric x\n# TYPE extra_metric gauge\nextra_metric 1\n',
    }).request('/metrics', { headers: BEARER });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text.endsWith('extra_metric 1\n')).toBe(true);
    const all = samples(text.replace(/^extra_metric 1$/m, ''));

    // Every numeric counter of ReplicationStats is exported.
    const numeric = Object.entries(b!.stats.snapshot())
      .filter(([, v]) => typeof v === 'number' || (typeof v === 'object' && v !== null))
      .map(([k]) => k);
    for (const field of numeric) expect(COVERED_STATS, `stat ${field} has no metric`).toContain(field);
    const one = (name: string, labels: Record<string, string> = {}) =>
      all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    expect(one('sessrep_sessions_rejected_total')).toBe(0);
    expect(one('sessrep_channel_errors_total')).toBe(0);
    expect(one('sessrep_resyncs_total')).toBe(b!.stats.resyncs);
    expect(one('sessrep_messages_received_total', { kind: 'delta' })).toBe(b!.stats.received.delta);
    expect(one('sessrep_sessions', { role: 'replica' })).toBe(4);
    for (const s of all) expect(s.labels).toMatchObject({ cluster: 'test', node: 'b' });

    // The histogram: cumulative, non-decreasing buckets ending in +Inf = _count.
    const buckets = all.filter((s) => s.name === 'sessrep_replication_lag_seconds_bucket');
    expect(text).toContain('# TYPE sessrep_replication_lag_seconds histogram');
    expect(buckets.map((s) => s.labels.le)).toEqual([
      ...Array.from({ length: 17 }, (_, k) => String(2 ** k / 1000)),
      '+Inf',
    ]);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const count = one('sessrep_replication_lag_seconds_count')!;
    expect(count).toBe(b!.stats.lagTotals().count);
    expect(count).toBeGreaterThanOrEqual(4);
    expect(buckets.at(-1)!.value).toBe(count);
    // In process every lag is well under a second.
    expect(buckets.find((s) => s.labels.le === '1.024')!.value).toBe(count);
  });
});
