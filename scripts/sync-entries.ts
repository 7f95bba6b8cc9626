// Owns: `npm run sync:entries`: writes the entry tables derived from scripts/entries.ts.
//
//   node --import tsx scripts/sync-entries.ts           rewrite package.json `exports`, tsconfig.json `paths`, jsr.json `exports`
//   node --import tsx scripts/sync-entries.ts --check   change nothing; exit 1 naming each stale file
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distName, ENTRIES, specifier } from './entries.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** package.json `exports`: built ESM and its declarations per subpath, plus `./package.json`. */
function packageExports(): Record<string, unknown> {
  const exports: Record<string, unknown> = {};
  for (const entry of ENTRIES)
    exports[entry.subpath] = { types: `./dist/${distName(entry)}.d.mts`, import: `./dist/${distName(entry)}.mjs` };
  exports['./package.json'] = './package.json';
  return exports;
}

/** tsconfig.json `paths`: each specifier mapped to its source, so tsc and tsx resolve the package to `.ts` in development. */
function tsconfigPaths(): Record<string, string[]> {
  return Object.fromEntries(ENTRIES.map((entry) => [specifier(entry), [`./${entry.source}`]]));
}

/** jsr.json `exports`: JSR publishes the TypeScript sources. */
function jsrExports(): Record<string, string> {
  return Object.fromEntries(ENTRIES.map((entry) => [entry.subpath, `./${entry.source}`]));
}

/** Each derived table: its file and how to put the table into the parsed file. */
type Json = Record<string, unknown>;
const TARGETS: { file: string; apply: (json: Json) => Json }[] = [
  { file: 'package.json', apply: (json) => ({ ...json, exports: packageExports() }) },
  {
    file: 'tsconfig.json',
    apply: (json) => ({ ...json, compilerOptions: { ...(json.compilerOptions as Json), paths: tsconfigPaths() } }),
  },
  { file: 'jsr.json', apply: (json) => ({ ...json, exports: jsrExports() }) },
];

const check = process.argv.includes('--check');
const stale: string[] = [];
for (const { file, apply } of TARGETS) {
  const path = join(ROOT, file);
  const before = readFileSync(path, 'utf8');
  const after = `${JSON.stringify(apply(JSON.parse(before)), null, 2)}\n`;
  if (JSON.stringify(JSON.parse(before)) === JSON.stringify(JSON.parse(after))) continue;
  stale.push(file);
  if (!check) writeFileSync(path, after);
}
if (check && stale.length > 0) {
  console.error(`sync:entries: ${stale.join(', ')} out of date with scripts/entries.ts; run \`npm run sync:entries\``);
  process.exit(1);
}
console.log(
  stale.length === 0
    ? 'sync:entries: every table matches scripts/entries.ts'
    : `sync:entries: rewrote ${stale.join(', ')}`,
);
