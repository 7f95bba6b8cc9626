/**
 * The Lambda function's settings, read from the environment (the library itself reads none):
 * SESSREP_CLUSTER, NATS_URL, SESSREP_NATS_SECRET or SESSREP_NATS_PARAMETER, SESSREP_DYNAMODB_TABLE,
 * AWS_REGION, SESSREP_SEND, SESSREP_MANAGER, LOG_LEVEL and the catch-up and sweep settings.
 */
import { lambdaNodeId } from '../../adapters/lambda/index.ts';
import { InvalidOptionsError, type LogLevel } from '../../lib/index.ts';

/** A configuration problem found at cold start. */
export class LambdaConfigError extends InvalidOptionsError {}

/** Settings of the Lambda node, read from the environment by `lambdaConfigFromEnv`. */
export interface LambdaConfig {
  /** SESSREP_CLUSTER (default `demo`). */
  cluster: string;
  /** NATS_URL, comma-separated; the secret's `servers` replaces it when present. */
  nats: string[];
  /** SESSREP_MANAGER: `delta` (default) or `backup`. */
  manager: 'delta' | 'backup';
  /** SESSREP_SEND: `persist` (default with JetStream: the response waits until the log stored the change), `ack` or `async`. */
  send: 'async' | 'ack' | 'persist';
  /** SESSREP_JETSTREAM: keep the replication log in JetStream (default true with the delta manager). */
  jetstream: boolean;
  /** SESSREP_DYNAMODB_TABLE: snapshot table; without it a cold start replays the whole retained log. */
  dynamodbTable?: string;
  /** DYNAMODB_ENDPOINT: DynamoDB Local or LocalStack (tests); default AWS. */
  dynamodbEndpoint?: string;
  /** AWS_REGION (set by Lambda). */
  awsRegion: string;
  /** SESSREP_MAX_INACTIVE: session timeout in seconds (default 1800). */
  maxInactive: number;
  /** LOG_LEVEL (default `warn`: one line per request would cost more than the request). */
  logLevel: LogLevel;
  /** SESSREP_NATS_SECRET: Secrets Manager secret id or ARN holding the NATS settings. */
  natsSecret?: string;
  /** SESSREP_NATS_PARAMETER: SSM parameter name (SecureString) holding the NATS settings. */
  natsParameter?: string;
  /** SESSREP_CATCHUP_TIMEOUT_MS: how long a request waits for the log catch-up (default 2000). */
  catchUpTimeoutMs: number;
  /** SESSREP_CATCHUP_FAIL: `reject` (default: 503 + Retry-After) or `serve` (from the possibly stale copy). */
  catchUpFail: 'reject' | 'serve';
  /** SESSREP_SWEEP_INTERVAL_MS: minimum time between expiry sweeps (default 10000). */
  sweepEveryMs: number;
  /** SESSREP_NODE: node id; default a random id per execution environment (`lam-` + 8 characters). */
  node: string;
  /** Inside Lambda (AWS_LAMBDA_FUNCTION_NAME is set): leave the cluster on SIGTERM. */
  leaveOnSigterm: boolean;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** Reads the configuration from environment variables; throws `LambdaConfigError` naming the bad variable. */
export function lambdaConfigFromEnv(env: Record<string, string | undefined> = process.env): LambdaConfig {
  const get = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = get(name) ?? fallback;
    if (!(allowed as readonly string[]).includes(value)) throw new LambdaConfigError(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
    return value as T;
  };
  const integer = (name: string, fallback: number, min: number): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) throw new LambdaConfigError(`${name} must be an integer >= ${min} (got "${raw}")`);
    return value;
  };
  const manager = oneOf('SESSREP_MANAGER', ['delta', 'backup'] as const, 'delta');
  const jetstream = oneOf('SESSREP_JETSTREAM', ['true', 'false'] as const, manager === 'delta' ? 'true' : 'false') === 'true';
  const dynamodbTable = get('SESSREP_DYNAMODB_TABLE');
  const config: LambdaConfig = {
    cluster: get('SESSREP_CLUSTER') ?? 'demo',
    nats: (get('NATS_URL') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    manager,
    send: oneOf('SESSREP_SEND', ['async', 'ack', 'persist'] as const, jetstream ? 'persist' : 'async'),
    jetstream,
    awsRegion: get('AWS_REGION') ?? get('AWS_DEFAULT_REGION') ?? 'us-east-1',
    maxInactive: integer('SESSREP_MAX_INACTIVE', 1800, -1),
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS, 'warn'),
    catchUpTimeoutMs: integer('SESSREP_CATCHUP_TIMEOUT_MS', 2000, 1),
    catchUpFail: oneOf('SESSREP_CATCHUP_FAIL', ['reject', 'serve'] as const, 'reject'),
    sweepEveryMs: integer('SESSREP_SWEEP_INTERVAL_MS', 10_000, 1),
    node: get('SESSREP_NODE') ?? lambdaNodeId(),
    leaveOnSigterm: get('AWS_LAMBDA_FUNCTION_NAME') !== undefined,
    ...(dynamodbTable !== undefined ? { dynamodbTable } : {}),
    ...(get('DYNAMODB_ENDPOINT') !== undefined ? { dynamodbEndpoint: get('DYNAMODB_ENDPOINT')! } : {}),
    ...(get('SESSREP_NATS_SECRET') !== undefined ? { natsSecret: get('SESSREP_NATS_SECRET')! } : {}),
    ...(get('SESSREP_NATS_PARAMETER') !== undefined ? { natsParameter: get('SESSREP_NATS_PARAMETER')! } : {}),
  };
  if (config.natsSecret && config.natsParameter) throw new LambdaConfigError('set SESSREP_NATS_SECRET or SESSREP_NATS_PARAMETER, not both');
  if (config.jetstream && config.manager !== 'delta') throw new LambdaConfigError('SESSREP_JETSTREAM=true works with SESSREP_MANAGER=delta only');
  if (config.dynamodbTable && !config.jetstream) throw new LambdaConfigError('SESSREP_DYNAMODB_TABLE needs the JetStream log (SESSREP_JETSTREAM=true, SESSREP_MANAGER=delta)');
  if (config.send === 'persist' && !config.jetstream) throw new LambdaConfigError('SESSREP_SEND=persist needs the JetStream log (SESSREP_JETSTREAM=true)');
  return config;
}
