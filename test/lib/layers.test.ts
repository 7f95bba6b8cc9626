// Owns: the layer rule of lib/ (docs/architecture.md, "Layers"): each module imports only its own layer and those below it,
// and the two manager strategies (managers/delta, managers/backup) do not import each other.
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../kit/index.ts';

/**
 * The layers from the bottom up, each with the paths below lib/ it holds (a folder ends in `/`). `base` is what every
 * layer may use: the typed errors, the logger contract, the retry helper, the optional-peer loader, the stats windows.
 * `stats.ts` counts message kinds (codec) and is used from the bus up; `drain.ts` hands sessions over through membership;
 * `index.ts` is the core entry, and the admin router and the testing kit are built on it.
 */
const LAYERS: ReadonlyArray<readonly [layer: string, paths: readonly string[]]> = [
  ['base', ['errors.ts', 'logger.ts', 'retry.ts', 'optional-peer.ts', 'stats-window.ts']],
  ['session', ['session/']],
  ['codec', ['codec/']],
  ['channel', ['channel/']],
  ['log', ['log/']],
  ['store', ['store/']],
  ['stats', ['stats.ts']],
  ['bus', ['bus/']],
  ['membership', ['membership/']],
  ['managers', ['managers/', 'drain.ts']],
  ['http', ['http/']],
  ['middleware', ['middleware/']],
  ['cluster', ['cluster/']],
  ['entry', ['index.ts']],
  ['admin, testing', ['admin/', 'testing/']],
];

/** Folders of one layer that must not import each other: the two strategies sit side by side. */
const SIBLINGS: ReadonlyArray<readonly [string, string]> = [['managers/delta/', 'managers/backup/']];

/** The rank of a path below lib/ (`channel/nats.ts`), or undefined when no layer holds it. */
function rankOf(path: string): number | undefined {
  const rank = LAYERS.findIndex(([, paths]) => paths.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p)));
  return rank < 0 ? undefined : rank;
}

/** Every import, re-export and dynamic import of `source` that names a relative module. */
function relativeImports(source: string): string[] {
  const { importedFiles } = ts.preProcessFile(source, true, true);
  return importedFiles.map((f) => f.fileName).filter((name) => name.startsWith('.'));
}

/**
 * The imports of `files` (path below lib/ to source text) that break the layer rule, as `from -> to (why)`; a file
 * no layer holds is reported too, so a new folder gets a place in the order.
 */
function layerViolations(files: ReadonlyMap<string, string>): string[] {
  const found: string[] = [];
  for (const [from, source] of files) {
    const fromRank = rankOf(from);
    if (fromRank === undefined) {
      found.push(`${from}: in no layer`);
      continue;
    }
    for (const specifier of relativeImports(source)) {
      const to = posix.normalize(posix.join(posix.dirname(from), specifier));
      if (to.startsWith('..')) {
        found.push(`${from} -> ${specifier} (outside lib/)`);
        continue;
      }
      const toRank = rankOf(to);
      if (toRank === undefined) found.push(`${from} -> ${to} (in no layer)`);
      else if (toRank > fromRank)
        found.push(`${from} -> ${to} (${LAYERS[fromRank]![0]} imports ${LAYERS[toRank]![0]})`);
      for (const [a, b] of SIBLINGS) {
        if ((from.startsWith(a) && to.startsWith(b)) || (from.startsWith(b) && to.startsWith(a)))
          found.push(`${from} -> ${to} (${a} and ${b} are side by side)`);
      }
    }
  }
  return found;
}

/** The TypeScript modules of lib/ as git tracks them, by path below lib/. */
function libSources(): Map<string, string> {
  const list = ts.sys.readDirectory(join(REPO_ROOT, 'lib'), ['.ts']);
  return new Map(
    list.map((file) => [posix.relative('lib', posix.relative(REPO_ROOT, file)), readFileSync(file, 'utf8')] as const),
  );
}

describe('layers of lib/', () => {
  it('no module imports a layer above its own, and the two manager strategies do not import each other', () => {
    const files = libSources();
    expect(files.size).toBeGreaterThan(50);
    expect(files.has('session/session.ts')).toBe(true);
    expect(layerViolations(files)).toEqual([]);
  });

  it('reports an upward import, a re-export and a dynamic import, a strategy importing the other, and an unplaced file', () => {
    const found = layerViolations(
      new Map([
        [
          'session/session.ts',
          "import type { Envelope } from '../codec/envelope.ts';\nimport { x } from './state.ts';",
        ],
        ['codec/envelope.ts', "export { SessionTable } from '../managers/session-table.ts';"],
        ['channel/nats.ts', "const bus = await import('../bus/cluster-bus.ts');"],
        ['managers/backup/backup-manager.ts', "import { Resync } from '../delta/resync.ts';\nimport '../core.ts';"],
        ['cluster/wire.ts', "import { errorResponse } from '../http/error-response.ts';"],
        ['widgets/thing.ts', ''],
      ]),
    );
    expect(found).toEqual([
      'session/session.ts -> codec/envelope.ts (session imports codec)',
      'codec/envelope.ts -> managers/session-table.ts (codec imports managers)',
      'channel/nats.ts -> bus/cluster-bus.ts (channel imports bus)',
      'managers/backup/backup-manager.ts -> managers/delta/resync.ts (managers/delta/ and managers/backup/ are side by side)',
      'widgets/thing.ts: in no layer',
    ]);
  });

  it('names every layer of docs/architecture.md in the same order', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs/architecture.md'), 'utf8');
    const table = doc.slice(doc.indexOf('## Layers'), doc.indexOf('Why these layers'));
    const documented = [...table.matchAll(/^\| ([a-z, ]+?)\s+\| `lib\//gm)].map((m) => m[1]);
    const ours = LAYERS.map(([layer]) => layer).filter((layer) => documented.includes(layer));
    expect(ours).toEqual(documented);
  });
});
