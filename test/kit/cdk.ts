// Owns: assertions shared by the tests of SessionClusterFunction's CloudFormation (test/adapters/cdk) and of the
// repository's stack built on it (test/infra): the snapshot table, the role's one inline policy and the statements it grants.
import type { Template } from 'aws-cdk-lib/assertions';
import { expect } from 'vitest';

/** The account and region the tests' stacks are synthesized for. */
export const ACCOUNT = '111122223333';
export const REGION = 'eu-west-1';

/**
 * The one snapshot table: `pk`/`sk` string keys, TTL on `ttl`, on-demand, point-in-time recovery, and retained when
 * the stack is deleted or the table replaced.
 */
export function expectSnapshotTable(template: Template): void {
  template.resourceCountIs('AWS::DynamoDB::Table', 1);
  template.hasResource('AWS::DynamoDB::Table', {
    Properties: {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    },
    DeletionPolicy: 'Retain',
    UpdateReplacePolicy: 'Retain',
  });
}

/** The statements of the one inline policy in `template` (there must be exactly one `AWS::IAM::Policy`). */
export function policyStatements(template: Template): Array<Record<string, unknown>> {
  const policies = Object.values(template.findResources('AWS::IAM::Policy')) as Array<{
    Properties: { PolicyDocument: { Statement: Array<Record<string, unknown>> } };
  }>;
  expect(policies).toHaveLength(1);
  return policies[0]!.Properties.PolicyDocument.Statement;
}

/** Where the statements of `grantedStatements` point. */
export interface GrantTargets {
  /** The construct's id: its log group and snapshot table have logical ids `<id>Logs…` and `<id>Table…`. */
  readonly id: string;
  /** The cluster, whose partitions (`<cluster>#*`) are all the function may touch. */
  readonly cluster: string;
  /** The NATS settings secret by name, in `REGION` of `ACCOUNT`. */
  readonly secret: string;
}

/**
 * The statements SessionClusterFunction grants its role with a snapshot table and a NATS secret, in order: write
 * its logs; read, write and query its cluster's partitions of the table, delete them only inside transactions,
 * describe the table; read the secret (by name, any version suffix). Nothing else.
 */
export function grantedStatements(to: GrantTargets): Array<Record<string, unknown>> {
  const ownPartitions = { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${to.cluster}#*`] } };
  const table = { 'Fn::GetAtt': [expect.stringMatching(new RegExp(`^${to.id}Table`)), 'Arn'] };
  return [
    {
      Sid: 'Logs',
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      Resource: { 'Fn::GetAtt': [expect.stringMatching(new RegExp(`^${to.id}Logs`)), 'Arn'] },
    },
    {
      Sid: 'SnapshotItems',
      Effect: 'Allow',
      Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query'],
      Resource: table,
      Condition: ownPartitions,
    },
    {
      Sid: 'SnapshotDeletesInTransactions',
      Effect: 'Allow',
      Action: 'dynamodb:DeleteItem',
      Resource: table,
      Condition: {
        ...ownPartitions,
        'ForAnyValue:StringEquals': { 'dynamodb:EnclosingOperation': ['TransactWriteItems'] },
      },
    },
    { Sid: 'SnapshotTable', Effect: 'Allow', Action: 'dynamodb:DescribeTable', Resource: table },
    {
      Sid: 'NatsSettings',
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: {
        'Fn::Join': [
          '',
          ['arn:', { Ref: 'AWS::Partition' }, `:secretsmanager:${REGION}:${ACCOUNT}:secret:${to.secret}-??????`],
        ],
      },
    },
  ];
}
