// Owns: tests of `npm run check:web` (scripts/check-web.mjs): lib/ passes, and the check bites on Node code.
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, spawnTracked } from '../kit/index.ts';

const FIXTURES = 'test/lib/fixtures/web-only';

/** Runs the check as CI does (`node scripts/check-web.mjs [entries]`) and returns its exit code and output. */
async function checkWeb(...entries: string[]): Promise<{ code: number | null; output: string }> {
  const proc = spawnTracked(process.execPath, ['scripts/check-web.mjs', ...entries], {
    cwd: REPO_ROOT,
    name: 'check-web',
  });
  const { code } = await proc.exited;
  return { code, output: proc.output() };
}

describe('check:web (lib/ stays Web-standard)', () => {
  it('passes on every module of lib/, with the NATS, JetStream and DynamoDB entry points bundled for a Web-only target', {
    timeout: 180_000,
  }, async () => {
    const { code, output } = await checkWeb();
    expect(output).toMatch(/check:web ok: \d+ entry point\(s\)/);
    // The package's entry points are among them (the DynamoDB store bundles with the SDK's browser build).
    for (const entry of ['lib/index.ts', 'lib/channel/nats.ts', 'lib/log/jetstream.ts', 'lib/store/dynamodb.ts'])
      expect(output).toContain(`${entry} `);
    expect(code).toBe(0);
  });

  it('fails on a module importing node:fs, naming the import and the file', { timeout: 120_000 }, async () => {
    const { code, output } = await checkWeb(`${FIXTURES}/node-fs.ts`);
    expect(code).toBe(1);
    expect(output).toContain(`Node import "node:fs" in ${FIXTURES}/node-fs.ts`);
  });

  it('fails on a bare built-in (crypto), on Node globals (process, Buffer), and on a Node-only dependency', {
    timeout: 120_000,
  }, async () => {
    const { code, output } = await checkWeb(
      `${FIXTURES}/bare-builtin.ts`,
      `${FIXTURES}/node-globals.ts`,
      `${FIXTURES}/node-dependency.ts`,
    );
    expect(code).toBe(1);
    expect(output).toContain(`Node import "crypto" in ${FIXTURES}/bare-builtin.ts`);
    expect(output).toMatch(/node-globals\.ts\(2,\d+\): error TS\d+: Cannot find name 'process'/);
    expect(output).toMatch(/node-globals\.ts\(3,\d+\): error TS\d+: Cannot find name 'Buffer'/);
    // The guard follows imports into node_modules: the TCP transport of NATS is Node-only.
    expect(output).toMatch(/Node import "node:net" in node_modules\/@nats-io\/transport-node\//);
  });

  it('passes Web-standard code that looks at a runtime global through globalThis', { timeout: 120_000 }, async () => {
    const { code, output } = await checkWeb(`${FIXTURES}/web-only.ts`);
    expect(output).toContain('check:web ok: 1 entry point(s)');
    expect(code).toBe(0);
  });
});
