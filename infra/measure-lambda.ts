/**
 * Local measurements of the Lambda handler, for the cost estimate in the README:
 *
 *   node --import tsx infra/measure-lambda.ts [--runs 10] [--warm 300] [--sessions 1000] [--coalesce 3000]
 *
 * 1. Builds the handler exactly as the stack does (esbuild, ESM, minified, AWS SDK bundled).
 * 2. Cold start: a fresh Node process imports the bundle (INIT: connect, snapshot load, log
 *    replay) and answers one Function URL event; import and first-response times, `--runs` times.
 * 3. Warm invocations: POST /counter with the cookie routed here and routed
 *    elsewhere (one catch-up round trip), in-process, p50/p99.
 * 4. Write-behind coalescing: `--coalesce` requests over `--sessions` sessions through two
 *    instances; how many DynamoDB items and checkpoints the snapshot leader wrote.
 *
 * Needs nats-server on PATH and Java (DynamoDB Local from node_modules). Prints one JSON report.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { build } from 'esbuild';
import { lambdaLogger, type LambdaSessionHandler } from 'session-replication/lambda';
import { readConfig } from '../functions/shared/config.ts';
import { createDemoLambdaHandler } from '../functions/lambda/runtime.ts';
import { createSnapshotTable } from 'session-replication/dynamodb';
import { startDynamoDbLocal, startNatsServer } from '../test/kit/index.ts';
import { REPO_ROOT } from './lib/session-stack.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    warm: { type: 'string', default: '300' },
    sessions: { type: 'string', default: '1000' },
    coalesce: { type: 'string', default: '3000' },
    rate: { type: 'string', default: '200' },
  },
});
const RUNS = Number(args.runs);
const WARM = Number(args.warm);
const SESSIONS = Number(args.sessions);
const COALESCE = Number(args.coalesce);
const RATE = Number(args.rate);

function event(method: string, path: string, cookie?: string) {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    ...(cookie ? { cookies: [cookie] } : {}),
    headers: { host: 'x.lambda-url.us-east-1.on.aws', 'x-forwarded-proto': 'https' },
    requestContext: {
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'measure' },
      domainName: 'x.lambda-url.us-east-1.on.aws',
    },
    body: null,
    isBase64Encoded: false,
  };
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const summary = (values: number[]) => ({
  n: values.length,
  min: round(Math.min(...values)),
  p50: round(percentile(values, 50)),
  p90: round(percentile(values, 90)),
  p99: round(percentile(values, 99)),
  max: round(Math.max(...values)),
});
const round = (n: number) => Math.round(n * 100) / 100;
const cookieOf = (result: { cookies?: string[] }) =>
  result.cookies?.find((c) => c.startsWith('SESSIONID='))?.split(';')[0];

async function bundle(): Promise<string> {
  const dir = join(REPO_ROOT, '.cache', 'lambda-bundle');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, 'index.mjs');
  // The options of infra/lib/session-stack.ts (NodejsFunction bundling).
  await build({
    entryPoints: [join(REPO_ROOT, 'functions/lambda/handler.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    mainFields: ['module', 'main'],
    minify: true,
    keepNames: true,
    external: [],
    banner: {
      js: "import { createRequire as __sessrepCreateRequire } from 'node:module'; const require = __sessrepCreateRequire(import.meta.url);",
    },
    logLevel: 'silent',
  });
  return outfile;
}

/** One cold start in a fresh process: ms to import (INIT) and to the first response. */
function coldStart(
  file: string,
  env: Record<string, string>,
): Promise<{
  processMs: number;
  importMs: number;
  startMs: number;
  firstResponseMs: number;
  totalMs: number;
  cpuMs: number;
}> {
  const script = `
    const t0 = performance.now();
    const { handler } = await import(${JSON.stringify(file)});
    const t1 = performance.now();
    const result = await handler(${JSON.stringify(event('POST', '/counter'))});
    const t2 = performance.now();
    if (result.statusCode !== 200) throw new Error('status ' + result.statusCode + ' ' + result.body);
    const cpu = process.cpuUsage();
    console.log(JSON.stringify({ processMs: t0, importMs: t1 - t0, startMs: handler.stats.startMs, firstResponseMs: t2 - t1, totalMs: t2 - t0, cpuMs: (cpu.user + cpu.system) / 1000 }));
    process.exit(0);`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split('\n').pop()!))
        : reject(new Error(`cold start exited ${code}: ${out}`)),
    );
  });
}

async function main() {
  const report: Record<string, unknown> = {
    node: process.version,
    load: (await import('node:os')).loadavg().map(round),
  };
  const nats = await startNatsServer({ jetstream: true });
  const ddb = await startDynamoDbLocal();
  const runtimes: LambdaSessionHandler[] = [];
  try {
    const client = new DynamoDBClient({
      endpoint: ddb.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const table = 'sessrep-measure';
    await createSnapshotTable(client, table);
    client.destroy();
    const file = await bundle();
    const baseEnv = {
      NATS_URL: nats.url,
      AWS_REGION: 'us-east-1',
      LOG_LEVEL: 'error',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    const config = (cluster: string) => ({
      ...readConfig('lambda', {
        ...baseEnv,
        SESSREP_CLUSTER: cluster,
        SESSREP_DYNAMODB_TABLE: table,
        DYNAMODB_ENDPOINT: ddb.endpoint,
      }),
    });
    const newRuntime = (cluster: string) => {
      const runtime = createDemoLambdaHandler(config(cluster), {
        leaveOnSigterm: false,
        logger: lambdaLogger('error'),
      });
      runtimes.push(runtime);
      return runtime;
    };

    // --- cold starts: empty cluster, then a cluster holding SESSIONS sessions in the snapshot table
    const cold = async (cluster: string) => {
      const samples = [];
      for (let i = 0; i < RUNS; i++)
        samples.push(
          await coldStart(file, {
            ...baseEnv,
            SESSREP_CLUSTER: cluster,
            SESSREP_DYNAMODB_TABLE: table,
            DYNAMODB_ENDPOINT: ddb.endpoint,
          }),
        );
      return {
        importMs: summary(samples.map((s) => s.importMs)),
        moduleLoadMs: summary(samples.map((s) => s.importMs - s.startMs)),
        clusterStartMs: summary(samples.map((s) => s.startMs)),
        firstResponseMs: summary(samples.map((s) => s.firstResponseMs)),
        totalMs: summary(samples.map((s) => s.totalMs)),
        nodeBootMs: summary(samples.map((s) => s.processMs)),
        // CPU time of the whole process up to the first response (Node boot included): what an idle core would need.
        cpuMs: summary(samples.map((s) => s.cpuMs)),
      };
    };
    report.coldStartEmpty = await cold('cold-empty');

    const seeded = newRuntime('cold-seeded');
    for (let i = 0; i < SESSIONS; i++) await seeded(event('POST', '/counter') as never);
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the write-behind flushes once a second
    report.seededSnapshot = seeded.clusterNode!.status().persistence;
    report[`coldStartWith${SESSIONS}Sessions`] = await cold('cold-seeded');
    await seeded.shutdown();

    // --- warm invocations (in-process, after the cold start)
    const a = newRuntime('warm');
    let cookie = cookieOf((await a(event('POST', '/counter') as never)) as { cookies?: string[] })!;
    const own: number[] = [];
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < WARM; i++) {
      const t = performance.now();
      await a(event('POST', '/counter', cookie) as never);
      own.push(performance.now() - t);
    }
    const cpuOwn = process.cpuUsage(cpuBefore);
    const b = newRuntime('warm');
    await b.start();
    const foreign: number[] = [];
    for (let i = 0; i < WARM; i++) {
      const [to] = i % 2 === 0 ? [b] : [a];
      const t = performance.now();
      const result = (await to!(event('POST', '/counter', cookie) as never)) as { cookies?: string[] };
      foreign.push(performance.now() - t);
      cookie = cookieOf(result) ?? cookie;
    }
    const health: number[] = [];
    for (let i = 0; i < WARM; i++) {
      const t = performance.now();
      await a(event('GET', '/healthz') as never);
      health.push(performance.now() - t);
    }
    report.warmMs = {
      ownRouteCounterCpuMsPerRequest: round((cpuOwn.user + cpuOwn.system) / 1000 / WARM),
      ownRouteCounter: summary(own),
      otherRouteCounter: summary(foreign),
      healthz: summary(health),
      catchUps: a.stats.catchUps + b.stats.catchUps,
    };

    // --- write-behind coalescing: COALESCE requests at RATE/s over SESSIONS sessions, two instances
    const c1 = newRuntime('coalesce');
    const c2 = newRuntime('coalesce');
    const cookies: (string | undefined)[] = Array.from({ length: SESSIONS });
    const started = Date.now();
    for (let i = 0; i < COALESCE; i++) {
      const s = Math.floor(Math.random() * SESSIONS);
      const target = i % 2 === 0 ? c1 : c2;
      const result = (await target(event('POST', '/counter', cookies[s]) as never)) as { cookies?: string[] };
      cookies[s] = cookieOf(result) ?? cookies[s];
      const due = started + ((i + 1) * 1000) / RATE;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
    }
    const seconds = (Date.now() - started) / 1000;
    // Let the leader write everything that is dirty (a flush can take longer than its 1 s interval).
    const dirty = () =>
      [c1, c2].reduce(
        (n, r) =>
          n +
          ((r.clusterNode!.status().persistence as { snapshot: { dirty: number; leader: boolean } }).snapshot.leader
            ? (r.clusterNode!.status().persistence as { snapshot: { dirty: number } }).snapshot.dirty
            : 0),
        0,
      );
    for (let waited = 0; waited < 30_000 && dirty() > 0; waited += 250)
      await new Promise((resolve) => setTimeout(resolve, 250));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const writers = [c1, c2].map(
      (r) =>
        (
          r.clusterNode!.status().persistence as {
            snapshot: { itemsWritten: number; flushes: number; leader: boolean };
          }
        ).snapshot,
    );
    const items = writers.reduce((n, w) => n + w.itemsWritten, 0);
    const flushes = writers.reduce((n, w) => n + w.flushes, 0);
    report.coalescing = {
      requests: COALESCE,
      sessions: SESSIONS,
      seconds: round(seconds),
      requestsPerSecond: round(COALESCE / seconds),
      itemsWritten: items,
      checkpoints: flushes,
      itemWritesPerRequest: round(items / COALESCE),
      checkpointsPerRequest: round(flushes / COALESCE),
    };
  } finally {
    await Promise.allSettled(runtimes.map((r) => r.shutdown(2000)));
    await nats.stop();
    await ddb.stop();
  }
  console.log(JSON.stringify(report, null, 2));
}

await main();
process.exit(0);
