/**
 * Where a Lambda node finds NATS: servers and credentials given as options, or kept in a Secrets
 * Manager secret or an SSM SecureString parameter and fetched once per execution environment.
 * Files cannot be shipped to Lambda, so TLS material and credentials are PEM / creds text, not paths.
 */
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { z } from 'zod';
import { InvalidOptionsError } from '../../lib/errors.ts';
import { loadOptionalPeer } from '../../lib/optional-peer.ts';

/** Where the NATS servers and credentials come from (give at most one of `secret`, `parameter`, `load`). */
export interface LambdaNatsOptions {
  /** NATS server URLs; the fetched settings' `servers` replace them when present. */
  readonly servers?: string | readonly string[];
  /** A Secrets Manager secret (name or ARN) holding `NatsSettings` JSON or a `.creds` file (needs `@aws-sdk/client-secrets-manager`). */
  readonly secret?: string;
  /** An SSM SecureString parameter holding `NatsSettings` JSON or a `.creds` file (needs `@aws-sdk/client-ssm`). */
  readonly parameter?: string;
  /** Loads the settings text some other way (undefined: none). */
  readonly load?: () => Promise<string | undefined>;
  /**
   * AWS region of the secret or parameter.
   * @default the SDK's own resolution (`AWS_REGION`, set by Lambda)
   */
  readonly region?: string;
  /** More connection options (authentication, TLS), applied before the fetched settings. */
  readonly connectionOptions?: Partial<ConnectionOptions>;
  /**
   * Opens the connection.
   * @default `connect` from `@nats-io/transport-node`
   */
  readonly connect?: (options: ConnectionOptions) => Promise<NatsConnection>;
}

/**
 * NATS settings kept in Secrets Manager or SSM: a JSON object with any of these fields, or the text
 * of a `.creds` file (JWT + NKey seed) on its own.
 */
export interface NatsSettings {
  /** Server URLs; they replace `LambdaNatsOptions.servers`. */
  servers?: string | string[];
  user?: string;
  password?: string;
  token?: string;
  /** The contents of a `.creds` file. */
  creds?: string;
  /** An NKey seed (`SU...`). */
  nkeySeed?: string;
  /** PEM of the CA that signed the server certificate (turns on TLS). */
  tlsCa?: string;
  /** PEM client certificate and key for mutual TLS. */
  tlsCert?: string;
  tlsKey?: string;
}

const natsSettingsSchema: z.ZodType<NatsSettings> = z
  .object({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    user: z.string().optional(),
    password: z.string().optional(),
    token: z.string().optional(),
    creds: z.string().optional(),
    nkeySeed: z.string().optional(),
    tlsCa: z.string().optional(),
    tlsCert: z.string().optional(),
    tlsKey: z.string().optional(),
  })
  .strict();

/** Parses the secret or parameter text; throws `InvalidOptionsError` that never echoes the text (it is a credential). */
export function parseNatsSettings(text: string, source: string): NatsSettings {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN NATS USER JWT-----')) return { creds: trimmed };
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    throw new InvalidOptionsError(`${source}: not JSON and not a .creds file`);
  }
  const parsed = natsSettingsSchema.safeParse(json);
  if (!parsed.success)
    throw new InvalidOptionsError(
      `${source}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

/** Throws `InvalidOptionsError` when more than one settings source is given. */
export function checkNatsOptions(nats: LambdaNatsOptions): void {
  const sources = (['secret', 'parameter', 'load'] as const).filter((key) => nats[key] !== undefined);
  if (sources.length > 1)
    throw new InvalidOptionsError(`nats: give one of secret, parameter or load, not ${sources.join(' and ')}`);
}

/**
 * Opens the NATS connection of one execution environment: fetches the settings (once per call),
 * then connects with a short timeout, because a cold start must not outlive Lambda's INIT budget.
 */
export async function connectNats(nats: LambdaNatsOptions, name: string): Promise<NatsConnection> {
  const source =
    nats.secret !== undefined
      ? `secret ${nats.secret}`
      : nats.parameter !== undefined
        ? `parameter ${nats.parameter}`
        : 'NATS settings';
  const text = await loadSettingsText(nats);
  const settings = text !== undefined ? parseNatsSettings(text, source) : {};
  const servers = [settings.servers ?? nats.servers ?? []].flat();
  if (servers.length === 0)
    throw new InvalidOptionsError('no NATS server: give nats.servers, or "servers" in the NATS secret or parameter');
  const connect =
    nats.connect ??
    (
      await loadOptionalPeer(
        'session-replication/lambda',
        ['@nats-io/transport-node'],
        () => import('@nats-io/transport-node'),
      )
    ).connect;
  return connect({
    servers,
    name,
    timeout: 5000,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    ...nats.connectionOptions,
    ...(await connectionOptionsOf(settings)),
  });
}

/** Connection options for fetched settings (credentials and TLS). */
async function connectionOptionsOf(settings: NatsSettings): Promise<Partial<ConnectionOptions>> {
  const encode = (text: string) => new TextEncoder().encode(text.trim());
  const needsAuthenticator = settings.creds !== undefined || settings.nkeySeed !== undefined;
  const core = needsAuthenticator
    ? await loadOptionalPeer('NATS credentials', ['@nats-io/nats-core'], () => import('@nats-io/nats-core'))
    : undefined;
  const tls = settings.tlsCa !== undefined || settings.tlsCert !== undefined;
  return {
    ...(settings.user !== undefined ? { user: settings.user, pass: settings.password } : {}),
    ...(settings.token !== undefined ? { token: settings.token } : {}),
    ...(settings.creds !== undefined ? { authenticator: core!.credsAuthenticator(encode(settings.creds)) } : {}),
    ...(settings.nkeySeed !== undefined ? { authenticator: core!.nkeyAuthenticator(encode(settings.nkeySeed)) } : {}),
    ...(tls
      ? {
          tls: {
            ...(settings.tlsCa !== undefined ? { ca: settings.tlsCa } : {}),
            ...(settings.tlsCert !== undefined ? { cert: settings.tlsCert, key: settings.tlsKey } : {}),
          },
        }
      : {}),
  };
}

/** Fetches the settings text from Secrets Manager, SSM or `load` (the SDK clients are loaded only when used). */
async function loadSettingsText(nats: LambdaNatsOptions): Promise<string | undefined> {
  const region = nats.region !== undefined ? { region: nats.region } : {};
  if (nats.secret !== undefined) {
    const { SecretsManagerClient, GetSecretValueCommand } = await loadOptionalPeer(
      'nats.secret',
      ['@aws-sdk/client-secrets-manager'],
      () => import('@aws-sdk/client-secrets-manager'),
    );
    const client = new SecretsManagerClient({ ...region, maxAttempts: 3 });
    try {
      const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: nats.secret }));
      if (SecretString === undefined)
        throw new InvalidOptionsError(`secret ${nats.secret} has no SecretString (binary secrets are not supported)`);
      return SecretString;
    } finally {
      client.destroy();
    }
  }
  if (nats.parameter !== undefined) {
    const { SSMClient, GetParameterCommand } = await loadOptionalPeer(
      'nats.parameter',
      ['@aws-sdk/client-ssm'],
      () => import('@aws-sdk/client-ssm'),
    );
    const client = new SSMClient({ ...region, maxAttempts: 3 });
    try {
      const { Parameter } = await client.send(new GetParameterCommand({ Name: nats.parameter, WithDecryption: true }));
      if (Parameter?.Value === undefined) throw new InvalidOptionsError(`parameter ${nats.parameter} has no value`);
      return Parameter.Value;
    } finally {
      client.destroy();
    }
  }
  return nats.load?.();
}
