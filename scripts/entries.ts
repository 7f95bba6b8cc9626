// Owns: the one table of the package's public entry points (subpath → TypeScript source).
//
// Adding or moving an entry is a one-line change here, then `npm run sync:entries`, which rewrites
// the tables generated from this one: package.json `exports` (built `dist/` files), tsconfig.json
// `paths` (development resolution for tsc and tsx) and jsr.json `exports` (sources for JSR).
// tsdown.config.ts (build entries) and vitest.config.ts (test aliases) import it directly, and
// `npm run sync:entries -- --check` (run by the package tests) fails while any table is stale.

/** One public entry point of the package. */
export interface PackageEntry {
  /** The `exports` key users import: `.` is `session-replication`, `./nats` is `session-replication/nats`. */
  readonly subpath: string;
  /** The TypeScript module, relative to the repository root, that the subpath exposes. */
  readonly source: string;
}

/** The package name users import. */
export const PACKAGE_NAME = 'session-replication';

/** Every public entry point, in the order the tables list them. */
export const ENTRIES: readonly PackageEntry[] = [
  { subpath: '.', source: 'lib/index.ts' },
  { subpath: './nats', source: 'lib/channel/nats.ts' },
  { subpath: './jetstream', source: 'lib/log/jetstream.ts' },
  { subpath: './dynamodb', source: 'lib/store/dynamodb.ts' },
  { subpath: './sns-sqs', source: 'lib/channel/sns-sqs/index.ts' },
  { subpath: './admin', source: 'lib/admin/index.ts' },
  { subpath: './testing', source: 'lib/testing/index.ts' },
  { subpath: './node', source: 'adapters/node/index.ts' },
  { subpath: './deno', source: 'adapters/deno/index.ts' },
  { subpath: './bun', source: 'adapters/bun/index.ts' },
  { subpath: './cloudflare', source: 'adapters/cloudflare/index.ts' },
  { subpath: './lambda', source: 'adapters/lambda/index.ts' },
  { subpath: './cdk', source: 'adapters/cdk/index.ts' },
];

/** The file name (without extension) an entry is built to in `dist/`: `index` for `.`, else the subpath. */
export function distName(entry: PackageEntry): string {
  return entry.subpath === '.' ? 'index' : entry.subpath.slice(2);
}

/** The specifier code imports an entry by: `session-replication` or `session-replication/<subpath>`. */
export function specifier(entry: PackageEntry): string {
  return entry.subpath === '.' ? PACKAGE_NAME : `${PACKAGE_NAME}/${entry.subpath.slice(2)}`;
}
