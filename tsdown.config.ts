// Owns: the package build (`npm run build`): every public entry of scripts/entries.ts to `dist/` as ESM with `.d.mts`,
// and the `session-replication` command to `dist/cli.mjs` with its own runtime dependencies inlined.
import { resolve } from 'node:path';
import { defineConfig } from 'tsdown';
import { distName, ENTRIES, specifier } from './scripts/entries.ts';
import { guardOptionalPeers, optionalPeers } from './scripts/optional-peer-guards.ts';

/** Each public specifier (`session-replication/nats`) mapped to its TypeScript source. */
const SOURCES = new Map(ENTRIES.map((entry) => [specifier(entry), resolve(entry.source)]));

export default defineConfig([
  {
    entry: Object.fromEntries(ENTRIES.map((entry) => [distName(entry), entry.source])),
    outDir: 'dist',
    format: 'esm',
    // lib/ is Web-standard: the output must run on Node, Deno, Bun and Workers alike.
    platform: 'neutral',
    target: 'es2022',
    fixedExtension: true,
    dts: true,
    // dependencies and peer dependencies stay imports (tsdown's default); nothing from node_modules is inlined, and the
    // runtimes' own modules that adapters use (`node:*`, `cloudflare:*`, `bun`) are left to the runtime.
    deps: { neverBundle: [/^node:/, /^cloudflare:/, /^bun(:|$)/] },
    hooks: {
      // Entries that need NATS or the AWS SDK load it through a guard that names a missing package (scripts/optional-peer-guards.ts).
      'build:done': ({ chunks }) => guardOptionalPeers(chunks, optionalPeers('package.json')),
    },
  },
  {
    // The CLI carries everything it runs on (the library, hono, NATS, pino, prom-client, @hono/node-server, ...), so library
    // users install none of it; only the AWS SDK clients stay imports, loaded when a command needs them (the library's optional peers).
    entry: { cli: 'bin/session-replication.ts' },
    outDir: 'dist',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    fixedExtension: true,
    dts: false,
    deps: { alwaysBundle: [/^(?!@aws-sdk\/)/], neverBundle: [/^@aws-sdk\//] },
    outputOptions: { chunkFileNames: 'cli/[name]-[hash].mjs' },
    plugins: [
      {
        name: 'session-replication-sources',
        // `session-replication` and its subpaths are the library's sources (package.json `sideEffects` lists the command's own modules).
        resolveId: (id) => SOURCES.get(id) ?? null,
      },
    ],
  },
]);
