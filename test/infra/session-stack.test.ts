// Owns: assertions on the synthesized CloudFormation of the Lambda deployment (infra/lib/session-stack.ts), and an offline `cdk synth`.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, inject, it } from 'vitest';
import { SessionClusterFunction } from '../../adapters/cdk/index.ts';
import { ACCOUNT, expectSnapshotTable, grantedStatements, policyStatements, REGION } from '../kit/cdk.ts';
import {
  defaultNatsSecretName,
  METRIC_FILTERS,
  REPO_ROOT,
  SessionStack,
  sessionStackPropsFromContext,
  type SessionStackProps,
} from '../../infra/lib/session-stack.ts';

/** Synthesizes one environment from context, as `cdk synth -c key=value` would, with bundling off (fast, no esbuild). */
function synth(context: Record<string, string>): { stack: SessionStack; template: Template } {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], ...context } });
  const { id, props } = sessionStackPropsFromContext((key) => app.node.tryGetContext(key), {});
  const stack = new SessionStack(app, id, props);
  return { stack, template: Template.fromStack(stack) };
}

const base = {
  env: 'prod',
  cluster: 'shop',
  natsUrl: 'tls://nats.example.com:4222',
  natsSecret: 'sessrep/prod/nats',
  account: ACCOUNT,
  region: REGION,
};

describe('SessionStack (delta manager, Secrets Manager)', () => {
  const { stack, template } = synth(base);

  it('is one stack per environment, with a concrete account and region', () => {
    expect(stack.stackName).toBe('SessionReplication-prod');
    expect(stack.account).toBe(ACCOUNT);
    expect(stack.region).toBe(REGION);
    // The repository's stack is the library's construct around the demo handler.
    expect(stack.sessions).toBeInstanceOf(SessionClusterFunction);
    expect(stack.node.findChild('Sessions')).toBe(stack.sessions);
  });

  it('creates the snapshot table: pk/sk strings, TTL on ttl, on-demand, point-in-time recovery, retained', () => {
    expectSnapshotTable(template);
  });

  it('runs the handler on Node.js 22 (arm64, 512 MB) with its configuration in the environment', () => {
    template.resourceCountIs('AWS::Lambda::Function', 1);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Handler: 'index.handler',
      Architectures: ['arm64'],
      MemorySize: 512,
      Timeout: 15,
      LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp('^SessionsLogs') } },
      Environment: {
        Variables: {
          SESSREP_CLUSTER: 'shop',
          SESSREP_MANAGER: 'delta',
          SESSREP_SEND: 'persist',
          SESSREP_MAX_INACTIVE: '1800',
          LOG_LEVEL: 'warn',
          NATS_URL: 'tls://nats.example.com:4222',
          SESSREP_NATS_SECRET: 'sessrep/prod/nats',
          SESSREP_DYNAMODB_TABLE: { Ref: Match.stringLikeRegexp('^SessionsTable') },
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        },
      },
    });
  });

  it('exposes the function through a public, buffered Function URL', () => {
    template.resourceCountIs('AWS::Lambda::Url', 1);
    template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'NONE',
      InvokeMode: 'BUFFERED',
      TargetFunctionArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SessionsFunction'), 'Arn'] },
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunctionUrl',
      Principal: '*',
      FunctionUrlAuthType: 'NONE',
    });
    template.hasOutput('FunctionUrl', {
      Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SessionsFunctionFunctionUrl'), 'FunctionUrl'] },
    });
  });

  it("gives the role no managed policy and exactly these statements: its logs, its table's partitions, its secret", () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } }],
      },
      ManagedPolicyArns: Match.absent(),
    });
    expect(policyStatements(template)).toEqual(
      grantedStatements({ id: 'Sessions', cluster: 'shop', secret: 'sessrep/prod/nats' }),
    );
    // Nothing anywhere grants a wildcard action or resource.
    const text = JSON.stringify(template.toJSON());
    expect(text).not.toMatch(/"Action":\s*"\*"|"dynamodb:\*"|"Resource":\s*"\*"/);
  });

  it('counts replication, snapshot and catch-up errors from the JSON logs and alarms on them and on Lambda errors', () => {
    template.resourceCountIs('AWS::Logs::LogGroup', 1);
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    template.resourceCountIs('AWS::Logs::MetricFilter', 3);
    for (const [name, pattern] of Object.entries(METRIC_FILTERS)) {
      template.hasResourceProperties('AWS::Logs::MetricFilter', {
        LogGroupName: { Ref: Match.stringLikeRegexp('^SessionsLogs') },
        FilterPattern: pattern.logPatternString,
        MetricTransformations: [
          { MetricNamespace: 'SessionReplication/prod', MetricName: name, MetricValue: '1', DefaultValue: 0 },
        ],
      });
    }
    expect(METRIC_FILTERS.ReplicationErrors.logPatternString).toBe(
      '{ ($.level = "error") && ($.msg != "request failed") }',
    );
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    for (const [metric, threshold] of [
      ['ReplicationErrors', 1],
      ['SnapshotErrors', 3],
      ['CatchUpFailures', 5],
    ] as const) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'SessionReplication/prod',
        MetricName: metric,
        Statistic: 'Sum',
        Period: 300,
        Threshold: threshold,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      });
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp('^SessionsFunction') } }],
      Threshold: 1,
    });
  });
});

describe('SessionStack variants', () => {
  it('reads the NATS settings from an SSM parameter instead, with a customer-managed key only through SSM', () => {
    const { template } = synth({
      ...base,
      natsSecret: '',
      natsParameter: '/sessrep/prod/nats',
      natsKmsKeyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234`,
    });
    const statements = policyStatements(template) as Array<{ Sid: string }>;
    expect(statements.map((s) => s.Sid)).toEqual([
      'Logs',
      'SnapshotItems',
      'SnapshotDeletesInTransactions',
      'SnapshotTable',
      'NatsSettings',
      'NatsSettingsKey',
    ]);
    expect(statements[4]).toEqual({
      Sid: 'NatsSettings',
      Effect: 'Allow',
      Action: 'ssm:GetParameter',
      Resource: {
        'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:ssm:${REGION}:${ACCOUNT}:parameter/sessrep/prod/nats`]],
      },
    });
    expect(statements[5]).toEqual({
      Sid: 'NatsSettingsKey',
      Effect: 'Allow',
      Action: 'kms:Decrypt',
      Resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234`,
      Condition: { StringEquals: { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` } },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SESSREP_NATS_PARAMETER: '/sessrep/prod/nats',
          SESSREP_NATS_SECRET: Match.absent(),
        }),
      },
    });
  });

  it('takes a secret by full ARN as it is', () => {
    const arn = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:nats-AbCdEf`;
    const { template } = synth({ ...base, natsSecret: arn });
    expect(
      (policyStatements(template) as Array<{ Sid: string; Resource: unknown }>).find((s) => s.Sid === 'NatsSettings')!
        .Resource,
    ).toBe(arn);
  });

  it("without any NATS setting reads the environment's conventional secret", () => {
    const { template } = synth({ env: 'staging', account: ACCOUNT, region: REGION });
    expect(defaultNatsSecretName('staging')).toBe('session-replication/staging/nats');
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SESSREP_CLUSTER: 'sessions-staging',
          SESSREP_NATS_SECRET: 'session-replication/staging/nats',
          NATS_URL: Match.absent(),
        }),
      },
    });
  });

  it('the backup manager has no table, no DynamoDB permission and sends async', () => {
    const { stack, template } = synth({ ...base, manager: 'backup' });
    expect(stack.sessions.table).toBeUndefined();
    template.resourceCountIs('AWS::DynamoDB::Table', 0);
    expect(JSON.stringify(policyStatements(template))).not.toContain('dynamodb:');
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SESSREP_MANAGER: 'backup',
          SESSREP_SEND: 'async',
          SESSREP_DYNAMODB_TABLE: Match.absent(),
        }),
      },
    });
    expect(() => synth({ ...base, manager: 'backup', sendMode: 'persist' })).toThrow(/persist needs the delta manager/);
  });

  it('honours memory, architecture, runtime, IAM-authenticated URL, reserved concurrency, alarm topic and graceful shutdown', () => {
    const topic = `arn:aws:sns:${REGION}:${ACCOUNT}:alarms`;
    const { template } = synth({
      ...base,
      memory: '1024',
      arch: 'x86_64',
      runtime: 'nodejs20.x',
      urlAuth: 'AWS_IAM',
      reservedConcurrency: '20',
      alarmTopicArn: topic,
      gracefulShutdown: 'true',
      retainTable: 'false',
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 1024,
      Architectures: ['x86_64'],
      Runtime: 'nodejs20.x',
      ReservedConcurrentExecutions: 20,
      Layers: [Match.anyValue()], // Lambda Insights: an external extension, so Lambda sends SIGTERM before recycling
    });
    template.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'AWS_IAM' });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [topic] });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
  });

  it("rejects bad context values with the key's name", () => {
    expect(() => synth({ ...base, sendMode: 'often' })).toThrow(/-c sendMode= must be one of async, ack, persist/);
    expect(() => synth({ ...base, memory: '64' })).toThrow(/-c memory= must be an integer from 128 to 10240/);
    expect(() => synth({ ...base, env: 'prod env' })).toThrow(/-c env=/);
    expect(() => synth({ ...base, natsParameter: '/p' })).toThrow(/not both/);
  });

  it("uses a placeholder account when the CLI found no credentials, and the CLI's account when it did", () => {
    const props = (env: Record<string, string>): SessionStackProps =>
      sessionStackPropsFromContext(() => undefined, env).props;
    expect(props({}).env).toEqual({ account: '123456789012', region: 'us-east-1' });
    expect(props({ CDK_DEFAULT_ACCOUNT: ACCOUNT, CDK_DEFAULT_REGION: REGION }).env).toEqual({
      account: ACCOUNT,
      region: REGION,
    });
  });
});

describe('cdk synth (the CLI, offline)', () => {
  it('runs with no AWS credentials, bundles with esbuild (no Docker) and writes the template and a working ESM bundle', async () => {
    const out = join(REPO_ROOT, '.cache', `cdk-synth-test-${process.pid}`);
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const home = join(out, 'home');
    mkdirSync(home);
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env))
      if (value !== undefined && !key.startsWith('AWS_') && !key.startsWith('CDK_')) env[key] = value;
    Object.assign(env, {
      HOME: home, // no ~/.aws
      AWS_CONFIG_FILE: join(home, 'none'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'none'),
      AWS_EC2_METADATA_DISABLED: 'true',
      CDK_DISABLE_CLI_TELEMETRY: 'true',
      NODE_NO_WARNINGS: '1',
      // No docker either: bundling must not need it.
      PATH: (process.env.PATH ?? '')
        .split(':')
        .filter((dir) => !existsSync(join(dir, 'docker')))
        .join(':'),
    });
    try {
      const started = Date.now();
      const run = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn(
          join(REPO_ROOT, 'node_modules/.bin/cdk'),
          [
            'synth',
            '--no-notices',
            '-q',
            '-o',
            join(out, 'cdk.out'),
            '-c',
            'env=ci',
            '-c',
            'natsUrl=nats://127.0.0.1:4222',
          ],
          { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        child.on('close', (code) => resolve({ code, output }));
      });
      expect(run.code, run.output).toBe(0);
      const seconds = (Date.now() - started) / 1000;
      const cdkOut = join(out, 'cdk.out');
      const template = JSON.parse(readFileSync(join(cdkOut, 'SessionReplication-ci.template.json'), 'utf8')) as {
        Resources: Record<
          string,
          { Type: string; Properties: Record<string, unknown>; Metadata?: Record<string, string> }
        >;
      };
      const fn = Object.values(template.Resources).find((r) => r.Type === 'AWS::Lambda::Function')!;
      expect(fn.Properties.Runtime).toBe('nodejs22.x');
      const assetDir = join(cdkOut, fn.Metadata!['aws:asset:path']!);
      const bundle = join(assetDir, 'index.mjs');
      expect(statSync(bundle).size).toBeGreaterThan(100_000);
      expect(readdirSync(assetDir)).toEqual(['index.mjs']);
      console.log(`cdk synth: ${seconds.toFixed(1)} s, bundle ${(statSync(bundle).size / 1024).toFixed(0)} KiB`);

      // The bundle is what Lambda runs: import it in a fresh Node process and invoke it once.
      const natsUrl = inject('natsUrl');
      const invoke = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const script = `
            const { handler } = await import(${JSON.stringify(bundle)});
            const event = { version: "2.0", routeKey: "$default", rawPath: "/counter", rawQueryString: "", headers: { host: "x.lambda-url.us-east-1.on.aws", "x-forwarded-proto": "https" },
              requestContext: { http: { method: "POST", path: "/counter", protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "t" }, domainName: "x.lambda-url.us-east-1.on.aws" }, body: null, isBase64Encoded: false };
            const result = await handler(event);
            // The public URL never drains: POST /cluster/drain is not routed, and the instance keeps serving.
            const drain = await handler({ ...event, rawPath: "/cluster/drain", requestContext: { ...event.requestContext, http: { ...event.requestContext.http, path: "/cluster/drain" } } });
            const health = await handler({ ...event, rawPath: "/healthz", requestContext: { ...event.requestContext, http: { ...event.requestContext.http, method: "GET", path: "/healthz" } } });
            console.log(JSON.stringify({ ...result, drainStatus: drain.statusCode, healthStatus: health.statusCode, health: JSON.parse(health.body) }));
            process.exit(0);`;
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
          cwd: REPO_ROOT,
          env: {
            ...env,
            NATS_URL: natsUrl,
            SESSREP_CLUSTER: `bundle-${process.pid}`,
            AWS_REGION: 'us-east-1',
            LOG_LEVEL: 'warn',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        child.on('close', (code) => resolve({ code, output }));
      });
      expect(invoke.code, invoke.output).toBe(0);
      const result = JSON.parse(invoke.output.trim().split('\n').pop()!) as {
        statusCode: number;
        body: string;
        cookies: string[];
        drainStatus: number;
        healthStatus: number;
        health: Record<string, unknown>;
      };
      expect(result.statusCode).toBe(200);
      expect(result.drainStatus).toBe(404);
      expect(result.healthStatus).toBe(200);
      expect(result.health).not.toHaveProperty('draining');
      expect(JSON.parse(result.body)).toMatchObject({ counter: 1, node: expect.stringMatching(/^lam-/) });
      expect(result.cookies[0]).toMatch(/^SESSIONID=/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});
