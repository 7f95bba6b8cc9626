// Owns: session-replication/lambda under freezes: a user's app in two instance processes over a real nats-server (JetStream),
// frozen with SIGSTOP the moment a response is ready (flush before freeze) and while another instance writes (catch-up on thaw).
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, startNatsServer, type NatsServerHandle } from "../../kit/index.ts";
import { cookieSet, functionUrlEvent, restApiEvent } from "./events.ts";
import { startInstance, type LambdaInstance } from "./instances.ts";

const SCRIPT = fileURLToPath(new URL("./fixtures/lambda-instance.mjs", import.meta.url));
const KEY = Buffer.alloc(32, 7).toString("base64");

let nats: NatsServerHandle;
const instances: LambdaInstance[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
});

afterAll(async () => {
  for (const instance of instances) {
    instance.thaw();
    instance.kill();
  }
  await nats?.stop();
});

/** Two environments of one function, from the sources (the package's `session-replication/lambda` resolves to them). */
async function pair(cluster: string, env: Record<string, string> = {}): Promise<[LambdaInstance, LambdaInstance]> {
  const start = () => startInstance(SCRIPT, { cwd: REPO_ROOT, execArgv: ["--import", "tsx"], env: { SESSREP_CLUSTER: cluster, NATS_URL: nats.url, ...env } });
  const both = await Promise.all([start(), start()]);
  instances.push(...both);
  return both;
}

const items = (result: { body: string }) => (JSON.parse(result.body) as { items: string[] }).items;
const add = (item: string, cookies: string[] = []) => functionUrlEvent("POST", "/cart/items", { cookies, body: JSON.stringify({ item }) });

describe.each([
  ["persist", {}],
  ["async", { SESSREP_SEND: "async" }],
  ["async with encrypted messages", { SESSREP_SEND: "async", SESSREP_CLUSTER_KEY: KEY }],
])("send mode %s", (mode, env) => {
  it("a write has left the instance when it is frozen right after its response, and the thawed instance serves the newer value", async () => {
    const [a, b] = await pair(`freeze-${mode.replaceAll(" ", "-")}`, env);

    // a answers and Lambda freezes it at once: the write must already have left a.
    const { result: first } = await a.invoke(add("book"), { freezeAfter: true });
    expect(items(first)).toEqual(["book"]);
    const cookieA = cookieSet(first, "sid")!;
    await a.frozen();
    // Read at b while a stays frozen (REST API event: the cookie in the Cookie header).
    const { result: atB, stats: statsB } = await b.invoke(restApiEvent("GET", "/cart/items", { cookies: [cookieA] }));
    expect(items(atB)).toEqual(["book"]);
    expect(statsB.catchUpsFailed).toBe(0);

    // b writes while a is frozen; a thaws and is asked with its own, older cookie: it serves the newer value.
    const { result: second } = await b.invoke(add("pen", [cookieA]));
    expect(items(second)).toEqual(["book", "pen"]);
    a.thaw();
    const { result: thawed, stats: statsA } = await a.invoke(functionUrlEvent("GET", "/cart/items", { cookies: [cookieA] }));
    expect(items(thawed)).toEqual(["book", "pen"]);
    expect(statsA.catchUpsFailed).toBe(0);
    expect(statsA.connections).toBe(1);
  });
});
