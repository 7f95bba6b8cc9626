// Owns: a real HAProxy in front of test nodes (the product's own configuration, functions/node/local-haproxy.ts),
// tracked by the test kit so it never outlives the test process, with its stats page for server states.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { haproxyConfig } from "../../functions/node/local-haproxy.ts";
import { findExecutable } from "../../functions/node/local-processes.ts";
import { freePort, removeDirOnExit, spawnTracked, tail, waitFor, type NodeHandle, type TrackedProcess } from "../kit/index.ts";

/** The haproxy binary, or undefined when it is not installed (the tests that need it are skipped). */
export const HAPROXY = findExecutable("haproxy");

/** A running HAProxy owned by a test. */
export interface HaproxyHandle {
  /** http://127.0.0.1:PORT of the load balancer. */
  url: string;
  pid: number;
  process: TrackedProcess;
  /** Server name -> HAProxy status (UP, DOWN, MAINT, "UP 1/2", ...). */
  serverStates(): Promise<Record<string, string>>;
  /** The backend's retry and redispatch counters (requests HAProxy sent again, and to another server). */
  backendCounters(): Promise<{ retries: number; redispatches: number }>;
  /** Waits until `node` has status `state` (UP or DOWN) in HAProxy; resolves with the time it took. */
  waitForServer(node: string, state: "UP" | "DOWN", timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** Starts HAProxy with the local cluster's configuration in front of `nodes`, and waits until it routes. */
export async function startHaproxy(nodes: Pick<NodeHandle, "node" | "port">[]): Promise<HaproxyHandle> {
  if (!HAPROXY) throw new Error("haproxy not installed: apt-get install haproxy");
  const dir = mkdtempSync(join(tmpdir(), "haproxy-test-"));
  const keepDir = removeDirOnExit(dir);
  const [port, statsPort] = [await freePort(), await freePort()];
  const config = join(dir, "haproxy.cfg");
  writeFileSync(config, haproxyConfig({ bindHost: "127.0.0.1", port, statsPort, servers: nodes.map((n) => ({ node: n.node, host: "127.0.0.1", port: n.port })) }));
  const proc = spawnTracked(HAPROXY, ["-db", "-f", config], { name: "haproxy", maxOutputChars: 64 * 1024 });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await proc.stop(2000);
    rmSync(dir, { recursive: true, force: true });
    keepDir();
  };
  /** Rows of the backend `nodes` in the stats CSV, by server name (BACKEND for the backend's own row). */
  const statsRows = async () => {
    const csv = await (await fetch(`http://127.0.0.1:${statsPort}/;csv`, { signal: AbortSignal.timeout(2000) })).text();
    const [header, ...rows] = csv.trim().split("\n");
    const columns = header!.replace(/^# /, "").split(",");
    const byServer: Record<string, Record<string, string>> = {};
    for (const row of rows) {
      const cells = row.split(",");
      const record = Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
      if (record.pxname === "nodes") byServer[record.svname!] = record;
    }
    return byServer;
  };
  const serverStates = async () => {
    const states: Record<string, string> = {};
    for (const [server, record] of Object.entries(await statsRows())) if (server !== "BACKEND") states[server] = record.status!;
    return states;
  };
  try {
    await waitFor("HAProxy to route /readyz", async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200, { timeoutMs: 30000, intervalMs: 100 });
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\nhaproxy output:\n${tail(proc.output())}`);
  }
  return {
    url,
    pid: proc.pid,
    process: proc,
    serverStates,
    async backendCounters() {
      const backend = (await statsRows()).BACKEND ?? {};
      return { retries: Number(backend.wretr ?? 0), redispatches: Number(backend.wredis ?? 0) };
    },
    async waitForServer(node, state, timeoutMs = 20000) {
      const started = Date.now();
      await waitFor(`HAProxy to see ${node} ${state}`, async () => (await serverStates())[node] === state, { timeoutMs, intervalMs: 50 });
      return Date.now() - started;
    },
    stop,
  };
}
