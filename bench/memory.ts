/**
 * Memory: heap bytes per session held by one node, for sessions carrying about 1 KiB of attributes
 * (4 attributes of 256 characters, constant names), at 100,000 sessions. Each manager runs in a fresh
 * child process started with `--expose-gc` (a full collection before each heap reading); the sessions
 * are created through the session middleware (`app.request`) of a node alone on the in-process
 * channel, so the figure is what a node holds per session it serves: the session table, the
 * pending-replication bookkeeping and, for backup, the ownership map (a replica holds the same table).
 * Then Tomcat's figure for the same sessions (see `tomcat-memory.ts`), unless Tomcat or a JDK is missing.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { createCluster, MemoryBus, MemoryChannel, type SessionVariables } from '../lib/index.ts';
import { consoleLogger } from '../lib/logger.ts';
import { measureTomcatMemory, type TomcatMemoryResult } from './tomcat-memory.ts';

/** Settings of the memory section. */
export interface MemoryOptions {
  sessions: number;
  /** Attribute bytes per session (split over 4 attributes). */
  attributeBytes: number;
  /** Measure Tomcat's figure too (env `BENCH_MEMORY_TOMCAT=0` turns it off). */
  tomcat: boolean;
  log: (line: string) => void;
}

/** One measurement. */
export interface MemoryRow {
  manager: 'delta' | 'backup';
  sessions: number;
  attributeBytes: number;
  /** Heap growth per session on the node that served the requests (after a full GC). */
  heapBytesPerSession: number;
  /** Sessions the node held at the end (all of them: none expired). */
  held: number;
  /** Seconds to create the sessions. */
  createSec: number;
}

export interface MemoryResult {
  rows: MemoryRow[];
  /** Tomcat's figure for the same sessions; `skipped` says why it is missing, `error` why it failed. */
  tomcat: TomcatMemoryResult & { error?: string };
  loadAverage: { start: number; end: number };
  /** Seconds the whole section took. */
  durationSec: number;
}

/** Runs each manager's measurement in its own child process, then Tomcat's. */
export async function measureMemory(options: MemoryOptions): Promise<MemoryResult> {
  const start = os.loadavg()[0]!;
  const started = performance.now();
  const rows: MemoryRow[] = [];
  for (const manager of ['delta', 'backup'] as const) {
    options.log(`memory: ${manager}, ${options.sessions} sessions of ${options.attributeBytes} B of attributes`);
    const out = execFileSync(
      process.execPath,
      [
        '--expose-gc',
        '--max-old-space-size=4096',
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        'child',
        manager,
        String(options.sessions),
        String(options.attributeBytes),
      ],
      { encoding: 'utf8', maxBuffer: 1 << 20, timeout: 600_000 },
    );
    const row = JSON.parse(out.trim().split('\n').pop()!) as MemoryRow;
    options.log(
      `  ${manager}: ${row.heapBytesPerSession} B of heap per session (${row.held} held, created in ${row.createSec} s)`,
    );
    rows.push(row);
  }
  let tomcat: MemoryResult['tomcat'];
  if (!options.tomcat) tomcat = { skipped: 'turned off (BENCH_MEMORY_TOMCAT=0)', rows: [] };
  else
    try {
      tomcat = await measureTomcatMemory(options);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      options.log(`memory: Tomcat failed: ${message}`);
      tomcat = { error: message, rows: [] };
    }
  return {
    rows,
    tomcat,
    loadAverage: { start, end: os.loadavg()[0]! },
    durationSec: Math.round((performance.now() - started) / 1000),
  };
}

/**
 * The attribute names: constants shared by every session, as an app's literal names are (and as in
 * the Tomcat servlet); names built per request would add a copy of each to every session.
 */
const ATTRIBUTE_NAMES = ['attr0', 'attr1', 'attr2', 'attr3'];

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The child: one node on the in-process channel, `sessions` created through the middleware. */
async function child(manager: 'delta' | 'backup', sessions: number, attributeBytes: number): Promise<void> {
  const node = createCluster({
    cluster: 'mem',
    node: 'a',
    manager,
    channel: new MemoryChannel(new MemoryBus()),
    logger: consoleLogger('error'),
  });
  await node.start();
  const app = new Hono<{ Variables: SessionVariables }>();
  app.use('/w', node.middleware({ sendMode: 'async' }));
  const part = Math.floor(attributeBytes / 4);
  app.post('/w', (c) => {
    const session = c.get('session');
    const n = Math.floor(Math.random() * 1e9).toString(36);
    for (const name of ATTRIBUTE_NAMES) session.set(name, `${n}${'x'.repeat(part - n.length)}`);
    return c.text('ok');
  });
  const create = async (count: number) => {
    for (let i = 0; i < count; i += 64)
      await Promise.all(
        Array.from({ length: Math.min(64, count - i) }, () => app.request('http://bench.local/w', { method: 'POST' })),
      );
  };
  await create(500); // warm-up: code paths compiled, pools allocated
  const before = heap();
  const started = performance.now();
  await create(sessions);
  const createSec = (performance.now() - started) / 1000;
  const grown = heap() - before;
  const row: MemoryRow = {
    manager,
    sessions,
    attributeBytes,
    heapBytesPerSession: Math.round(grown / sessions),
    held: node.status().sessions.total ?? 0,
    createSec: Math.round(createSec * 10) / 10,
  };
  await node.stop();
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

if (process.argv[2] === 'child') {
  const [, , , manager, sessions, bytes] = process.argv;
  child(manager as 'delta' | 'backup', Number(sessions), Number(bytes)).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
