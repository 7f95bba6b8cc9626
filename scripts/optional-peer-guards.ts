// Owns: the build step that makes a missing optional peer (NATS client, AWS SDK) fail with MissingPeerDependencyError.
//
// An ES module's static imports are all resolved before any of its code runs, so the built entry
// `dist/nats.mjs` cannot catch its own `import ... from '@nats-io/nats-core'`. After tsdown wrote the
// bundle, every entry that reaches an optional peer (through its static imports) is renamed to
// `<name>.impl.mjs`, and `<name>.mjs` becomes a guard that imports it with `loadOptionalPeer`
// (lib/optional-peer.ts) and re-exports the same names. The declarations (`<name>.d.mts`) are untouched.
// The core entry must reach no optional peer at all: the build fails if it does.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OutputAsset, OutputChunk } from 'rolldown';
import { distName, ENTRIES, specifier } from './entries.ts';

/** A chunk tsdown reports after a build, with the folder it was written to. */
type BuiltChunk = (OutputChunk | OutputAsset) & { outDir: string };

/** The package's optional peers (package.json `peerDependenciesMeta` with `optional: true`). */
export function optionalPeers(packageJsonPath: string): string[] {
  const manifest = JSON.parse(readFileSync(packageJsonPath, 'utf8')) as {
    peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  };
  return Object.entries(manifest.peerDependenciesMeta ?? {})
    .filter(([, meta]) => meta.optional === true)
    .map(([name]) => name);
}

/** The package an import specifier belongs to: `@aws-sdk/client-sqs` for `@aws-sdk/client-sqs/x`, `hono` for `hono/cookie`. */
function packageOf(id: string): string {
  const parts = id.split('/');
  return id.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? id);
}

/** Rewrites the built entries that reach an optional peer into guards (see the top of this file); `peers` are the optional peers. */
export function guardOptionalPeers(chunks: readonly BuiltChunk[], peers: readonly string[]): void {
  const jsChunks = new Map(
    chunks
      .filter((c): c is OutputChunk & { outDir: string } => c.type === 'chunk' && c.fileName.endsWith('.mjs'))
      .map((c) => [c.fileName, c]),
  );
  /** The optional peers `fileName` reaches through static imports. */
  const peersReached = (fileName: string, seen = new Set<string>()): Set<string> => {
    const found = new Set<string>();
    if (seen.has(fileName)) return found;
    seen.add(fileName);
    for (const imported of jsChunks.get(fileName)?.imports ?? []) {
      if (jsChunks.has(imported)) for (const peer of peersReached(imported, seen)) found.add(peer);
      else if (peers.includes(packageOf(imported))) found.add(packageOf(imported));
    }
    return found;
  };
  const core = peersReached('index.mjs');
  if (core.size > 0) throw new Error(`the core entry (dist/index.mjs) imports optional peers: ${[...core].join(', ')}`);
  const guards: Array<{ fileName: string; implName: string; outDir: string; code: string }> = [];
  for (const entry of ENTRIES) {
    const fileName = `${distName(entry)}.mjs`;
    const chunk = jsChunks.get(fileName);
    if (chunk === undefined || entry.subpath === '.') continue;
    const needed = [...peersReached(fileName)].sort();
    if (needed.length === 0) continue;
    const implName = `${distName(entry)}.impl.mjs`;
    guards.push({
      fileName,
      implName,
      outDir: chunk.outDir,
      code: guardModule(specifier(entry), needed, implName, chunk.exports),
    });
  }
  for (const guard of guards) renameSync(join(guard.outDir, guard.fileName), join(guard.outDir, guard.implName));
  // A chunk that imports a guarded entry (an adapter using NatsChannel) imports its implementation: that chunk
  // reaches the same peers, so the entries that import it are guards themselves.
  for (const chunk of jsChunks.values()) {
    const path = join(chunk.outDir, guards.find((g) => g.fileName === chunk.fileName)?.implName ?? chunk.fileName);
    const code = readFileSync(path, 'utf8');
    const rewritten = guards.reduce((text, g) => text.replaceAll(`"./${g.fileName}"`, `"./${g.implName}"`), code);
    if (rewritten !== code) writeFileSync(path, rewritten);
  }
  for (const guard of guards) writeFileSync(join(guard.outDir, guard.fileName), guard.code);
}

/** The guard module: loads `implName` through loadOptionalPeer and re-exports `names`. */
function guardModule(neededBy: string, peers: readonly string[], implName: string, names: readonly string[]): string {
  const exported = names.filter((name) => name !== 'default');
  return [
    `// ${neededBy} needs ${peers.join(', ')}: a missing package fails with MissingPeerDependencyError naming it.`,
    `import { loadOptionalPeer } from "./index.mjs";`,
    `const entry = await loadOptionalPeer(${JSON.stringify(neededBy)}, ${JSON.stringify(peers)}, () => import("./${implName}"));`,
    exported.length > 0 ? `export const { ${exported.join(', ')} } = entry;` : '',
    names.includes('default') ? 'export default entry.default;' : '',
    '',
  ]
    .filter((line, i, lines) => line !== '' || i === lines.length - 1)
    .join('\n');
}
