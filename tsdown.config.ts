// Owns: the package build (`npm run build`): every public entry of scripts/entries.ts to `dist/` as ESM with `.d.mts`.
import { defineConfig } from 'tsdown';
import { distName, ENTRIES } from './scripts/entries.ts';
import { guardOptionalPeers, optionalPeers } from './scripts/optional-peer-guards.ts';

export default defineConfig({
  entry: Object.fromEntries(ENTRIES.map((entry) => [distName(entry), entry.source])),
  outDir: 'dist',
  format: 'esm',
  // lib/ is Web-standard: the output must run on Node, Deno, Bun and Workers alike.
  platform: 'neutral',
  target: 'es2022',
  fixedExtension: true,
  dts: true,
  // dependencies and peer dependencies stay imports (tsdown's default); nothing from node_modules is inlined.
  // An entry that imports another entry by its public name (session-replication/nats) keeps that import.
  external: [/^session-replication\//],
  hooks: {
    // Entries that need NATS or the AWS SDK load it through a guard that names a missing package (scripts/optional-peer-guards.ts).
    'build:done': ({ chunks }) => guardOptionalPeers(chunks, optionalPeers('package.json')),
  },
});
