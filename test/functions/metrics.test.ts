// Owns: tests of GET /metrics in Prometheus text as the Node server serves it (the admin routes of
// lib/admin plus the process metrics of adapters/node) and of the demo app's operator endpoints:
// /cluster (no CORS), /cluster/sessions, /cluster/ui and /metrics only with an admin guard.
import { afterEach, describe, expect, it } from 'vitest';
import { createDemoApp } from '../../functions/demo-app.ts';
import { processMetrics } from '../../adapters/node/index.ts';
import { consoleLogger, createCluster, MemoryBus, MemoryChannel, type ClusterNode } from '../../lib/index.ts';
import { CookieClient } from '../kit/cookie-client.ts';
import { FASTER } from '../kit/timings.ts';
import { waitFor } from '../../functions/launch/index.ts';

const running: ClusterNode[] = [];
const TOKEN = 'metrics-test-admin-token-0123456789';
const BEARER = { authorization: `Bearer ${TOKEN}` };

/** The demo app with the admin routes as the Node server mounts them, optionally with process metrics. */
function nodeApp(node: ClusterNode, withProcess = true) {
  return createDemoApp(node, {
    admin: {
      token: TOKEN,
      ...(withProcess ? { extraMetrics: processMetrics({ cluster: node.cluster, node: node.node }) } : {}),
    },
  });
}

afterEach(async () => {
  await Promise.all(
    running.splice(0).map((node) =>
      node
        .stop()
        .finally(() => node.channel.close())
        .catch(() => undefined),
    ),
  );
});

async function startNodes(names: string[], manager: 'delta' | 'backup' = 'delta'): Promise<ClusterNode[]> {
  const bus = new MemoryBus();
  const nodes: ClusterNode[] = [];
  for (const node of names) {
    const sessions = createCluster({
      cluster: 'metrics',
      node,
      manager,
      channel: new MemoryChannel(bus),
      logger: consoleLogger('silent'),
      ...FASTER,
    });
    running.push(sessions);
    await sessions.start();
    nodes.push(sessions);
  }
  await waitFor('every node to see the others ready', () =>
    nodes.every((n) => n.membership.readyMembers().length === names.length - 1),
  );
  return nodes;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** A strict parser of the Prometheus text format (0.0.4): throws on any line it does not understand. */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      const [, , metric, ...rest] = line.split(' ');
      expect(metric).toMatch(NAME);
      help.set(metric!, rest.join(' '));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, , metric, type] = line.split(' ');
      expect(metric).toMatch(NAME);
      expect(['counter', 'gauge', 'summary', 'histogram', 'untyped']).toContain(type);
      expect(types.has(metric!), `TYPE of ${metric} declared twice`).toBe(false);
      types.set(metric!, type!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)(?: (-?\d+))?$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (match[2]) {
      const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/g;
      let consumed = 0;
      for (const m of match[2].matchAll(labelRe)) {
        labels[m[1]!] = m[2]!;
        consumed += m[0].length;
      }
      expect(consumed, `labels of ${line}`).toBe(match[2].length);
    }
    const raw = match[3]!;
    // Like Prometheus (Go's ParseFloat), NaN and Inf in any case.
    const nan = /^nan$/i.test(raw);
    const value = nan ? Number.NaN : /^\+?inf$/i.test(raw) ? Infinity : /^-inf$/i.test(raw) ? -Infinity : Number(raw);
    if (!nan) expect(Number.isNaN(value), `value of ${line}`).toBe(false);
    if (match[4] !== undefined) expect(Number.isSafeInteger(Number(match[4]))).toBe(true);
    samples.push({ name: match[1]!, labels, value });
  }
  // Every sample belongs to a declared metric (summaries add _sum and _count).
  for (const sample of samples) {
    const base = types.has(sample.name) ? sample.name : sample.name.replace(/_(sum|count|bucket)$/, '');
    expect(types.has(base), `sample ${sample.name} has no TYPE`).toBe(true);
  }
  return { types, help, samples };
}

function value(exposition: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return exposition.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

async function scrape(app: {
  request(path: string, init?: RequestInit): Response | Promise<Response>;
}): Promise<Exposition> {
  const res = await app.request('/metrics', { headers: BEARER });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe('GET /metrics', () => {
  it('is Prometheus text with sessrep_ metrics following the naming conventions, plus process metrics', async () => {
    const [a] = await startNodes(['a', 'b']);
    const app = nodeApp(a!);
    const metrics = await scrape(app);
    const expected: Record<string, string> = {
      sessrep_messages_sent_total: 'counter',
      sessrep_messages_received_total: 'counter',
      sessrep_messages_dropped_total: 'counter',
      sessrep_bytes_sent_total: 'counter',
      sessrep_bytes_received_total: 'counter',
      sessrep_acks_timed_out_total: 'counter',
      sessrep_messages_resent_total: 'counter',
      sessrep_replication_errors_total: 'counter',
      sessrep_sessions_created_total: 'counter',
      sessrep_sessions_expired_total: 'counter',
      sessrep_sessions_invalidated_total: 'counter',
      sessrep_route_rewrites_total: 'counter',
      sessrep_sessions: 'gauge',
      sessrep_members: 'gauge',
      sessrep_ready: 'gauge',
      sessrep_state_transfer_sessions: 'gauge',
      sessrep_replication_lag_seconds: 'histogram',
      sessrep_sessions_rejected_total: 'counter',
      sessrep_channel_errors_total: 'counter',
      sessrep_resyncs_total: 'counter',
      sessrep_resync_repairs_total: 'counter',
      process_cpu_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
      nodejs_eventloop_lag_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) expect(metrics.types.get(name), name).toBe(type);
    for (const [name, type] of metrics.types) {
      if (!name.startsWith('sessrep_')) continue;
      expect(metrics.help.get(name), `HELP of ${name}`).toBeTruthy();
      // Counters end in _total and only counters do; durations are in seconds.
      expect(name.endsWith('_total'), name).toBe(type === 'counter');
      expect(name).not.toMatch(/_ms$|_millis/);
    }
    // Every series names its cluster and node.
    for (const sample of metrics.samples) expect(sample.labels).toMatchObject({ cluster: 'metrics', node: 'a' });
    expect(value(metrics, 'sessrep_members', { state: 'alive' })).toBe(2);
    expect(value(metrics, 'sessrep_members', { state: 'suspected' })).toBe(0);
    expect(value(metrics, 'sessrep_ready')).toBe(1);
    expect(value(metrics, 'sessrep_sessions', { role: 'replica' })).toBe(0);
    expect(value(metrics, 'sessrep_messages_sent_total', { kind: 'hb' })).toBeGreaterThan(0);
    expect(value(metrics, 'sessrep_replication_lag_seconds_count')).toBe(0);
    // A histogram, not a summary: no quantiles, cumulative buckets (all empty so far).
    expect(value(metrics, 'sessrep_replication_lag_seconds', { quantile: '0.5' })).toBeUndefined();
    expect(value(metrics, 'sessrep_replication_lag_seconds_bucket', { le: '+Inf' })).toBe(0);
  });

  it('values change after traffic: messages, bytes, sessions, lag', async () => {
    const [a, b] = await startNodes(['a', 'b']);
    const appA = nodeApp(a!, false);
    const appB = nodeApp(b!, false);
    const beforeA = await scrape(appA);
    const beforeB = await scrape(appB);
    expect(value(beforeA, 'sessrep_messages_sent_total', { kind: 'delta' })).toBeUndefined();

    const clients = Array.from({ length: 3 }, () => new CookieClient());
    for (const client of clients) {
      for (let i = 0; i < 3; i++) {
        const res = await appA.request('/counter', {
          method: 'POST',
          headers: client.cookie ? { cookie: `SESSIONID=${client.cookie}` } : {},
        });
        expect(res.status).toBe(200);
        for (const line of res.headers.getSetCookie()) client.absorb(line);
      }
    }
    await waitFor('b to apply the last write of every session', () =>
      clients.every((client) => {
        const key = client.cookie!.slice(0, client.cookie!.lastIndexOf('.'));
        const counter = b!.manager.find(key)?.attributes.get('counter');
        return (
          counter !== undefined &&
          a!.manager.find(key)?.attributes.get('counter')?.stamp.join() === counter.stamp.join()
        );
      }),
    );

    const afterA = await scrape(appA);
    const afterB = await scrape(appB);
    // Async deltas of one event-loop turn may share a message: at least one, and what the library counted.
    expect(value(afterA, 'sessrep_messages_sent_total', { kind: 'delta' })).toBeGreaterThanOrEqual(1);
    expect(value(afterA, 'sessrep_messages_sent_total', { kind: 'delta' })).toBe(a!.stats.sent.delta);
    expect(value(afterA, 'sessrep_bytes_sent_total')!).toBeGreaterThan(value(beforeA, 'sessrep_bytes_sent_total')!);
    expect(value(afterA, 'sessrep_sessions_created_total')).toBe(3);
    expect(value(afterA, 'sessrep_sessions', { role: 'replica' })).toBe(3);
    expect(value(afterB, 'sessrep_sessions', { role: 'replica' })).toBe(3);
    expect(value(afterB, 'sessrep_messages_received_total', { kind: 'delta' })).toBe(a!.stats.sent.delta);
    expect(value(afterB, 'sessrep_bytes_received_total')!).toBeGreaterThan(
      value(beforeB, 'sessrep_bytes_received_total')!,
    );
    // One lag sample per applied delta: at least one per session.
    expect(value(afterB, 'sessrep_replication_lag_seconds_count')).toBe(b!.stats.lagTotals().count);
    expect(value(afterB, 'sessrep_replication_lag_seconds_count')).toBeGreaterThanOrEqual(3);
    // Cumulative buckets: non-decreasing, +Inf equals _count, and a p50 and p99 computable from them.
    const buckets = afterB.samples.filter((s) => s.name === 'sessrep_replication_lag_seconds_bucket');
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const count = value(afterB, 'sessrep_replication_lag_seconds_count')!;
    expect(value(afterB, 'sessrep_replication_lag_seconds_bucket', { le: '+Inf' })).toBe(count);
    const quantile = (q: number) => Number(buckets.find((s) => s.value >= q * count)!.labels.le);
    const p50 = quantile(0.5);
    const p99 = quantile(0.99);
    expect(p50).toBeGreaterThanOrEqual(0);
    expect(p99).toBeGreaterThanOrEqual(p50);
    expect(p99).toBeLessThan(1); // seconds, in process
    expect(value(afterB, 'sessrep_replication_lag_seconds_sum')).toBeGreaterThanOrEqual(0);
  });

  it('backup manager: sessions by role', async () => {
    const [a, b, c] = await startNodes(['a', 'b', 'c'], 'backup');
    const res = await createDemoApp(a!).request('/counter', { method: 'POST' });
    expect(res.status).toBe(200);
    await waitFor('every node to know the session', () => [a, b, c].every((n) => n!.status().sessions.total === 1));
    const roles = await Promise.all(
      [a, b, c].map(async (n) => {
        const metrics = await scrape(nodeApp(n!, false));
        return ['primary', 'backup', 'proxy'].map((role) => value(metrics, 'sessrep_sessions', { role }));
      }),
    );
    expect(roles[0]).toEqual([1, 0, 0]);
    expect(roles.slice(1).sort()).toEqual([
      [0, 0, 1],
      [0, 1, 0],
    ]);
  });
});

describe("the demo app's operator endpoints", () => {
  it('/cluster needs the admin token and sends no CORS header; without an admin guard only the probes exist', async () => {
    const [a] = await startNodes(['a']);
    const app = nodeApp(a!);
    expect((await app.request('/cluster')).status).toBe(401);
    const cluster = await app.request('/cluster', { headers: { ...BEARER, origin: 'https://elsewhere.example' } });
    expect(cluster.status).toBe(200);
    expect(cluster.headers.get('access-control-allow-origin')).toBeNull();
    expect(await cluster.json()).toMatchObject({
      node: 'a',
      rates: { windowSeconds: expect.any(Number) },
      replicationLag: { samples: 0 },
      draining: false,
    });

    const plain = createDemoApp(a!);
    expect((await plain.request('/cluster', { headers: BEARER })).status).toBe(404);
    expect((await plain.request('/metrics', { headers: BEARER })).status).toBe(404);
    expect((await plain.request('/cluster/ui', { headers: BEARER })).status).toBe(404);
    expect((await plain.request('/readyz')).status).toBe(200);

    const ui = await app.request('/cluster/ui', { headers: BEARER });
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-type')).toContain('text/html');
    expect(await ui.text()).toContain('<title>Cluster dashboard · session-replication</title>');
  });

  it('/cluster/sessions lists key prefixes, honours limit, rejects a bad limit, and sends no CORS header', async () => {
    const [a] = await startNodes(['a']);
    const app = nodeApp(a!);
    const cookies: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await app.request('/counter', { method: 'POST' });
      const line = res.headers.getSetCookie()[0]!;
      cookies.push(line.slice('SESSIONID='.length).split(';')[0]!);
    }
    const res = await app.request('/cluster/sessions?limit=2', { headers: BEARER });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const list = (await res.json()) as { total: number; sessions: { key: string }[] };
    expect(list.total).toBe(5);
    expect(list.sessions).toHaveLength(2);
    const all = await (await app.request('/cluster/sessions', { headers: BEARER })).text();
    for (const cookie of cookies) {
      const key = cookie.slice(0, cookie.lastIndexOf('.'));
      expect(all).toContain(`"${key.slice(0, 8)}"`);
      expect(all).not.toContain(key);
    }
    for (const bad of ['0', '-1', 'abc', '1001', '2.5'])
      expect((await app.request(`/cluster/sessions?limit=${bad}`, { headers: BEARER })).status).toBe(400);
  });
});
