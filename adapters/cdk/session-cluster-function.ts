/**
 * `SessionClusterFunction`: a user's Lambda handler (built on `session-replication/lambda`) with
 * what it needs around it: the DynamoDB snapshot table with TTL, the function bundled with esbuild
 * from the project's own `node_modules` (never Docker), a least-privilege role, the function's log
 * group with metric filters, alarms, and optionally a Function URL.
 */
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { SessionClusterFunctionProps } from './props.ts';

/**
 * The environment variables the construct sets on the function, for the handler to read and pass
 * to `createLambdaHandler` (the library itself reads no environment).
 */
export const SESSION_FUNCTION_ENV = {
  /** The cluster name. */
  cluster: 'SESSREP_CLUSTER',
  /** `delta` or `backup`. */
  manager: 'SESSREP_MANAGER',
  /** `persist`, `ack` or `async`. */
  sendMode: 'SESSREP_SEND',
  /** Session timeout in seconds. */
  maxInactive: 'SESSREP_MAX_INACTIVE',
  /** `debug`, `info`, `warn` or `error`. */
  logLevel: 'LOG_LEVEL',
  /** Comma-separated NATS server URLs, when given. */
  natsUrl: 'NATS_URL',
  /** The Secrets Manager secret with the NATS settings, when given. */
  natsSecret: 'SESSREP_NATS_SECRET',
  /** The SSM parameter with the NATS settings, when given. */
  natsParameter: 'SESSREP_NATS_PARAMETER',
  /** The snapshot table's name, when there is one. */
  table: 'SESSREP_DYNAMODB_TABLE',
} as const;

/** The log lines each metric counts (the JSON lines `lambdaLogger` writes). */
export const METRIC_FILTERS: Readonly<
  Record<'ReplicationErrors' | 'SnapshotErrors' | 'CatchUpFailures', logs.IFilterPattern>
> = {
  /** Every error the library logs is a replication or broker error; "request failed" is an app's own 500. */
  ReplicationErrors: logs.FilterPattern.all(
    logs.FilterPattern.stringValue('$.level', '=', 'error'),
    logs.FilterPattern.stringValue('$.msg', '!=', 'request failed'),
  ),
  /** Write-behind to DynamoDB failed (retried with backoff), or a cold start could not load the snapshot. */
  SnapshotErrors: logs.FilterPattern.any(
    logs.FilterPattern.stringValue('$.msg', '=', 'snapshot write failed*'),
    logs.FilterPattern.stringValue('$.msg', '=', 'snapshot store unreachable*'),
  ),
  /** A thawed instance could not catch up with the JetStream log in time (503 or a stale read). */
  CatchUpFailures: logs.FilterPattern.stringValue('$.msg', '=', 'log catch-up timed out*'),
};

const RUNTIMES = {
  'nodejs20.x': lambda.Runtime.NODEJS_20_X,
  'nodejs22.x': lambda.Runtime.NODEJS_22_X,
  'nodejs24.x': lambda.Runtime.NODEJS_24_X,
} as const;

/**
 * A session-replication Lambda function with its snapshot table, role, logs and alarms. Every
 * instance of the function is a member of `cluster`.
 */
export class SessionClusterFunction extends Construct {
  /** The snapshot table (delta manager only). */
  readonly table?: dynamodb.Table;
  readonly function: NodejsFunction;
  readonly role: iam.Role;
  readonly functionUrl?: lambda.FunctionUrl;
  readonly logGroup: logs.LogGroup;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: SessionClusterFunctionProps) {
    super(scope, id);
    const manager = props.manager ?? 'delta';
    const sendMode = props.sendMode ?? (manager === 'delta' ? 'persist' : 'async');
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(props.cluster))
      throw new Error(`cluster must be 1-64 characters of A-Z a-z 0-9 _ - (got "${props.cluster}")`);
    if (manager === 'backup' && sendMode === 'persist')
      throw new Error('sendMode persist needs the delta manager (the JetStream log)');
    if (props.nats.secret && props.nats.parameter) throw new Error('give nats.secret or nats.parameter, not both');
    if (!props.nats.url && !props.nats.secret && !props.nats.parameter)
      throw new Error('give nats.url, nats.secret or nats.parameter');

    if (manager === 'delta') {
      this.table = new dynamodb.Table(this, 'Table', {
        partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        timeToLiveAttribute: 'ttl',
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        removalPolicy: props.retainTable === false ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      });
    }

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.role = this.#leastPrivilegeRole(props);

    const env = SESSION_FUNCTION_ENV;
    const environment: Record<string, string> = {
      [env.cluster]: props.cluster,
      [env.manager]: manager,
      [env.sendMode]: sendMode,
      [env.maxInactive]: String(props.maxInactive ?? 1800),
      [env.logLevel]: props.logLevel ?? 'warn',
      // The SDK's notice about its Node 22 requirement would be one log line per cold start.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...(props.nats.url ? { [env.natsUrl]: props.nats.url } : {}),
      ...(props.nats.secret ? { [env.natsSecret]: props.nats.secret } : {}),
      ...(props.nats.parameter ? { [env.natsParameter]: props.nats.parameter } : {}),
      ...(this.table ? { [env.table]: this.table.tableName } : {}),
      ...props.environment,
    };

    this.function = new NodejsFunction(this, 'Function', {
      description: props.description ?? `session-replication cluster ${props.cluster}`,
      entry: props.entry,
      handler: props.handler ?? 'handler',
      ...(props.projectRoot !== undefined ? { projectRoot: props.projectRoot } : {}),
      ...(props.depsLockFilePath !== undefined ? { depsLockFilePath: props.depsLockFilePath } : {}),
      runtime: RUNTIMES[props.runtime ?? 'nodejs22.x'],
      architecture: props.architecture === 'x86_64' ? lambda.Architecture.X86_64 : lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(15),
      role: this.role,
      logGroup: this.logGroup,
      environment,
      ...(props.reservedConcurrency !== undefined ? { reservedConcurrentExecutions: props.reservedConcurrency } : {}),
      ...(props.gracefulShutdown ? { insightsVersion: lambda.LambdaInsightsVersion.VERSION_1_0_498_0 } : {}),
      ...(props.vpc ? { vpc: props.vpc } : {}),
      bundling: props.bundling ?? {
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
        // minified file loads faster than the runtime's SDK from node_modules.
        externalModules: [],
        bundleAwsSDK: true,
        // CommonJS dependencies inside an ESM bundle still call require().
        banner:
          "import { createRequire as __sessrepCreateRequire } from 'node:module'; const require = __sessrepCreateRequire(import.meta.url);",
      },
    });

    if (props.functionUrl) {
      this.functionUrl = this.function.addFunctionUrl({
        authType:
          props.functionUrl.authType === 'AWS_IAM'
            ? lambda.FunctionUrlAuthType.AWS_IAM
            : lambda.FunctionUrlAuthType.NONE,
        invokeMode: lambda.InvokeMode.BUFFERED,
      });
    }
    this.#alarms(props.metricNamespace ?? `SessionReplication/${props.cluster}`, props.alarmTopic);
  }

  /** No managed policy: the role may write its own log group, use its own table's partitions and read its own NATS settings, nothing else. */
  #leastPrivilegeRole(props: SessionClusterFunctionProps): iam.Role {
    const stack = Stack.of(this);
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `session-replication ${props.cluster}: logs, its snapshot table, its NATS settings`,
    });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'Logs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );
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
          conditions: {
            ...ownPartitions,
            'ForAnyValue:StringEquals': { 'dynamodb:EnclosingOperation': ['TransactWriteItems'] },
          },
        }),
      );
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'SnapshotTable',
          actions: ['dynamodb:DescribeTable'],
          resources: [this.table.tableArn],
        }),
      );
    }
    const { secret, parameter, kmsKeyArn } = props.nats;
    if (secret) {
      // A secret given by name matches its ARN with the `-` and 6 characters Secrets Manager appends.
      const arn = secret.startsWith('arn:')
        ? secret
        : stack.formatArn({
            service: 'secretsmanager',
            resource: 'secret',
            resourceName: `${secret}-??????`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          });
      role.addToPolicy(
        new iam.PolicyStatement({ sid: 'NatsSettings', actions: ['secretsmanager:GetSecretValue'], resources: [arn] }),
      );
    }
    if (parameter) {
      const resourceName = parameter.replace(/^\//, '');
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'NatsSettings',
          actions: ['ssm:GetParameter'],
          resources: [
            stack.formatArn({
              service: 'ssm',
              resource: 'parameter',
              resourceName,
              arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
            }),
          ],
        }),
      );
    }
    if (kmsKeyArn && (secret || parameter)) {
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'NatsSettingsKey',
          actions: ['kms:Decrypt'],
          resources: [kmsKeyArn],
          conditions: {
            StringEquals: { 'kms:ViaService': `${secret ? 'secretsmanager' : 'ssm'}.${stack.region}.amazonaws.com` },
          },
        }),
      );
    }
    return role;
  }

  /** Metrics from the function's JSON log lines, and alarms on them and on Lambda errors. */
  #alarms(namespace: string, topic: sns.ITopic | undefined): void {
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
        alarmDescription: `${description} (${namespace})`,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      if (topic) created.addAlarmAction(new cloudwatchActions.SnsAction(topic));
      this.alarms.push(created);
    };
    alarm(
      'ReplicationErrorsAlarm',
      metrics.ReplicationErrors,
      1,
      'Replication or broker errors logged by the session cluster',
    );
    alarm('SnapshotErrorsAlarm', metrics.SnapshotErrors, 3, 'DynamoDB snapshot writes or loads failing');
    alarm(
      'CatchUpFailuresAlarm',
      metrics.CatchUpFailures,
      5,
      'Thawed instances could not catch up with the JetStream log in time',
    );
    alarm(
      'FunctionErrorsAlarm',
      this.function.metricErrors({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) }),
      1,
      'Lambda invocation errors',
    );
  }
}
