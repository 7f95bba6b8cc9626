// Owns: the packed-tarball test kit: build + `npm pack` once per source state, and fresh consumer apps that install it.
//
// Usage (see test/package/*.test.ts):
//
//   const tarball = await packTarball();              // builds dist/ and packs it; cached, safe from many test files at once
//   const app = await createApp("test/package/fixtures/hono-nats", { dependencies: ["hono", "@nats-io/transport-node"] });
//   const result = await app.run(process.execPath, ["server.mjs"]);   // or spawnTracked(..., { cwd: app.dir })
//
// `createApp` copies the fixture folder (or nothing, with `undefined`) into a fresh temporary folder,
// writes its package.json with the tarball plus the given registry packages (a bare name takes the
// version this repository has installed, so the npm cache answers; `name@range` is taken as given)
// and runs `npm install --prefer-offline`. The folder is removed when the test process exits.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { REPO_ROOT, removeDirOnExit } from '../../functions/launch/index.ts';

/** Where packed tarballs are kept between runs, one per hash of the build inputs. */
const CACHE_DIR = join(REPO_ROOT, '.cache', 'package');
/** What the build and the tarball are made of: any change here means a new tarball. */
const BUILD_INPUTS = [
  'lib',
  'adapters',
  'functions',
  'bin',
  'scripts',
  'package.json',
  'tsdown.config.ts',
  'tsconfig.json',
  'README.md',
  'LICENSE',
];
/** How long a test waits for another process's build and pack before giving up. */
const LOCK_WAIT_MS = 300_000;

/** The output of a command run to completion. */
export interface CommandResult {
  /** Exit code (null when killed by a signal). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A consumer app installed in its own temporary folder. */
export interface InstalledApp {
  /** The app's folder (absolute). */
  readonly dir: string;
  /** The tarball the app installed. */
  readonly tarball: string;
  /** Runs `cmd args` in the app folder to completion (never throws on a nonzero exit). */
  run(
    cmd: string,
    args: readonly string[],
    options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number },
  ): Promise<CommandResult>;
}

/** Options for {@link createApp}. */
export interface CreateAppOptions {
  /** Registry packages installed next to the tarball: `"hono"` (the repository's installed version) or `"hono@^4"`. */
  readonly dependencies?: readonly string[];
  /** Extra fields merged into the app's package.json (e.g. `devDependencies`). */
  readonly packageJson?: Record<string, unknown>;
}

let packed: Promise<string> | undefined;

/** Builds the package and packs it with `npm pack` (once per state of the sources); resolves with the tarball's path. */
export function packTarball(): Promise<string> {
  packed ??= packOnce();
  return packed;
}

/** Copies `fixtureDir` (relative to the repository root, or undefined for an empty app) into a fresh folder and installs the tarball plus `dependencies`. */
export async function createApp(fixtureDir: string | undefined, options: CreateAppOptions = {}): Promise<InstalledApp> {
  const tarball = await packTarball();
  const dir = mkdtempSync(join(tmpdir(), 'sessrep-app-'));
  removeDirOnExit(dir);
  if (fixtureDir !== undefined) cpSync(resolve(REPO_ROOT, fixtureDir), dir, { recursive: true });
  const dependencies: Record<string, string> = { 'session-replication': `file:${tarball}` };
  for (const spec of options.dependencies ?? []) {
    const at = spec.lastIndexOf('@');
    if (at > 0) dependencies[spec.slice(0, at)] = spec.slice(at + 1);
    else dependencies[spec] = installedVersion(spec);
  }
  const fixturePackage = existsSync(join(dir, 'package.json'))
    ? (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>)
    : {};
  const manifest = {
    name: 'consumer-app',
    private: true,
    type: 'module',
    ...fixturePackage,
    ...options.packageJson,
    dependencies,
  };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const app: InstalledApp = {
    dir,
    tarball,
    run: (cmd, args, runOptions = {}) => runCommand(cmd, args, { cwd: dir, ...runOptions }),
  };
  const install = await app.run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    timeoutMs: 240_000,
  });
  if (install.code !== 0)
    throw new Error(`npm install in ${dir} failed (${install.code}):\n${install.stderr}${install.stdout}`);
  return app;
}

/** Runs `cmd args` to completion, without npm's lifecycle variables leaking from a parent `npm test` into nested npm calls. */
export function runCommand(
  cmd: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CommandResult> {
  const env = Object.fromEntries(
    Object.entries({ ...process.env, ...options.env }).filter(([key]) => !/^npm_/i.test(key)),
  );
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      { cwd: options.cwd, env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        done({ code, stdout, stderr: error !== null && code === null ? `${stderr}\n${error.message}` : stderr });
      },
    );
  });
}

/** The version of `name` installed in this repository's node_modules (so installs hit the npm cache). */
function installedVersion(name: string): string {
  const manifest = join(REPO_ROOT, 'node_modules', name, 'package.json');
  if (!existsSync(manifest))
    throw new Error(`createApp: ${name} is not installed in this repository; pass "${name}@<range>"`);
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
}

/** Packs unless a tarball for the current build inputs exists; one process at a time builds (a lock directory). */
async function packOnce(): Promise<string> {
  mkdirSync(CACHE_DIR, { recursive: true });
  const tarball = join(CACHE_DIR, `session-replication-${inputsHash()}.tgz`);
  if (existsSync(tarball)) return tarball;
  const release = await acquireLock(join(CACHE_DIR, 'lock'));
  try {
    if (existsSync(tarball)) return tarball;
    const out = mkdtempSync(join(CACHE_DIR, 'pack-'));
    try {
      // `npm pack` runs the `prepack` script, which builds dist/.
      const result = await runCommand('npm', ['pack', '--pack-destination', out, '--loglevel=error'], {
        cwd: REPO_ROOT,
        timeoutMs: 300_000,
      });
      if (result.code !== 0) throw new Error(`npm pack failed (${result.code}):\n${result.stderr}${result.stdout}`);
      // The prepack build writes to stdout too (and its log holds brackets under CI=true), so the tarball is found in
      // the empty destination directory rather than in npm's JSON.
      const packed = readdirSync(out).filter((name) => name.endsWith('.tgz'));
      if (packed.length !== 1)
        throw new Error(`npm pack left ${packed.length} tarballs in ${out}:\n${result.stderr}${result.stdout}`);
      renameSync(join(out, packed[0]!), tarball);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    for (const old of readdirSync(CACHE_DIR))
      if (old.endsWith('.tgz') && join(CACHE_DIR, old) !== tarball) rmSync(join(CACHE_DIR, old), { force: true });
    return tarball;
  } finally {
    release();
  }
}

/** A hash of every file the build and the tarball are made of. */
function inputsHash(): string {
  const hash = createHash('sha256');
  const visit = (path: string): void => {
    if (!existsSync(path)) return;
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) visit(join(path, name));
      return;
    }
    hash.update(relative(REPO_ROOT, path)).update('\0').update(readFileSync(path)).update('\0');
  };
  for (const input of BUILD_INPUTS) visit(join(REPO_ROOT, input));
  return hash.digest('hex').slice(0, 16);
}

/** Takes the lock directory `dir` (atomic mkdir), waiting while a live process holds it; resolves with its release. */
async function acquireLock(dir: string): Promise<() => void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (lockIsStale(dir)) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`packTarball: ${dir} still held after ${LOCK_WAIT_MS} ms`);
    // Kept: the poll interval of this loop, which already waits on a condition (the mkdir above succeeding).
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** True when the lock's holder is gone (its pid is dead, or it never wrote one within 10 s). */
function lockIsStale(dir: string): boolean {
  try {
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    process.kill(pid, 0);
    return false;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EPERM') return false;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return !existsSync(dir) || Date.now() - statSync(dir).mtimeMs > 10_000;
    return true;
  }
}
