/**
 * The demo edge node's settings (`readConfig('edge', env)` from functions/shared/config.ts) turned into
 * the options of the Deno and Bun adapters (`session-replication/deno`, `session-replication/bun`),
 * which do the work. Runtime-neutral: the entries (deno.ts, bun.ts, worker.ts) read the environment.
 */
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { consoleLogger, type ClusterNode } from 'session-replication';
import type { EdgeMemberOptions, FetchHandler } from 'session-replication/deno';
import { jetStreamLogFor } from 'session-replication/jetstream';
import { NODE_CONNECTION_DEFAULTS } from 'session-replication/nats';
import { createDemoApp } from '../demo-app.ts';
import type { EdgeEnvConfig } from '../shared/config.ts';

/** Connection options for `wsconnect`: the node connection policy, the URLs and the credentials. */
export function wsConnectionOptions(config: EdgeEnvConfig): ConnectionOptions {
  return {
    servers: config.nats,
    ...NODE_CONNECTION_DEFAULTS,
    ...(config.natsUser !== undefined ? { user: config.natsUser, pass: config.natsPassword ?? '' } : {}),
    ...(config.natsToken !== undefined ? { token: config.natsToken } : {}),
  };
}

/** The options of `serveDeno` / `serveBun`: the member options of `config`, listening on PORT (else `defaultPort`) and HOST (else 127.0.0.1). */
export function edgeServeOptions(
  config: EdgeEnvConfig,
  env: Readonly<Record<string, string | undefined>>,
  defaultPort: number,
): EdgeMemberOptions & { port: number; hostname: string } {
  return {
    ...edgeMemberOptions(config),
    port: Number(env.PORT ?? String(defaultPort)),
    hostname: env.HOST ?? '127.0.0.1',
  };
}

/** Prints the `listening` line whatever LOG_LEVEL says: scripts and tests learn the port from it. */
export function announceListening(url: string, runtime: 'deno' | 'bun'): void {
  console.log(JSON.stringify({ level: 'info', time: Date.now(), msg: 'listening', url, runtime }));
}

/** The member node options of the Deno and Bun adapters for `config`. */
export function edgeMemberOptions(config: EdgeEnvConfig): EdgeMemberOptions {
  return {
    nats: wsConnectionOptions(config),
    cluster: {
      cluster: config.cluster,
      ...(config.node !== undefined ? { node: config.node } : {}),
      manager: config.manager,
      sendMode: config.send,
      maxInactiveSeconds: config.maxInactive,
      ...(config.clusterKeys.length > 0 ? { clusterKeys: config.clusterKeys, protection: config.protection } : {}),
      ...(config.advertiseUrl !== undefined ? { advertiseUrl: config.advertiseUrl } : {}),
      logger: consoleLogger(config.logLevel),
    },
    ...(config.jetstream ? { log: (connection: NatsConnection) => jetStreamLogFor(connection, config.cluster) } : {}),
  };
}

/** The demo app as a member app, built on the running node; with `SESSREP_ADMIN_TOKEN` it mounts the admin routes behind that token. */
export function demoMemberApp(config: EdgeEnvConfig): (node: ClusterNode) => FetchHandler {
  return (node) =>
    createDemoApp(node, {
      session: { trustProxy: config.trustProxy },
      ...(config.adminToken !== undefined ? { admin: { token: config.adminToken } } : {}),
    });
}
