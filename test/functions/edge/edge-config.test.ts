// Owns: unit tests of the edge node's environment (functions/edge/edge-node.ts edgeConfigFromEnv, wsConnectionOptions).
import { describe, expect, it } from "vitest";
import { edgeConfigFromEnv, wsConnectionOptions } from "../../../functions/edge/edge-node.ts";
import { ConfigError } from "../../../functions/shared/config.ts";

const KEY = Buffer.alloc(32, 7).toString("base64");

describe("edge node configuration", () => {
  it("reads the Node server's variable names, with the same defaults", () => {
    expect(edgeConfigFromEnv({ NATS_URL: "ws://127.0.0.1:8080" })).toEqual({
      cluster: "demo",
      nats: ["ws://127.0.0.1:8080"],
      manager: "delta",
      send: "async",
      maxInactive: 1800,
      trustProxy: false,
      logLevel: "info",
      jetstream: false,
      clusterKeys: [],
      protection: "encrypt",
    });
    const config = edgeConfigFromEnv({
      NATS_URL: " wss://a.example:443, wss://b.example:443 ",
      SESSREP_CLUSTER: "shop",
      SESSREP_NODE: "edge-fra",
      SESSREP_MANAGER: "backup",
      SESSREP_SEND: "ack",
      SESSREP_MAX_INACTIVE: "-1",
      SESSREP_CLUSTER_KEY: `k1:${KEY}`,
      SESSREP_PROTECTION: "sign",
      SESSREP_ADVERTISE_URL: "https://fra.example",
      LOG_LEVEL: "warn",
      NATS_USER: "edge",
      NATS_PASSWORD: "secret",
      UNRELATED: "x",
    });
    expect(config).toMatchObject({
      cluster: "shop",
      node: "edge-fra",
      nats: ["wss://a.example:443", "wss://b.example:443"],
      manager: "backup",
      send: "ack",
      maxInactive: -1,
      clusterKeys: [{ id: "k1", secret: KEY }],
      protection: "sign",
      advertiseUrl: "https://fra.example",
      logLevel: "warn",
    });
    expect(wsConnectionOptions(config, "n")).toMatchObject({ servers: ["wss://a.example:443", "wss://b.example:443"], user: "edge", pass: "secret", noEcho: true, maxReconnectAttempts: -1 });
  });

  it("send mode persist turns the JetStream log on, and refuses it turned off", () => {
    expect(edgeConfigFromEnv({ NATS_URL: "ws://h:1", SESSREP_SEND: "persist" }).jetstream).toBe(true);
    expect(() => edgeConfigFromEnv({ NATS_URL: "ws://h:1", SESSREP_SEND: "persist", SESSREP_JETSTREAM: "false" })).toThrow(/persist needs SESSREP_JETSTREAM=true/);
  });

  it.each([
    [{}, /NATS_URL is required/],
    [{ NATS_URL: "nats://127.0.0.1:4222" }, /ws:\/\/ or wss:\/\/ URLs on an edge runtime/],
    [{ NATS_URL: "ws://h:1", SESSREP_NODE: "a.b" }, /SESSREP_NODE must be 1-64 characters/],
    [{ NATS_URL: "ws://h:1", SESSREP_MANAGER: "gossip" }, /SESSREP_MANAGER must be one of delta, backup/],
    [{ NATS_URL: "ws://h:1", SESSREP_MAX_INACTIVE: "1.5" }, /SESSREP_MAX_INACTIVE must be an integer/],
    [{ NATS_URL: "ws://h:1", SESSREP_CLUSTER_KEY: "k1:short" }, /SESSREP_CLUSTER_KEY: /],
  ])("refuses %o with a named error", (env, message) => {
    expect(() => edgeConfigFromEnv(env)).toThrow(ConfigError);
    expect(() => edgeConfigFromEnv(env)).toThrow(message);
  });
});
