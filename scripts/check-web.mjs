#!/usr/bin/env node
// Owns: `npm run check:web`: proves lib/ is Web-standard only (it runs on Deno, Bun, Workers, browsers).
//
//   node scripts/check-web.mjs            every lib/**/*.ts (except *.node.ts) and the Web-runtime adapters
//                                         (adapters/{deno,bun,cloudflare}) as their own entry points
//   node scripts/check-web.mjs FILE...    only these entry points (the test uses a fixture)
//
// Each entry is bundled with esbuild for a Web-only target (platform browser, conditions worker and
// browser) with a plugin that refuses any Node built-in import (`node:fs`, `fs`, `crypto`, ...) in
// lib/ or in any dependency it pulls in, then typechecked without Node's types (so `process`,
// `Buffer`, `require` are errors). Exit 0: Web-only; exit 1: the problems, one per line, on stderr.
import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { checkWebOnly, ROOT } from './web-only.mjs';

/** Every TypeScript module under `dir`, minus tests, declarations and modules named `*.node.ts`. */
function modulesUnder(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !/\.(node|test|d)\.ts$/.test(e.name))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)))
    .sort();
}

const args = process.argv.slice(2);
// Entry points relative to the repository root (arguments are taken relative to the working directory).
/** The adapters for runtimes without Node: Deno, Bun (as a Web runtime) and Cloudflare Workers. */
const WEB_ADAPTERS = ['adapters/deno/index.ts', 'adapters/bun/index.ts', 'adapters/cloudflare/index.ts'];
const entryPoints =
  args.length > 0
    ? args.map((arg) => relative(ROOT, resolve(arg)))
    : [...modulesUnder(join(ROOT, 'lib')), ...WEB_ADAPTERS];
const started = Date.now();
const { problems, outputs } = await checkWebOnly(entryPoints);
if (problems.length > 0) {
  console.error(`check:web FAILED: ${problems.length} problem(s) in ${entryPoints.length} entry point(s):`);
  for (const line of problems) console.error(`  ${line}`);
  process.exit(1);
}
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
const shown = ['lib/index.ts', 'lib/channel/nats.ts', 'lib/log/jetstream.ts', 'lib/store/dynamodb.ts'].filter(
  (e) => outputs[e] !== undefined,
);
const sizes = shown.map((e) => `${e} ${kib(outputs[e])}`).join(', ');
console.log(
  `check:web ok: ${entryPoints.length} entry point(s) bundle for a Web-only target without Node imports and typecheck without Node types (${Date.now() - started} ms)${sizes ? `; unminified bundles: ${sizes}` : ''}`,
);
