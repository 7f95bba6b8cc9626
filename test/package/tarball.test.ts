// Owns: what the packed tarball holds (dist, LICENSE, README, package.json and nothing else), that its core entry reaches no
// NATS or AWS module, that every entry of scripts/entries.ts is built and exported, and that publint and
// arethetypeswrong pass on it.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { distName, ENTRIES } from '../../scripts/entries.ts';
import { REPO_ROOT, removeDirOnExit } from '../kit/index.ts';
import { packTarball, runCommand } from '../kit/package.ts';

let tarball: string;
/** The extracted tarball's `package/` folder. */
let unpacked: string;
let files: string[];

beforeAll(async () => {
  tarball = await packTarball();
  const dir = mkdtempSync(join(tmpdir(), 'sessrep-tarball-'));
  removeDirOnExit(dir);
  const extract = await runCommand('tar', ['-xzf', tarball, '-C', dir], { cwd: dir });
  expect(extract.code).toBe(0);
  unpacked = join(dir, 'package');
  const list = await runCommand('tar', ['-tzf', tarball], { cwd: dir });
  files = list.stdout
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''))
    .sort();
}, 300_000);

/** The bare specifiers (packages) that `file` reaches through its static and dynamic imports of relative files in dist/. */
function packagesReached(file: string, seen = new Set<string>()): Set<string> {
  const found = new Set<string>();
  if (seen.has(file)) return found;
  seen.add(file);
  // Comments (doc examples) are not imports.
  const code = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  for (const [, specifier] of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g)) {
    if (specifier!.startsWith('.'))
      for (const pkg of packagesReached(join(dirname(file), specifier!), seen)) found.add(pkg);
    else found.add(specifier!);
  }
  return found;
}

describe('the packed tarball', () => {
  it('holds only dist/, LICENSE, README.md and package.json', () => {
    const outside = files.filter(
      (f) => !f.startsWith('dist/') && !['LICENSE', 'README.md', 'package.json'].includes(f),
    );
    expect(outside).toEqual([]);
    expect(
      files.filter(
        (f) =>
          /(^|\/)(test|bench|soak|stubs|infra|functions|lib|scripts|node_modules)\//.test(f) ||
          /\.test\.|\.ts$/.test(f.replace(/\.d\.mts$/, '')),
      ),
    ).toEqual([]);
    expect(readFileSync(join(unpacked, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0, January 2004/);
  });

  it('builds and exports every entry of scripts/entries.ts, each with its declarations', () => {
    const manifest = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; import: string }>;
    };
    expect(Object.keys(manifest.exports).sort()).toEqual([...ENTRIES.map((e) => e.subpath), './package.json'].sort());
    for (const entry of ENTRIES) {
      expect(manifest.exports[entry.subpath]).toEqual({
        types: `./dist/${distName(entry)}.d.mts`,
        import: `./dist/${distName(entry)}.mjs`,
      });
      expect(files).toContain(`dist/${distName(entry)}.mjs`);
      expect(files).toContain(`dist/${distName(entry)}.d.mts`);
    }
  });

  it("has a core entry that imports no NATS or AWS package, only hono and the package's dependencies", () => {
    const manifest = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const allowed = new Set(['hono', ...Object.keys(manifest.dependencies)]);
    const reached = [...packagesReached(join(unpacked, 'dist/index.mjs'))].sort();
    const packageOf = (specifier: string) =>
      specifier
        .split('/')
        .slice(0, specifier.startsWith('@') ? 2 : 1)
        .join('/');
    expect(reached.filter((specifier) => !allowed.has(packageOf(specifier)))).toEqual([]);
    expect(reached.filter((specifier) => /^@(nats-io|aws-sdk)\//.test(specifier))).toEqual([]);
    expect(reached).toContain('hono/factory');
  });

  it('has subpath entries that reach their peers only through the guard (a missing peer is a typed error)', () => {
    expect([...packagesReached(join(unpacked, 'dist/nats.mjs'))]).toContain('@nats-io/nats-core');
    expect(readFileSync(join(unpacked, 'dist/nats.mjs'), 'utf8')).toContain(
      'loadOptionalPeer("session-replication/nats", ["@nats-io/nats-core"]',
    );
  });

  it('passes publint --strict', { timeout: 60_000 }, async () => {
    const result = await runCommand(
      process.execPath,
      [join(REPO_ROOT, 'node_modules/publint/src/cli.js'), 'run', tarball, '--strict'],
      { cwd: REPO_ROOT },
    );
    expect(result.stdout).toContain('All good!');
    expect(result.code).toBe(0);
  });

  it('passes arethetypeswrong (ESM-only profile) for every entry', { timeout: 60_000 }, async () => {
    const result = await runCommand(
      process.execPath,
      [
        join(REPO_ROOT, 'node_modules/@arethetypeswrong/cli/dist/index.js'),
        tarball,
        '--profile',
        'esm-only',
        '--format',
        'json',
      ],
      { cwd: REPO_ROOT },
    );
    const report = JSON.parse(result.stdout) as {
      analysis: { entrypoints: Record<string, unknown> };
      problems?: Record<string, { resolutionKind?: string }[]>;
    };
    expect(Object.keys(report.analysis.entrypoints).sort()).toEqual(
      [...ENTRIES.map((e) => e.subpath), './package.json'].sort(),
    );
    // The ESM-only profile leaves out CommonJS consumers (node16 from CJS) and node10 resolution, which cannot load ESM-only packages.
    const problems = Object.values(report.problems ?? {})
      .flat()
      .filter((p) => !['node10', 'node16-cjs'].includes(p.resolutionKind ?? ''));
    expect(problems).toEqual([]);
    expect(result.code).toBe(0);
  });
});

describe('the entry tables', () => {
  it('package.json exports, tsconfig paths and jsr.json match scripts/entries.ts (npm run sync:entries)', {
    timeout: 60_000,
  }, async () => {
    const result = await runCommand(process.execPath, ['--import', 'tsx', 'scripts/sync-entries.ts', '--check'], {
      cwd: REPO_ROOT,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
