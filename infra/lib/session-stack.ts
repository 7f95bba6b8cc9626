/**
 * `SessionStack`: one environment of the Lambda deployment. The DynamoDB snapshot table, the Lambda
 * function (bundled with esbuild from npm, never Docker) behind a Function URL, a least-privilege
 * role, the function's log group with metric filters for replication and snapshot errors, and
 * alarms. NATS runs elsewhere (Synadia Cloud, or your own servers reachable from Lambda); its
 * servers and credentials come from a Secrets Manager secret or an SSM SecureString parameter.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';

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

/** The log lines each metric counts (JSON lines written by the Lambda logger). */
export const METRIC_FILTERS = {
  /** Every error the library logs is a replication or broker error; "request failed" is the demo app's own 500. */
  ReplicationErrors: logs.FilterPattern.all(logs.FilterPattern.stringValue('$.level', '=', 'error'), logs.FilterPattern.stringValue('$.msg', '!=', 'request failed')),
  /** Write-behind to DynamoDB failed (retried with backoff), or a cold start could not load the snapshot. */
  SnapshotErrors: logs.FilterPattern.any(logs.FilterPattern.stringValue('$.msg', '=', 'snapshot write failed*'), logs.FilterPattern.stringValue('$.msg', '=', 'snapshot store unreachable*')),
  /** A thawed instance could not catch up with the JetStream log in time (503 or a stale read). */
  CatchUpFailures: logs.FilterPattern.stringValue('$.msg', '=', 'log catch-up timed out*'),
} as const;

const RUNTIMES = { 'nodejs20.x': lambda.Runtime.NODEJS_20_X, 'nodejs22.x': lambda.Runtime.NODEJS_22_X, 'nodejs24.x': lambda.Runtime.NODEJS_24_X } as const;

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

/** The stack of one environment: `SessionReplication-<env>`. */
export class SessionStack extends Stack {
  readonly table?: dynamodb.Table;
  readonly function: NodejsFunction;
  readonly functionUrl: lambda.FunctionUrl;
  readonly logGroup: logs.LogGroup;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: SessionStackProps) {
    super(scope, id, props);
    const manager = props.manager ?? 'delta';
    const sendMode = props.sendMode ?? (manager === 'delta' ? 'persist' : 'async');
    if (manager === 'backup' && sendMode === 'persist') throw new Error('sendMode persist needs the delta manager (the JetStream log)');
    if (props.natsSecret && props.natsParameter) throw new Error('give natsSecret or natsParameter, not both');
    Tags.of(this).add('project', 'session-replication');
    Tags.of(this).add('environment', props.envName);

    if (manager === 'delta') {
      this.table = new dynamodb.Table(this, 'Sessions', {
        partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        timeToLiveAttribute: 'ttl',
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        removalPolicy: props.retainTable === false ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      });
    }

    this.logGroup = new logs.LogGroup(this, 'FunctionLogs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });

    // No managed policy: the role may write its own log group, use its own table and read its own secret, nothing else.
    const role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `session-replication ${props.envName}: logs, its snapshot table, its NATS settings`,
    });
    role.addToPolicy(new iam.PolicyStatement({ sid: 'Logs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.logGroup.logGroupArn] }));
    if (this.table) {
      // The store's partitions are `<cluster>#<shard>` and `<cluster>#meta`: only this cluster's items.
      const ownPartitions = { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${props.cluster}#*`] } };
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'SnapshotItems',
          // GetItem: checkpoint; PutItem: checkpoint and the Put of each transaction; Query: cold-start load.
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query'],
          resources: [this.table.tableArn],
          conditions: ownPartitions,
        }),
      );
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'SnapshotDeletesInTransactions',
          // Ended sessions are deleted only inside TransactWriteItems (conditional on the version).
          actions: ['dynamodb:DeleteItem'],
          resources: [this.table.tableArn],
          conditions: { ...ownPartitions, 'ForAnyValue:StringEquals': { 'dynamodb:EnclosingOperation': ['TransactWriteItems'] } },
        }),
      );
      role.addToPolicy(new iam.PolicyStatement({ sid: 'SnapshotTable', actions: ['dynamodb:DescribeTable'], resources: [this.table.tableArn] }));
    }
    if (props.natsSecret) {
      role.addToPolicy(new iam.PolicyStatement({ sid: 'NatsSettings', actions: ['secretsmanager:GetSecretValue'], resources: [this.secretArn(props.natsSecret)] }));
    }
    if (props.natsParameter) {
      const name = props.natsParameter.replace(/^\//, '');
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'NatsSettings',
          actions: ['ssm:GetParameter'],
          resources: [this.formatArn({ service: 'ssm', resource: 'parameter', resourceName: name, arnFormat: ArnFormat.SLASH_RESOURCE_NAME })],
        }),
      );
    }
    if (props.natsKmsKeyArn && (props.natsSecret || props.natsParameter)) {
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'NatsSettingsKey',
          actions: ['kms:Decrypt'],
          resources: [props.natsKmsKeyArn],
          conditions: { StringEquals: { 'kms:ViaService': `${props.natsSecret ? 'secretsmanager' : 'ssm'}.${this.region}.amazonaws.com` } },
        }),
      );
    }

    const environment: Record<string, string> = {
      SESSREP_CLUSTER: props.cluster,
      SESSREP_MANAGER: manager,
      SESSREP_SEND: sendMode,
      SESSREP_MAX_INACTIVE: String(props.maxInactive ?? 1800),
      LOG_LEVEL: props.logLevel ?? 'warn',
      // The SDK's notice about its Node 22 requirement would be one log line per cold start.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...(props.natsUrl ? { NATS_URL: props.natsUrl } : {}),
      ...(props.natsSecret ? { SESSREP_NATS_SECRET: props.natsSecret } : {}),
      ...(props.natsParameter ? { SESSREP_NATS_PARAMETER: props.natsParameter } : {}),
      ...(this.table ? { SESSREP_DYNAMODB_TABLE: this.table.tableName } : {}),
    };

    this.function = new NodejsFunction(this, 'Function', {
      description: `session-replication demo app, cluster ${props.cluster} (${props.envName})`,
      entry: join(REPO_ROOT, 'functions/lambda/handler.ts'),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: RUNTIMES[props.runtime ?? 'nodejs22.x'],
      architecture: props.architecture === 'x86_64' ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      // Cold start (connect, snapshot load, log replay) plus a catch-up (2 s at most) plus the request.
      timeout: Duration.seconds(15),
      role,
      logGroup: this.logGroup,
      environment,
      ...(props.reservedConcurrency !== undefined ? { reservedConcurrentExecutions: props.reservedConcurrency } : {}),
      ...(props.gracefulShutdown ? { insightsVersion: lambda.LambdaInsightsVersion.VERSION_1_0_498_0 } : {}),
      ...(props.vpc ? { vpc: props.vpc } : {}),
      bundling: {
        // esbuild from node_modules: never Docker.
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node20',
        platform: 'node',
        mainFields: ['module', 'main'],
        minify: true,
        // Error classes are matched by name (the NATS client's StreamNotFoundError, the library's errors).
        keepNames: true,
        sourceMap: false,
        // Everything in one file, the AWS SDK included: the lockfile's SDK version ships, and one
        // minified file loads faster than the runtime's SDK from node_modules (~185 vs ~230 ms CPU).
        externalModules: [],
        bundleAwsSDK: true,
        // CommonJS dependencies inside an ESM bundle still call require().
        banner: "import { createRequire as __sessrepCreateRequire } from 'node:module'; const require = __sessrepCreateRequire(import.meta.url);",
      },
    });

    this.functionUrl = this.function.addFunctionUrl({
      authType: props.urlAuth === 'AWS_IAM' ? lambda.FunctionUrlAuthType.AWS_IAM : lambda.FunctionUrlAuthType.NONE,
      invokeMode: lambda.InvokeMode.BUFFERED,
    });

    // Metrics from the function's structured (JSON) log lines.
    const namespace = metricNamespace(props.envName);
    const metrics = Object.fromEntries(
      Object.entries(METRIC_FILTERS).map(([name, pattern]) => {
        const filter = new logs.MetricFilter(this, `${name}Filter`, {
          logGroup: this.logGroup,
          filterPattern: pattern,
          metricNamespace: namespace,
          metricName: name,
          metricValue: '1',
          defaultValue: 0,
        });
        return [name, filter.metric({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) })];
      }),
    ) as Record<keyof typeof METRIC_FILTERS, cloudwatch.Metric>;

    const alarm = (id: string, metric: cloudwatch.IMetric, threshold: number, description: string) => {
      const created = new cloudwatch.Alarm(this, id, {
        alarmDescription: `${description} (${props.envName})`,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      if (props.alarmTopicArn) created.addAlarmAction(new cloudwatchActions.SnsAction(sns.Topic.fromTopicArn(this, `${id}Topic`, props.alarmTopicArn)));
      this.alarms.push(created);
      return created;
    };
    alarm('ReplicationErrorsAlarm', metrics.ReplicationErrors, 1, 'Replication or broker errors logged by the session cluster');
    alarm('SnapshotErrorsAlarm', metrics.SnapshotErrors, 3, 'DynamoDB snapshot writes or loads failing');
    alarm('CatchUpFailuresAlarm', metrics.CatchUpFailures, 5, 'Thawed instances could not catch up with the JetStream log in time');
    alarm('FunctionErrorsAlarm', this.function.metricErrors({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) }), 1, 'Lambda invocation errors');

    new CfnOutput(this, 'FunctionUrl', { value: this.functionUrl.url });
    new CfnOutput(this, 'FunctionName', { value: this.function.functionName });
    new CfnOutput(this, 'LogGroupName', { value: this.logGroup.logGroupName });
    if (this.table) new CfnOutput(this, 'TableName', { value: this.table.tableName });
  }

  /** The ARN that matches a secret given by name (Secrets Manager appends `-` and 6 characters) or by full ARN. */
  private secretArn(nameOrArn: string): string {
    if (nameOrArn.startsWith('arn:')) return nameOrArn;
    return this.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: `${nameOrArn}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
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
export function sessionStackPropsFromContext(get: (key: string) => unknown, env: Record<string, string | undefined> = process.env): { id: string; props: SessionStackProps } {
  const text = (key: string): string | undefined => {
    const value = get(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value)) throw new Error(`-c ${key}= must be one of ${allowed.join(', ')} (got "${value}")`);
    return value as T;
  };
  const int = (key: string, min: number, max: number): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`-c ${key}= must be an integer from ${min} to ${max} (got "${value}")`);
    return n;
  };
  const flag = (key: string): boolean | undefined => {
    const value = oneOf(key, ['true', 'false']);
    return value === undefined ? undefined : value === 'true';
  };
  const envName = text('env') ?? 'dev';
  if (!/^[A-Za-z0-9-]{1,32}$/.test(envName)) throw new Error(`-c env= must be 1-32 characters of A-Z a-z 0-9 - (got "${envName}")`);
  const cluster = text('cluster') ?? `sessions-${envName}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cluster)) throw new Error(`-c cluster= must be 1-64 characters of A-Z a-z 0-9 _ - (got "${cluster}")`);
  const optional = <K extends keyof SessionStackProps>(key: K, value: SessionStackProps[K] | undefined) => (value === undefined ? {} : { [key]: value });
  const natsUrl = text('natsUrl');
  const natsParameter = text('natsParameter');
  // Without any NATS setting, the convention: a secret named after the environment (created before deploying).
  const natsSecret = text('natsSecret') ?? (natsUrl === undefined && natsParameter === undefined ? defaultNatsSecretName(envName) : undefined);
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
