// Owns: assertions on the CloudFormation that SessionClusterFunction (session-replication/cdk) synthesizes for a user's handler.
import { fileURLToPath } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { describe, expect, it } from 'vitest';
import {
  SESSION_FUNCTION_ENV,
  SessionClusterFunction,
  type SessionClusterFunctionProps,
} from '../../../adapters/cdk/index.ts';
import { ACCOUNT, expectSnapshotTable, grantedStatements, policyStatements, REGION } from '../../kit/cdk.ts';
import { REPO_ROOT } from '../../kit/index.ts';

const ENTRY = fileURLToPath(new URL('./fixtures/shop-handler.ts', import.meta.url));

/** The user's stack with the construct, bundling off (fast, no esbuild). */
function synth(props: Partial<SessionClusterFunctionProps> = {}): {
  construct: SessionClusterFunction;
  template: Template;
} {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'Shop', { env: { account: ACCOUNT, region: REGION } });
  const construct = new SessionClusterFunction(stack, 'Cart', {
    entry: ENTRY,
    projectRoot: REPO_ROOT,
    cluster: 'shop',
    nats: { secret: 'shop/nats' },
    ...props,
  });
  return { construct, template: Template.fromStack(stack) };
}

describe('SessionClusterFunction', () => {
  const { construct, template } = synth();

  it('creates the snapshot table with TTL on `ttl`, on-demand, point-in-time recovery, retained', () => {
    expectSnapshotTable(template);
  });

  it("runs the user's entry with the settings its handler reads in the environment", () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'index.handler',
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Environment: {
        Variables: {
          [SESSION_FUNCTION_ENV.cluster]: 'shop',
          [SESSION_FUNCTION_ENV.manager]: 'delta',
          [SESSION_FUNCTION_ENV.sendMode]: 'persist',
          [SESSION_FUNCTION_ENV.maxInactive]: '1800',
          [SESSION_FUNCTION_ENV.logLevel]: 'warn',
          [SESSION_FUNCTION_ENV.natsSecret]: 'shop/nats',
          [SESSION_FUNCTION_ENV.table]: { Ref: Match.stringLikeRegexp('^CartTable') },
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        },
      },
    });
    expect(construct.function.runtime.name).toBe('nodejs22.x');
  });

  it("gives the role no managed policy and only its logs, its cluster's table partitions and its secret", () => {
    template.hasResourceProperties('AWS::IAM::Role', { ManagedPolicyArns: Match.absent() });
    expect(policyStatements(template)).toEqual(grantedStatements({ id: 'Cart', cluster: 'shop', secret: 'shop/nats' }));
    expect(JSON.stringify(template.toJSON())).not.toMatch(
      /"Action":\s*"\*"|"dynamodb:\*"|"Resource":\s*"\*"|dynamodb:Scan|dynamodb:DeleteTable/,
    );
  });

  it('has no public entry by default: no Function URL and no permission for anyone to invoke', () => {
    template.resourceCountIs('AWS::Lambda::Url', 0);
    template.resourceCountIs('AWS::Lambda::Permission', 0);
    expect(construct.functionUrl).toBeUndefined();
  });

  it('counts replication, snapshot and catch-up errors from the logs and alarms on them and on Lambda errors', () => {
    template.resourceCountIs('AWS::Logs::MetricFilter', 3);
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      MetricTransformations: [
        Match.objectLike({ MetricNamespace: 'SessionReplication/shop', MetricName: 'CatchUpFailures' }),
      ],
    });
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    expect(construct.alarms).toHaveLength(4);
  });

  it('adds a Function URL only when asked, with IAM auth when asked, and notifies an alarm topic', () => {
    const { template: withUrl } = synth({ functionUrl: { authType: 'AWS_IAM' } });
    withUrl.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'AWS_IAM', InvokeMode: 'BUFFERED' });
    expect(JSON.stringify(withUrl.findResources('AWS::Lambda::Permission'))).not.toContain('"Principal":"*"');
    const { template: alarmed } = synth({
      alarmTopic: sns.Topic.fromTopicArn(new Stack(), 'T', `arn:aws:sns:${REGION}:${ACCOUNT}:alarms`),
    });
    alarmed.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmActions: [`arn:aws:sns:${REGION}:${ACCOUNT}:alarms`],
    });
  });

  it('with the backup manager: no table and no DynamoDB permission; SSM settings with a customer key read through SSM only', () => {
    const { template: backup } = synth({
      manager: 'backup',
      nats: { parameter: '/shop/nats', kmsKeyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/1` },
    });
    backup.resourceCountIs('AWS::DynamoDB::Table', 0);
    const sids = policyStatements(backup).map((s) => s.Sid);
    expect(sids).toEqual(['Logs', 'NatsSettings', 'NatsSettingsKey']);
    expect(policyStatements(backup)[2]).toMatchObject({
      Action: 'kms:Decrypt',
      Condition: { StringEquals: { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` } },
    });
    backup.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SESSREP_SEND: 'async',
          SESSREP_NATS_PARAMETER: '/shop/nats',
          SESSREP_DYNAMODB_TABLE: Match.absent(),
        }),
      },
    });
  });

  it('rejects settings that cannot work, naming them', () => {
    expect(() => synth({ nats: {} })).toThrow(/nats.url, nats.secret or nats.parameter/);
    expect(() => synth({ nats: { secret: 'a', parameter: 'b' } })).toThrow(/not both/);
    expect(() => synth({ cluster: 'shop floor' })).toThrow(/cluster must be/);
    expect(() => synth({ manager: 'backup', sendMode: 'persist' })).toThrow(/persist needs the delta manager/);
  });
});
