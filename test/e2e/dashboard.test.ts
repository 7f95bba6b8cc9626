// Owns: end-to-end test of the cluster dashboard (/cluster/ui) in real headless Chromium: three node
// processes (backup manager) on a nats-server started here; the page (behind the admin token, every
// member read through this node, no CORS) must show every member, the session distribution, and a
// SIGKILLed node as unreachable or dead within 5 s.
// Artifacts: test-output/dashboard.png (three live nodes) and test-output/dashboard-node-down.png (n3 killed).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_HEADERS,
  ADMIN_TOKEN,
  REPO_ROOT,
  CookieClient,
  startNatsServer,
  startNode,
  waitFor,
  type NatsServerHandle,
  type NodeHandle,
} from '../kit/index.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = resolve(REPO_ROOT, 'test-output/dashboard.png');
const SCREENSHOT_DOWN = resolve(REPO_ROOT, 'test-output/dashboard-node-down.png');
/** Sessions created through each node (each node becomes primary of its own). */
const PER_NODE = 4;

let nats: NatsServerHandle | undefined;
const nodes: NodeHandle[] = [];
let browser: BrowserContext | undefined;
let profile: string | undefined;
let page: Page;
const clients: { client: CookieClient; node: NodeHandle }[] = [];

interface BarRow {
  node: string;
  state: string;
  total: string;
  segments: Record<string, number>;
}

interface MemberRow {
  node: string;
  state: string;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
  nats = await startNatsServer();
  const cluster = `dash-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  for (let i = 1; i <= 3; i++) {
    nodes.push(
      await startNode({ cluster, node: `n${i}`, nats: nats.url, manager: 'backup', env: { LOG_LEVEL: 'warn' } }),
    );
  }
  await waitFor('every node to see three ready members', async () => {
    for (const node of nodes) {
      const status = (await (await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
        members: { ready: boolean }[];
      };
      if (status.members.filter((m) => m.ready).length !== 3) return false;
    }
    return true;
  });
  // Sessions through every node, then wait until every node knows all of them (map broadcasts).
  for (const node of nodes) {
    for (let i = 0; i < PER_NODE; i++) {
      const client = new CookieClient();
      expect((await client.request(node.url, 'POST', '/counter')).status).toBe(200);
      clients.push({ client, node });
    }
  }
  await waitFor('every node to know every session', async () => {
    for (const node of nodes) {
      const status = (await (await fetch(`${node.url}/cluster`, { headers: ADMIN_HEADERS })).json()) as {
        sessions: { total: number };
      };
      if (status.sessions.total !== 3 * PER_NODE) return false;
    }
    return true;
  });
  profile = mkdtempSync(join(tmpdir(), 'dashboard-chromium-'));
  // A fresh profile directory: launchPersistentContext passes it as --user-data-dir.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1360, height: 1000 },
    // The dashboard asks for the admin token with HTTP Basic auth (any user name).
    httpCredentials: { username: 'operator', password: ADMIN_TOKEN },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
}, 90_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await Promise.allSettled(nodes.map((node) => node.stop()));
  await nats?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function bars(): Promise<BarRow[]> {
  return page.$$eval('.bar-row', (rows) =>
    rows.map((row) => {
      const r = row as HTMLElement;
      const segments: Record<string, number> = {};
      for (const seg of Array.from(r.querySelectorAll<HTMLElement>('.seg')))
        segments[seg.dataset.role!] = Number(seg.dataset.count);
      return { node: r.dataset.node!, state: r.dataset.state!, total: r.dataset.total!, segments };
    }),
  );
}

async function members(): Promise<MemberRow[]> {
  return page.$$eval('#members tbody tr', (rows) =>
    rows.map((row) => ({ node: (row as HTMLElement).dataset.node!, state: (row as HTMLElement).dataset.state! })),
  );
}

describe('the cluster dashboard (/cluster/ui) in headless Chromium', () => {
  it('answers 401 with a Basic challenge without the admin token, and sends no CORS header', async () => {
    const anonymous = await fetch(`${nodes[0]!.url}/cluster/ui`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /);
    const cluster = await fetch(`${nodes[0]!.url}/cluster`, {
      headers: { ...ADMIN_HEADERS, origin: 'https://elsewhere.example' },
    });
    expect(cluster.status).toBe(200);
    expect(cluster.headers.get('access-control-allow-origin')).toBeNull();
  });

  it(`shows three alive members, the session distribution and the sessions table; screenshot at ${SCREENSHOT}`, async () => {
    const response = await page.goto(`${nodes[0]!.url}/cluster/ui`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-type']).toContain('text/html');

    await waitFor('three alive members on the page', async () => {
      const rows = await members();
      return rows.length === 3 && rows.every((r) => r.state === 'alive') ? rows : false;
    });
    expect((await members()).map((r) => r.node)).toEqual(['n1', 'n2', 'n3']);
    expect(await page.textContent('#members tbody tr[data-node=n1]')).toContain('(this node)');

    // Every node knows all 12 sessions: 4 primaries each, 4 backups each, the rest proxies.
    const total = 3 * PER_NODE;
    const rows = await waitFor('three bars with every session', async () => {
      const found = await bars();
      return found.length === 3 &&
        found.every((b) => Number(b.total) === total) &&
        found.some((b) => (b.segments.primary ?? 0) > 0)
        ? found
        : false;
    });
    expect(rows.map((b) => b.node)).toEqual(['n1', 'n2', 'n3']);
    expect(rows.reduce((sum, b) => sum + (b.segments.primary ?? 0), 0)).toBe(total);
    expect(rows.reduce((sum, b) => sum + (b.segments.backup ?? 0), 0)).toBe(total);
    for (const b of rows) expect(b.segments.primary).toBe(PER_NODE);
    expect(await page.textContent('#c-sessions')).toBe(String(total));
    expect(await page.textContent('#cluster')).toBe(nodes[0]!.cluster);

    // The sessions table: 12 rows of 8-character key prefixes, with primary and backup.
    const sessionRows = await waitFor('the sessions table', async () => {
      const found = await page.$$eval('#sessions tbody tr[data-key]', (trs) =>
        trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? '')),
      );
      return found.length === total ? found : false;
    });
    for (const [key, primary, backup] of sessionRows) {
      expect(key).toMatch(/^[A-Za-z0-9_-]{8}…$/);
      expect(['n1', 'n2', 'n3']).toContain(primary);
      expect(['n1', 'n2', 'n3']).toContain(backup);
      expect(backup).not.toBe(primary);
    }
    // Some traffic (each session on its own primary) while the rate chart collects a few seconds of points.
    let turn = 0;
    await waitFor(
      'the message rate chart to have 8 points',
      async () => {
        const { client, node } = clients[turn++ % clients.length]!;
        expect((await client.request(node.url, 'POST', '/counter')).status).toBe(200);
        return (
          Number(await page.getAttribute('#chart', 'data-points')) >= 8 &&
          (await page.$$('#chart polyline')).length === 2
        );
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    const outRate = Number((await page.textContent('#r-out'))?.replace(/,/g, ''));
    expect(outRate).toBeGreaterThan(0);

    // The Node server also serves /metrics (the admin routes, plus process metrics) next to the dashboard.
    const metrics = await fetch(`${nodes[0]!.url}/metrics`, { headers: ADMIN_HEADERS });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toMatch(
      new RegExp(`^sessrep_sessions\\{role="primary",cluster="${nodes[0]!.cluster}",node="n1"\\} ${PER_NODE}$`, 'm'),
    );
    expect(text).toMatch(/^process_cpu_seconds_total\{/m);

    mkdirSync(resolve(REPO_ROOT, 'test-output'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`dashboard screenshot: ${SCREENSHOT}`);
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it(`shows a SIGKILLed member as unreachable or dead within 5 seconds; screenshot at ${SCREENSHOT_DOWN}`, async () => {
    const victim = nodes[2]!;
    victim.kill('SIGKILL');
    const killedAt = Date.now();
    const state = await waitFor(
      'n3 shown unreachable or dead',
      async () => {
        const member = (await members()).find((r) => r.node === 'n3');
        const bar = (await bars()).find((b) => b.node === 'n3');
        const down = (s: string | undefined) => s === 'unreachable' || s === 'dead';
        return member && bar && down(member.state) && down(bar.state) ? member.state : false;
      },
      { timeoutMs: 5000, intervalMs: 100 },
    );
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(['unreachable', 'dead']).toContain(state);
    // The survivors stay alive on the page, and the members card counts the loss.
    const rows = await members();
    expect(rows.filter((r) => r.node !== 'n3').map((r) => r.state)).toEqual(['alive', 'alive']);
    expect(await page.textContent('#c-members-sub')).toMatch(/unreachable or dead/);

    // Once the cluster declares n3 dead, the survivors take over its primaries: 12 again on n1 + n2.
    await waitFor(
      'n3 dead and its sessions taken over',
      async () => {
        const found = await bars();
        const n3 = found.find((b) => b.node === 'n3');
        const primaries = found.filter((b) => b.node !== 'n3').reduce((sum, b) => sum + (b.segments.primary ?? 0), 0);
        return n3?.state === 'dead' && primaries === 3 * PER_NODE;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    await page.screenshot({ path: SCREENSHOT_DOWN, fullPage: true });
    console.log(`dashboard screenshot: ${SCREENSHOT_DOWN}`);
  });
});
