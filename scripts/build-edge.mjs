#!/usr/bin/env node
// Owns: `npm run build:edge`: bundles the edge node (functions/edge) for Web-only runtimes.
//
//   node scripts/build-edge.mjs [--outdir DIR]      (default dist/edge)
//
// Writes DIR/deno.js (Deno entry: `deno run --allow-net --allow-env DIR/deno.js`), DIR/bun.js (Bun
// entry: `bun DIR/bun.js`) and DIR/worker.js (`export default { fetch }` for `deno serve`), each one
// self-contained ESM file with the dashboard page inlined. The build uses the same Web-only target
// and Node-import guard as `npm run check:web`, and typechecks functions/edge (and the adapters it
// uses) without Node's types: the edge bundle cannot pull in a Node API by accident. Prints one JSON line with the output files and their sizes.
import { statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as esbuild from 'esbuild';
import { nodeImportGuard, ROOT, typecheckWithoutNode, WEB_TARGET } from './web-only.mjs';

const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
// --outdir is relative to the working directory; the default is dist/edge in the repository.
const outdir = values.outdir !== undefined ? resolve(values.outdir) : join(ROOT, 'dist/edge');
const entryPoints = {
  deno: 'functions/edge/deno.ts',
  bun: 'functions/edge/bun.ts',
  worker: 'functions/edge/worker.ts',
};
const problems = typecheckWithoutNode([...Object.values(entryPoints), 'functions/edge/assets.d.ts']).map(
  (line) => `without Node types: ${line}`,
);
const found = [];
await esbuild.build({
  ...WEB_TARGET,
  entryPoints,
  outdir,
  loader: { '.html': 'text' },
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  plugins: [nodeImportGuard(found)],
});
for (const { importer, specifier } of found) problems.push(`Node import "${specifier}" in ${relative(ROOT, importer)}`);
if (problems.length > 0) {
  console.error(`build:edge FAILED: the edge bundle is not Web-only:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
const files = Object.fromEntries(
  Object.keys(entryPoints).map((name) => [
    name,
    { path: join(outdir, `${name}.js`), bytes: statSync(join(outdir, `${name}.js`)).size },
  ]),
);
console.log(JSON.stringify({ built: 'edge', files }));
