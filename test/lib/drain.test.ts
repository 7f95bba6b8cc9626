// Owns: draining a node on the in-process channel: hand-over of primaries and backups (backup manager),
// waiting for acks (delta manager), 503s for new sessions, /readyz and /cluster/drain, the quiet period.
import { describe, expect, it } from 'vitest';
import { MemoryBus } from '../../lib/channel/memory.ts';
import type { ClusterNode } from '../../lib/cluster/index.ts';
import type { BackupManager } from '../../lib/managers/backup/backup-manager.ts';
import { createDemoApp } from '../../functions/demo-app.ts';
import { waitFor } from '../../functions/launch/index.ts';
import { CookieClient } from '../kit/cookie-client.ts';
import { attributesOn, startNodes, stopNode } from '../kit/memory-nodes.ts';

const ADMIN = { token: 'drain-test-admin-token-0123456789' };
const BEARER = { authorization: `Bearer ${ADMIN.token}` };
/** The demo app with its admin routes, as the Node server serves it. */
const demo = (node: ClusterNode) => createDemoApp(node, { admin: ADMIN });

/** A cookie-keeping client for in-process demo apps. */
class AppClient {
  readonly jar = new CookieClient();
  async request(node: ClusterNode, method: string, path: string, headers: Record<string, string> = {}) {
    const app = demo(node);
    const res = await app.request(path, {
      method,
      headers: { ...headers, ...(this.jar.cookie ? { cookie: `SESSIONID=${this.jar.cookie}` } : {}) },
    });
    for (const line of res.headers.getSetCookie()) this.jar.absorb(line);
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
  }
  get key(): string {
    return this.jar.cookie!.slice(0, this.jar.cookie!.lastIndexOf('.'));
  }
}

async function drainStatus(node: ClusterNode) {
  const res = await demo(node).request('/cluster/drain', { headers: BEARER });
  return (await res.json()) as { state: string; remaining: number; inFlight: number; durationMs?: number };
}

describe('drain: delta manager', () => {
  it('refuses new sessions with 503 + Retry-After, keeps serving existing ones, fails /readyz, and reports drained after the quiet period', async () => {
    const bus = new MemoryBus();
    const [n1, n2] = await startNodes(bus, ['n1', 'n2'], { sendMode: 'ack', drainQuietMs: 200 });
    const user = new AppClient();
    expect((await user.request(n1!, 'POST', '/counter')).json.counter).toBe(1);
    expect(await drainStatus(n1!)).toMatchObject({ state: 'serving', remaining: 0 });

    const started = await demo(n1!).request('/cluster/drain', { method: 'POST', headers: BEARER });
    expect(started.status).toBe(202);
    expect(((await started.json()) as { state: string }).state).toBe('draining');
    expect((await demo(n1!).request('/readyz')).status).toBe(503);
    // Still alive: an orchestrator must not restart a draining node.
    expect((await demo(n1!).request('/healthz')).status).toBe(200);
    // The other member sees it draining through the heartbeat.
    await waitFor(
      'n2 to see n1 draining',
      () => n2!.status().members.find((m) => m.node === 'n1')?.state === 'draining',
    );

    const newcomer = new AppClient();
    const refused = await newcomer.request(n1!, 'POST', '/counter');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.json).toEqual({ error: 'this node is draining: retry on another node', code: 'NODE_DRAINING' });
    expect(newcomer.jar.cookie).toBeUndefined();
    // The same request on a serving node creates the session.
    expect((await newcomer.request(n2!, 'POST', '/counter')).status).toBe(200);

    // An existing session is still served while draining (every member holds it).
    expect((await user.request(n1!, 'POST', '/counter')).json.counter).toBe(2);
    const drained = await waitFor(
      'n1 drained',
      async () => ((await drainStatus(n1!)).state === 'drained' ? drainStatus(n1!) : undefined),
      { timeoutMs: 5000 },
    );
    expect(drained.remaining).toBe(0);
    expect(drained.durationMs).toBeGreaterThanOrEqual(200);
    expect(attributesOn(n2!, user.key)).toEqual({ counter: 2 });

    // A cross-site page cannot start a drain.
    const cross = await demo(n2!).request('http://127.0.0.1:8082/cluster/drain', {
      method: 'POST',
      headers: { ...BEARER, origin: 'https://evil.example' },
    });
    expect(cross.status).toBe(403);
    expect((await drainStatus(n2!)).state).toBe('serving');
  });

  it('a request in flight keeps the node draining until it finished', async () => {
    const bus = new MemoryBus();
    const [n1] = await startNodes(bus, ['n1', 'n2'], { drainQuietMs: 50 });
    const user = new AppClient();
    await user.request(n1!, 'POST', '/counter');
    // A slow handler behind the session middleware.
    const app = createDemoApp(n1!);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    app.get('/session/slow', async (c) => {
      await gate;
      return c.text('done');
    });
    await n1!.drain();
    const slow = app.request('/session/slow', { headers: { cookie: `SESSIONID=${user.jar.cookie}` } });
    await waitFor('the slow request to be in flight', async () => (await drainStatus(n1!)).inFlight === 1);
    expect(await drainStatus(n1!)).toMatchObject({ state: 'draining', remaining: 1 });
    release();
    expect((await slow).status).toBe(200);
    await waitFor('n1 drained', async () => (await drainStatus(n1!)).state === 'drained', { timeoutMs: 3000 });
  });
});

describe('drain: backup manager', () => {
  it('hands every primary and backup to the others, with data on both new holders, then refuses the moved sessions', async () => {
    const bus = new MemoryBus();
    const [n1, n2, n3] = await startNodes(bus, ['n1', 'n2', 'n3'], {
      manager: 'backup',
      sendMode: 'ack',
      drainQuietMs: 100,
    });
    const users: { client: AppClient; counter: number }[] = [];
    // 30 sessions created on n1 (primary n1) and 30 on n2 (some backed up on n1).
    for (const node of [n1!, n2!]) {
      for (let i = 0; i < 30; i++) {
        const client = new AppClient();
        await client.request(node, 'POST', '/counter');
        await client.request(node, 'POST', '/counter');
        users.push({ client, counter: 2 });
      }
    }
    const before = n1!.manager.sessionCounts();
    expect(before.primary).toBe(30);
    expect(before.backup).toBeGreaterThan(5);

    const status = await n1!.drain();
    expect(status.remaining).toBe(0);
    expect(n1!.manager.sessionCounts()).toMatchObject({ primary: 0, backup: 0 });
    expect(n1!.manager.activeSessions()).toBe(0);

    // Every session has one primary and one backup among n2 and n3, both holding the data, on every node's map.
    for (const { client, counter } of users) {
      for (const node of [n2!, n3!]) {
        const entry = (node.manager as BackupManager).entry(client.key)!;
        expect(entry.primary === 'n2' || entry.primary === 'n3').toBe(true);
        expect([entry.primary, entry.backup].sort()).toEqual(['n2', 'n3']);
        expect(attributesOn(node, client.key)).toEqual({ counter });
      }
      await waitFor("n1's map to follow", () => (n1!.manager as BackupManager).entry(client.key)?.primary !== 'n1');
    }

    // On the draining node the moved sessions are refused (a load balancer retries elsewhere) ...
    const moved = users[0]!;
    const refused = await moved.client.request(n1!, 'POST', '/counter');
    expect(refused.status).toBe(503);
    // ... and served by their new primary with their last value; nothing went back to n1.
    for (const user of users.slice(0, 10)) {
      const reply = await user.client.request(n3!, 'POST', '/counter');
      expect(reply.json.counter).toBe(++user.counter);
    }
    expect(n1!.manager.sessionCounts()).toMatchObject({ primary: 0, backup: 0 });
    await waitFor('n1 drained', async () => (await drainStatus(n1!)).state === 'drained', { timeoutMs: 3000 });

    // Stopping the drained node loses nothing.
    await stopNode(n1!);
    for (const user of users) {
      const reply = await user.client.request(n2!, 'POST', '/counter');
      expect(reply.status).toBe(200);
      expect(reply.json.counter).toBe(++user.counter);
    }
  });

  it('with no other member to take the sessions it stays draining', async () => {
    const bus = new MemoryBus();
    const drainQuietMs = 10;
    const [n1] = await startNodes(bus, ['n1'], { manager: 'backup', drainQuietMs });
    const user = new AppClient();
    await user.request(n1!, 'POST', '/counter');
    void n1!.drain();
    // Kept: proves it does NOT become drained (no condition to wait on); 30 quiet periods, past a hand-over retry (250 ms).
    await new Promise((r) => setTimeout(r, 30 * drainQuietMs));
    expect(await drainStatus(n1!)).toMatchObject({ state: 'draining', remaining: 1 });
  });

  it('sessions made elsewhere after the drain started never pick the draining node as backup', async () => {
    const bus = new MemoryBus();
    const [n1, n2, n3] = await startNodes(bus, ['n1', 'n2', 'n3'], {
      manager: 'backup',
      sendMode: 'ack',
      drainQuietMs: 10,
    });
    await n1!.drain();
    await waitFor(
      'n2 to see n1 draining',
      () => n2!.membership.members().find((m) => m.node === 'n1')?.draining === true,
    );
    for (let i = 0; i < 10; i++) {
      const client = new AppClient();
      await client.request(i % 2 ? n2! : n3!, 'POST', '/counter');
      const entry = (n2!.manager as BackupManager).entry(client.key)!;
      expect(entry.backup).not.toBe('n1');
    }
    expect(n1!.manager.sessionCounts()).toMatchObject({ primary: 0, backup: 0 });
  });
});
