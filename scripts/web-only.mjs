// Owns: the "Web-standard only" rule for lib/ and the edge build: an esbuild plugin that refuses
// Node imports, the esbuild settings of a Web-only target, and a typecheck without Node's types.
// Used by scripts/check-web.mjs (npm run check:web) and scripts/build-edge.mjs.
import { builtinModules } from 'node:module';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import ts from 'typescript';

/** The repository root: entry points are relative to it, whatever the working directory. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** `file` relative to the repository root, for messages. */
const shown = (file) => relative(ROOT, resolve(ROOT, file));

/** Node's built-in modules, with and without subpaths (`fs`, `fs/promises`, `node:test`, ...). */
const NODE_BUILTINS = new Set(builtinModules.flatMap((name) => [name, name.split('/')[0]]));

/** Is `specifier` a Node built-in module (`node:fs`, `fs`, `fs/promises`, `crypto`, ...)? */
export function isNodeBuiltin(specifier) {
  if (specifier.startsWith('node:')) return true;
  return NODE_BUILTINS.has(specifier) || NODE_BUILTINS.has(specifier.split('/')[0]);
}

/**
 * esbuild settings of a Web-only target, as edge bundlers use them: the `browser` platform (no Node
 * built-ins resolve, `browser` fields of packages apply, so e.g. the AWS SDK uses its fetch-based
 * build) with the `worker` and `browser` export conditions. ESM, ES2022.
 */
export const WEB_TARGET = Object.freeze({
  absWorkingDir: ROOT,
  bundle: true,
  platform: 'browser',
  conditions: ['worker', 'browser'],
  format: 'esm',
  target: 'es2022',
  logLevel: 'silent',
});

/**
 * An esbuild plugin that records every import of a Node built-in instead of resolving it.
 * A bare built-in (`crypto`) that a package's own `browser` field disables or replaces (tweetnacl's
 * guarded `require('crypto')`) is allowed: the bundle does not contain it. `node:` imports never are.
 * `found` receives `{ importer, specifier }` for each refused import; the build goes on so that one
 * run lists them all, and the caller fails it.
 */
export function nodeImportGuard(found) {
  return {
    name: 'node-import-guard',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData?.nodeImportGuard || !isNodeBuiltin(args.path)) return undefined;
        if (!args.path.startsWith('node:')) {
          const natural = await build.resolve(args.path, {
            kind: args.kind,
            importer: args.importer,
            resolveDir: args.resolveDir,
            pluginData: { nodeImportGuard: true },
          });
          if (natural.errors.length === 0 && !natural.external) return undefined; // remapped by a `browser` field
        }
        found.push({ importer: args.importer, specifier: args.path });
        return { path: args.path, external: true };
      });
    },
  };
}

/**
 * Typechecks `files` (and what they import) with the DOM and ES2022 libraries and WITHOUT Node's
 * types, so a Node global (`process`, `Buffer`, `__dirname`, `require`) is an error. A runtime
 * guard like `typeof process !== 'undefined'` does not typecheck either: read such globals through
 * `globalThis` with a declared shape instead.
 */
export function typecheckWithoutNode(files) {
  const options = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    strict: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    noEmit: true,
    skipLibCheck: true,
    // The development resolution of `session-replication[/subpath]` (tsconfig.json `paths`), as for tsc.
    baseUrl: ROOT,
    paths: ts.readConfigFile(resolve(ROOT, 'tsconfig.json'), ts.sys.readFile).config.compilerOptions.paths,
  };
  const program = ts.createProgram(
    files.map((f) => resolve(ROOT, f)),
    options,
  );
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.formatDiagnostic(d, host).trim());
  // @types/node pulled in by some dependency's `/// <reference types="node" />` would hide Node globals.
  const nodeTypes = program.getSourceFiles().find((f) => /[\\/]@types[\\/]node[\\/]/.test(f.fileName));
  if (nodeTypes)
    problems.push(`Node's types were loaded (${shown(nodeTypes.fileName)}): some import references @types/node`);
  return problems;
}

/**
 * Bundles each of `entryPoints` for the Web-only target (in memory) and typechecks them without
 * Node's types. Resolves with `{ problems, outputs }`: one line per problem (empty: Web-only), and
 * the bundles' sizes in bytes by entry point.
 */
export async function checkWebOnly(entryPoints, { typecheck = true } = {}) {
  const found = [];
  const problems = [];
  const outputs = {};
  try {
    const result = await esbuild.build({
      ...WEB_TARGET,
      entryPoints,
      outdir: 'web-check-out',
      outbase: '.',
      write: false,
      metafile: true,
      plugins: [nodeImportGuard(found)],
    });
    for (const meta of Object.values(result.metafile.outputs))
      if (meta.entryPoint) outputs[meta.entryPoint] = meta.bytes;
  } catch (error) {
    for (const e of error.errors ?? [error])
      problems.push(
        `build error: ${e.text ?? e.message}${e.location ? ` (${e.location.file}:${e.location.line})` : ''}`,
      );
  }
  for (const { importer, specifier } of found) problems.push(`Node import "${specifier}" in ${shown(importer)}`);
  if (typecheck) for (const line of typecheckWithoutNode(entryPoints)) problems.push(`without Node types: ${line}`);
  return { problems: [...new Set(problems)], outputs };
}
