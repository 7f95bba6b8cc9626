// Owns: the JSR side of the package: jsr.json lists the same entries as package.json, and `deno publish --dry-run` passes
// (no slow types in the public API: every exported symbol has an explicit type).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENTRIES } from '../../scripts/entries.ts';
import { REPO_ROOT } from '../kit/index.ts';
import { runCommand } from '../kit/package.ts';

describe('JSR publishing', () => {
  it("jsr.json exports the TypeScript source of every entry, with the package's version", () => {
    const jsr = JSON.parse(readFileSync(join(REPO_ROOT, 'jsr.json'), 'utf8')) as {
      version: string;
      exports: Record<string, string>;
    };
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(jsr.exports).toEqual(Object.fromEntries(ENTRIES.map((e) => [e.subpath, `./${e.source}`])));
    expect(jsr.version).toBe(manifest.version);
  });

  it('deno publish --dry-run passes without slow types', { timeout: 180_000 }, async () => {
    const deno = join(REPO_ROOT, 'node_modules', '.bin', 'deno');
    const result = await runCommand(deno, ['publish', '--dry-run', '--allow-dirty', '--no-check=remote'], {
      cwd: REPO_ROOT,
      env: { DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
      timeoutMs: 170_000,
    });
    const output = result.stdout + result.stderr;
    expect(output).not.toMatch(/^error/m);
    expect(output).toContain('Success Dry run complete');
    expect(result.code).toBe(0);
  });
});
