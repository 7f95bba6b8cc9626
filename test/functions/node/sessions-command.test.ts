// Owns: tests of `session-replication sessions list|kill --principal` against a node's admin routes over HTTP.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sessionsCommand } from '../../../functions/node/sessions-command.ts';
import { adminRoutes } from '../../../lib/admin/index.ts';
import { MemoryBus, type SessionVariables } from '../../../lib/index.ts';
import { parseSessionId } from '../../../lib/session/ids.ts';
import { freePort, waitFor } from '../../../functions/launch/index.ts';
import { onCleanup, startNodes } from '../../kit/memory-nodes.ts';

const TOKEN = 'admin-token-for-tests-0123456789';

afterEach(() => vi.restoreAllMocks());

describe('sessions list|kill --principal', () => {
  it("lists a user's sessions (key prefixes) and kills them on every node; the admin routes need the token", async () => {
    const [a, b] = await startNodes(new MemoryBus(), ['a', 'b']);
    const app = new Hono<{ Variables: SessionVariables }>();
    app.use(a!.middleware());
    app.post('/login/:user', (c) => {
      c.get('session').setPrincipal(c.req.param('user'));
      return c.text(c.get('session').id);
    });
    const keys: string[] = [];
    for (const user of ['ada', 'ada', 'bob'])
      keys.push(
        parseSessionId(await (await app.request(`http://app.test/login/${user}`, { method: 'POST' })).text())!.key,
      );
    await waitFor('the sessions on b', () => keys.every((key) => b!.manager.find(key) !== undefined));

    const admin = new Hono().route('/', adminRoutes(b!, { token: TOKEN }));
    expect((await admin.request('/cluster/principals/ada/sessions')).status).toBe(401);
    const port = await freePort();
    const server = serve({ fetch: admin.fetch, port, hostname: '127.0.0.1' });
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${port}`;

    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    await sessionsCommand().parseAsync(['list', '--principal', 'ada', '--url', url, '--admin-token', TOKEN], {
      from: 'user',
    });
    expect(out.join('')).toMatch(/^2 session\(s\) of ada\n/);
    for (const key of keys.slice(0, 2)) expect(out.join('')).toContain(`${key.slice(0, 8)}…`);
    expect(out.join('')).not.toContain(keys[0]!); // never the whole key

    out.length = 0;
    await sessionsCommand().parseAsync(['kill', '--principal', 'ada', '--url', url, '--admin-token', TOKEN], {
      from: 'user',
    });
    expect(out.join('')).toBe('ended 2 session(s) of ada on every node\n');
    await waitFor("ada's sessions ended on a", () =>
      keys.slice(0, 2).every((key) => a!.manager.find(key) === undefined),
    );
    expect(a!.manager.find(keys[2]!)).toBeDefined();
    await expect(
      sessionsCommand().parseAsync(['kill', '--principal', 'ada', '--url', url], { from: 'user' }),
    ).rejects.toThrow(/401.*SESSREP_ADMIN_TOKEN/);
  });
});
