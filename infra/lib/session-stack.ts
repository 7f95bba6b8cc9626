/**
 * `SessionStack`: one environment of the Lambda deployment: the demo app's handler on the library's
 * `SessionClusterFunction` construct (snapshot table, function bundled with esbuild, never Docker,
 * least-privilege role, log metric filters and alarms) behind a Function URL. NATS runs elsewhere (Synadia Cloud, or your own servers reachable from Lambda); its
 * servers and credentials come from a Secrets Manager secret or an SSM SecureString parameter.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CfnOutput, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { SessionClusterFunction } from 'session-replication/cdk';

export { METRIC_FILTERS } from 'session-replication/cdk';

/** The repository root (the entry, the lockfile and node_modules live there). */
export const REPO_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'package-lock.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package-lock.json above ${from}`);
    dir = parent;
  }
  return dir;
}

/** Namespace of the metrics the log metric filters publish (one per environment). */
export const metricNamespace = (envName: string) => `SessionReplication/${envName}`;

/** Settings of one environment; `sessionStackPropsFromContext` reads them from `-c key=value`. */
export interface SessionStackProps extends StackProps {
  /** Environment name (`-c env=`): part of the stack name, the metric namespace and the tags. */
  readonly envName: string;
  /** Cluster name (`-c cluster=`, default `sessions-<env>`): every function instance joins it. */
  readonly cluster: string;
  /** NATS server URLs (`-c natsUrl=`, comma-separated); optional when the secret carries `servers`. */
  readonly natsUrl?: string;
  /** Secrets Manager secret name or full ARN with the NATS settings (`-c natsSecret=`; default `session-replication/<env>/nats` when no NATS setting is given). */
  readonly natsSecret?: string;
  /** SSM SecureString parameter name with the NATS settings (`-c natsParameter=`). */
  readonly natsParameter?: string;
  /** Customer-managed KMS key of the secret or parameter (`-c natsKmsKeyArn=`); AWS-managed keys need nothing. */
  readonly natsKmsKeyArn?: string;
  /** `-c sendMode=`: persist (default), ack or async. */
  readonly sendMode?: 'async' | 'ack' | 'persist';
  /** `-c manager=`: delta (default; uses the table and the JetStream log) or backup (no table). */
  readonly manager?: 'delta' | 'backup';
  /** `-c memory=` MB (default 512). */
  readonly memorySize?: number;
  /** `-c arch=`: arm64 (default, 20 % cheaper per GB-second) or x86_64. */
  readonly architecture?: 'arm64' | 'x86_64';
  /** `-c runtime=`: nodejs22.x (default) or nodejs20.x (see README: Lambda no longer creates nodejs20.x functions). */
  readonly runtime?: 'nodejs20.x' | 'nodejs22.x' | 'nodejs24.x';
  /** `-c maxInactive=` session timeout in seconds (default 1800). */
  readonly maxInactive?: number;
  /** `-c logLevel=` (default warn). */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** `-c urlAuth=`: NONE (default, a public web app) or AWS_IAM. */
  readonly urlAuth?: 'NONE' | 'AWS_IAM';
  /** `-c reservedConcurrency=`: caps the instances, i.e. the cluster size (every instance is a member). */
  readonly reservedConcurrency?: number;
  /** `-c alarmTopicArn=`: SNS topic the alarms notify. */
  readonly alarmTopicArn?: string;
  /** `-c gracefulShutdown=true`: adds the Lambda Insights extension so Lambda sends SIGTERM and instances leave at once. */
  readonly gracefulShutdown?: boolean;
  /** `-c retainTable=false` drops the table with the stack (default: kept). */
  readonly retainTable?: boolean;
  /** A VPC to run in (private NATS servers); props only, no lookup at synth. */
  readonly vpc?: ec2.IVpc;
}

/** The stack of one environment: `SessionReplication-<env>`, the demo app on `SessionClusterFunction`. */
export class SessionStack extends Stack {
  readonly sessions: SessionClusterFunction;

  constructor(scope: Construct, id: string, props: SessionStackProps) {
    super(scope, id, props);
    Tags.of(this).add('project', 'session-replication');
    Tags.of(this).add('environment', props.envName);
    this.sessions = new SessionClusterFunction(this, 'Sessions', {
      // The demo app never routes drain from the public URL (functions/lambda/runtime.ts).
      entry: join(REPO_ROOT, 'functions/lambda/handler.ts'),
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      description: `session-replication demo app, cluster ${props.cluster} (${props.envName})`,
      cluster: props.cluster,
      nats: {
        ...(props.natsUrl ? { url: props.natsUrl } : {}),
        ...(props.natsSecret ? { secret: props.natsSecret } : {}),
        ...(props.natsParameter ? { parameter: props.natsParameter } : {}),
        ...(props.natsKmsKeyArn ? { kmsKeyArn: props.natsKmsKeyArn } : {}),
      },
      metricNamespace: metricNamespace(props.envName),
      functionUrl: { authType: props.urlAuth ?? 'NONE' },
      ...(props.manager ? { manager: props.manager } : {}),
      ...(props.sendMode ? { sendMode: props.sendMode } : {}),
      ...(props.maxInactive !== undefined ? { maxInactive: props.maxInactive } : {}),
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.memorySize !== undefined ? { memorySize: props.memorySize } : {}),
      ...(props.architecture ? { architecture: props.architecture } : {}),
      ...(props.runtime ? { runtime: props.runtime } : {}),
      ...(props.reservedConcurrency !== undefined ? { reservedConcurrency: props.reservedConcurrency } : {}),
      ...(props.alarmTopicArn ? { alarmTopic: sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) } : {}),
      ...(props.gracefulShutdown !== undefined ? { gracefulShutdown: props.gracefulShutdown } : {}),
      ...(props.retainTable !== undefined ? { retainTable: props.retainTable } : {}),
      ...(props.vpc ? { vpc: props.vpc } : {}),
    });

    new CfnOutput(this, 'FunctionUrl', { value: this.sessions.functionUrl!.url });
    new CfnOutput(this, 'FunctionName', { value: this.sessions.function.functionName });
    new CfnOutput(this, 'LogGroupName', { value: this.sessions.logGroup.logGroupName });
    if (this.sessions.table) new CfnOutput(this, 'TableName', { value: this.sessions.table.tableName });
  }
}

/** The secret an environment reads its NATS settings from when no natsUrl/natsSecret/natsParameter is given. */
export const defaultNatsSecretName = (envName: string) => `session-replication/${envName}/nats`;

/** Context keys read by `sessionStackPropsFromContext`. */
export const CONTEXT_KEYS = [
  'env',
  'cluster',
  'natsUrl',
  'natsSecret',
  'natsParameter',
  'natsKmsKeyArn',
  'sendMode',
  'manager',
  'memory',
  'arch',
  'runtime',
  'maxInactive',
  'logLevel',
  'urlAuth',
  'reservedConcurrency',
  'alarmTopicArn',
  'gracefulShutdown',
  'retainTable',
  'account',
  'region',
] as const;

/**
 * Stack id and props from CDK context (`-c env=dev -c natsUrl=...`) and the CLI's default
 * account/region. Without credentials (offline synth) the account is a placeholder, so synth needs
 * no AWS access; `cdk deploy` runs with credentials, which set the real account.
 */
export function sessionStackPropsFromContext(
  get: (key: string) => unknown,
  env: Record<string, string | undefined> = process.env,
): { id: string; props: SessionStackProps } {
  const text = (key: string): string | undefined => {
    const value = get(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value))
      throw new Error(`-c ${key}= must be one of ${allowed.join(', ')} (got "${value}")`);
    return value as T;
  };
  const int = (key: string, min: number, max: number): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`-c ${key}= must be an integer from ${min} to ${max} (got "${value}")`);
    return n;
  };
  const flag = (key: string): boolean | undefined => {
    const value = oneOf(key, ['true', 'false']);
    return value === undefined ? undefined : value === 'true';
  };
  const envName = text('env') ?? 'dev';
  if (!/^[A-Za-z0-9-]{1,32}$/.test(envName))
    throw new Error(`-c env= must be 1-32 characters of A-Z a-z 0-9 - (got "${envName}")`);
  const cluster = text('cluster') ?? `sessions-${envName}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cluster))
    throw new Error(`-c cluster= must be 1-64 characters of A-Z a-z 0-9 _ - (got "${cluster}")`);
  const optional = <K extends keyof SessionStackProps>(key: K, value: SessionStackProps[K] | undefined) =>
    value === undefined ? {} : { [key]: value };
  const natsUrl = text('natsUrl');
  const natsParameter = text('natsParameter');
  // Without any NATS setting, the convention: a secret named after the environment (created before deploying).
  const natsSecret =
    text('natsSecret') ??
    (natsUrl === undefined && natsParameter === undefined ? defaultNatsSecretName(envName) : undefined);
  const props: SessionStackProps = {
    envName,
    cluster,
    env: {
      account: text('account') ?? env.CDK_DEFAULT_ACCOUNT ?? '123456789012',
      region: text('region') ?? env.CDK_DEFAULT_REGION ?? env.AWS_REGION ?? 'us-east-1',
    },
    description: `session-replication on Lambda (${envName}): table, function, Function URL, alarms`,
    ...optional('natsUrl', natsUrl),
    ...optional('natsSecret', natsSecret),
    ...optional('natsParameter', natsParameter),
    ...optional('natsKmsKeyArn', text('natsKmsKeyArn')),
    ...optional('sendMode', oneOf('sendMode', ['async', 'ack', 'persist'] as const)),
    ...optional('manager', oneOf('manager', ['delta', 'backup'] as const)),
    ...optional('memorySize', int('memory', 128, 10240)),
    ...optional('architecture', oneOf('arch', ['arm64', 'x86_64'] as const)),
    ...optional('runtime', oneOf('runtime', ['nodejs20.x', 'nodejs22.x', 'nodejs24.x'] as const)),
    ...optional('maxInactive', int('maxInactive', -1, 7 * 24 * 3600)),
    ...optional('logLevel', oneOf('logLevel', ['debug', 'info', 'warn', 'error'] as const)),
    ...optional('urlAuth', oneOf('urlAuth', ['NONE', 'AWS_IAM'] as const)),
    ...optional('reservedConcurrency', int('reservedConcurrency', 1, 10000)),
    ...optional('alarmTopicArn', text('alarmTopicArn')),
    ...optional('gracefulShutdown', flag('gracefulShutdown')),
    ...optional('retainTable', flag('retainTable')),
  };
  return { id: `SessionReplication-${envName}`, props };
}
