// Owns: unit tests of the one configuration reader (functions/shared/config.ts): defaults per runtime, errors, rules.
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  defaultOf,
  parseConfig,
  readConfig,
  settingsOf,
  SETTINGS,
} from '../../../functions/shared/config.ts';
import { SessionReplicationError } from '../../../lib/index.ts';

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('readConfig', () => {
  it('applies the same defaults on every runtime, except the ones stated per runtime', () => {
    const node = readConfig('node', {});
    const edge = readConfig('edge', { NATS_URL: 'ws://127.0.0.1:1' });
    const lambda = readConfig('lambda', {});
    for (const config of [node, edge, lambda])
      expect(config).toMatchObject({
        cluster: 'demo',
        manager: 'delta',
        maxInactive: 1800,
        protection: 'encrypt',
        clusterKeys: [],
      });
    expect(node).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      send: 'async',
      jetstream: false,
      logLevel: 'info',
      awsRegion: 'us-east-1',
      nats: [],
    });
    expect(node.node).toMatch(/^[a-z0-9]{8}$/);
    expect(edge).toMatchObject({ send: 'async', jetstream: false, logLevel: 'info' });
    expect(edge.node).toBeUndefined();
    // Lambda: the log by default with the delta manager, send persist with it, and warn-level logs.
    expect(lambda).toMatchObject({
      send: 'persist',
      jetstream: true,
      logLevel: 'warn',
      catchUpTimeoutMs: 2000,
      sweepEveryMs: 10000,
    });
    expect(lambda.node).toMatch(/^lam-[a-z0-9]{8}$/);
    expect(defaultOf('lambda', 'logLevel')).toBe('warn');
    expect(defaultOf('node', 'logLevel')).toBe('info');
  });

  it('reads only the variables of its runtime, trims them, treats blank as unset and reads AWS_DEFAULT_REGION as a fallback', () => {
    expect(settingsOf('edge')).not.toContain('port');
    expect(readConfig('edge', { NATS_URL: 'ws://h:1', PORT: 'x', SESSREP_DYNAMODB_TABLE: 't' })).not.toHaveProperty(
      'dynamodbTable',
    );
    const config = readConfig('node', {
      SESSREP_CLUSTER: ' shop ',
      SESSREP_NODE: '',
      NATS_URL: ' nats://a:1, b:2 ',
      AWS_DEFAULT_REGION: 'eu-west-1',
    });
    expect(config).toMatchObject({ cluster: 'shop', nats: ['nats://a:1', 'b:2'], awsRegion: 'eu-west-1' });
    expect(readConfig('node', { AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'eu-west-1' }).awsRegion).toBe(
      'us-west-2',
    );
    expect(readConfig('node', { SESSREP_ADVERTISE_URL: 'http://h:1//' }).advertiseUrl).toBe('http://h:1');
    expect(
      readConfig('edge', {
        NATS_URL: 'ws://h:1',
        SESSREP_CLUSTER_KEY: `# old\nk2:${KEY}\nk1:${KEY.replace(/^./, 'B')}`,
      }).clusterKeys.map((k) => k.id),
    ).toEqual(['k2', 'k1']);
  });

  it('trustProxy: false by default on every runtime; SESSREP_TRUST_PROXY=true turns it on; other values are refused', () => {
    for (const config of [
      readConfig('node', {}),
      readConfig('edge', { NATS_URL: 'ws://h:1' }),
      readConfig('lambda', {}),
    ])
      expect(config.trustProxy).toBe(false);
    expect(readConfig('node', { SESSREP_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(readConfig('lambda', { SESSREP_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(() => readConfig('node', { SESSREP_TRUST_PROXY: 'yes' })).toThrow(/^SESSREP_TRUST_PROXY must be/);
    expect(SETTINGS.trustProxy.flag).toBe('trust-proxy');
  });

  it.each([
    ['node', { PORT: 'abc' }, /^PORT must be an integer from 0 to 65535, got "abc"$/],
    ['node', { SESSREP_CLUSTER: 'a.b' }, /^SESSREP_CLUSTER must be 1-64 characters of A-Z a-z 0-9 _ -, got "a.b"$/],
    ['node', { NATS_URL: 'nats://ok:1,http://x' }, /^NATS_URL must be URLs like nats:\/\/host:4222, got "http:\/\/x"$/],
    ['edge', { NATS_URL: 'nats://h:1' }, /NATS_URL must be ws:\/\/ or wss:\/\/ URLs on an edge runtime/],
    ['edge', {}, /NATS_URL is required/],
    ['lambda', { SESSREP_SEND: 'sometimes' }, /SESSREP_SEND must be one of async, ack, persist, got "sometimes"/],
    ['lambda', { SESSREP_CATCHUP_TIMEOUT_MS: '0' }, /SESSREP_CATCHUP_TIMEOUT_MS must be an integer >= 1/],
    ['lambda', { SESSREP_NATS_SECRET: 'a', SESSREP_NATS_PARAMETER: 'b' }, /not both/],
    ['lambda', { SESSREP_MANAGER: 'backup', SESSREP_JETSTREAM: 'true' }, /work with SESSREP_MANAGER delta only/],
    [
      'lambda',
      { SESSREP_JETSTREAM: 'false', SESSREP_DYNAMODB_TABLE: 'tbl' },
      /SESSREP_DYNAMODB_TABLE needs the JetStream log/,
    ],
    [
      'edge',
      { NATS_URL: 'ws://h:1', SESSREP_SEND: 'persist', SESSREP_JETSTREAM: 'false' },
      /persist needs SESSREP_JETSTREAM=true/,
    ],
    ['node', { SESSREP_SEND: 'persist' }, /need NATS_URL/],
    ['node', { NATS_USER: 'u' }, /NATS_USER and NATS_PASSWORD go together/],
    ['edge', { NATS_URL: 'ws://h:1', SESSREP_MAX_INACTIVE: '1.5' }, /SESSREP_MAX_INACTIVE must be an integer/],
    ['edge', { NATS_URL: 'ws://h:1', SESSREP_CLUSTER_KEY: 'k1:short' }, /^SESSREP_CLUSTER_KEY: /],
    // A secret is never echoed: the message names the rule, not the value.
    ['lambda', { SESSREP_ADMIN_TOKEN: 'short-secret' }, /^SESSREP_ADMIN_TOKEN must be at least 16 characters$/],
  ] as const)('%s refuses %o with a ConfigError naming the variable', (runtime, env, message) => {
    const error = (() => {
      try {
        readConfig(runtime, env);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(SessionReplicationError);
    expect((error as ConfigError).code).toBe('INVALID_CONFIG');
    expect((error as Error).message).toMatch(message);
  });
});

describe('parseConfig', () => {
  it('names settings as the caller says (a CLI names its flags)', () => {
    const flag = (name: keyof typeof SETTINGS) => `--${SETTINGS[name].flag}`;
    expect(() => parseConfig('node', { send: 'sometimes' }, flag)).toThrow(
      /^--send must be one of async, ack, persist, got "sometimes"$/,
    );
    expect(parseConfig('node', { send: 'persist', nats: 'nats://h:1' }, flag)).toMatchObject({
      send: 'persist',
      jetstream: true,
    });
  });
});
