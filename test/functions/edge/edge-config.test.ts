// Owns: unit tests of the demo edge node's settings: the edge variables as the one configuration
// reader reads them (functions/shared/config.ts), and how functions/edge/edge-node.ts turns them into
// the Deno and Bun adapters' options (wsConnectionOptions, edgeMemberOptions).
import { describe, expect, it } from 'vitest';
import { edgeMemberOptions, wsConnectionOptions } from '../../../functions/edge/edge-node.ts';
import { ConfigError, readConfig } from '../../../functions/shared/config.ts';

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('edge node configuration', () => {
  it("reads the Node server's variable names, with the same defaults", () => {
    expect(readConfig('edge', { NATS_URL: 'ws://127.0.0.1:8080' })).toEqual({
      cluster: 'demo',
      nats: ['ws://127.0.0.1:8080'],
      manager: 'delta',
      send: 'async',
      maxInactive: 1800,
      trustProxy: false,
      logLevel: 'info',
      jetstream: false,
      clusterKeys: [],
      protection: 'encrypt',
    });
    const config = readConfig('edge', {
      NATS_URL: ' wss://a.example:443, wss://b.example:443 ',
      SESSREP_CLUSTER: 'shop',
      SESSREP_NODE: 'edge-fra',
      SESSREP_MANAGER: 'backup',
      SESSREP_SEND: 'ack',
      SESSREP_MAX_INACTIVE: '-1',
      SESSREP_CLUSTER_KEY: `k1:${KEY}`,
      SESSREP_PROTECTION: 'sign',
      SESSREP_ADVERTISE_URL: 'https://fra.example',
      LOG_LEVEL: 'warn',
      NATS_USER: 'edge',
      NATS_PASSWORD: 'secret',
      UNRELATED: 'x',
    });
    expect(config).toMatchObject({
      cluster: 'shop',
      node: 'edge-fra',
      nats: ['wss://a.example:443', 'wss://b.example:443'],
      manager: 'backup',
      send: 'ack',
      maxInactive: -1,
      clusterKeys: [{ id: 'k1', secret: KEY }],
      protection: 'sign',
      advertiseUrl: 'https://fra.example',
      logLevel: 'warn',
    });
    expect(wsConnectionOptions(config)).toMatchObject({
      servers: ['wss://a.example:443', 'wss://b.example:443'],
      user: 'edge',
      pass: 'secret',
      noEcho: true,
      maxReconnectAttempts: -1,
    });
    // The adapters' options: the connection, the cluster settings, no replication log.
    const options = edgeMemberOptions(config);
    expect(options.nats).toMatchObject({
      servers: ['wss://a.example:443', 'wss://b.example:443'],
      user: 'edge',
      pass: 'secret',
      noEcho: true,
    });
    expect(options.cluster).toMatchObject({
      cluster: 'shop',
      node: 'edge-fra',
      manager: 'backup',
      sendMode: 'ack',
      maxInactiveSeconds: -1,
      clusterKeys: [{ id: 'k1', secret: KEY }],
      protection: 'sign',
      advertiseUrl: 'https://fra.example',
    });
    expect(options.log).toBeUndefined();
  });

  it('send mode persist turns the JetStream log on (the adapters get a log factory), and refuses it turned off', () => {
    const config = readConfig('edge', { NATS_URL: 'ws://h:1', SESSREP_SEND: 'persist' });
    expect(config.jetstream).toBe(true);
    expect(typeof edgeMemberOptions(config).log).toBe('function');
    expect(() =>
      readConfig('edge', { NATS_URL: 'ws://h:1', SESSREP_SEND: 'persist', SESSREP_JETSTREAM: 'false' }),
    ).toThrow(/persist needs SESSREP_JETSTREAM=true/);
  });

  it.each([
    [{}, /NATS_URL is required/],
    [{ NATS_URL: 'nats://127.0.0.1:4222' }, /ws:\/\/ or wss:\/\/ URLs on an edge runtime/],
    [{ NATS_URL: 'ws://h:1', SESSREP_NODE: 'a.b' }, /SESSREP_NODE must be 1-64 characters/],
    [{ NATS_URL: 'ws://h:1', SESSREP_MANAGER: 'gossip' }, /SESSREP_MANAGER must be one of delta, backup/],
    [{ NATS_URL: 'ws://h:1', SESSREP_MAX_INACTIVE: '1.5' }, /SESSREP_MAX_INACTIVE must be an integer/],
    [{ NATS_URL: 'ws://h:1', SESSREP_CLUSTER_KEY: 'k1:short' }, /SESSREP_CLUSTER_KEY: /],
  ])('refuses %o with a named error', (env, message) => {
    expect(() => readConfig('edge', env)).toThrow(ConfigError);
    expect(() => readConfig('edge', env)).toThrow(message);
  });
});
