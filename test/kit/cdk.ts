// Owns: assertions shared by the tests of SessionClusterFunction's CloudFormation (test/adapters/cdk) and of the
// repository's stack built on it (test/infra): the role's one inline policy and the least-privilege statements it grants.
import type { Template } from 'aws-cdk-lib/assertions';
import { expect } from 'vitest';

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
  /** The logical id prefix of the function's log group (`CartLogs`). */
  readonly logs: string;
  /** The logical id prefix of the snapshot table (`CartTable`). */
  readonly table: string;
  /** The cluster, whose partitions (`<cluster>#*`) are all the function may touch. */
  readonly cluster: string;
  /** The NATS settings secret by name, in `region` of `account`. */
  readonly secret: string;
  readonly region: string;
  readonly account: string;
}

/**
 * The statements SessionClusterFunction grants its role with a snapshot table and a NATS secret, in order: write
 * its logs; read, write and query its cluster's partitions of the table, delete them only inside transactions,
 * describe the table; read the secret (by name, any version suffix). Nothing else.
 */
export function grantedStatements(to: GrantTargets): Array<Record<string, unknown>> {
  const ownPartitions = { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${to.cluster}#*`] } };
  const table = { 'Fn::GetAtt': [expect.stringMatching(new RegExp(`^${to.table}`)), 'Arn'] };
  return [
    {
      Sid: 'Logs',
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      Resource: { 'Fn::GetAtt': [expect.stringMatching(new RegExp(`^${to.logs}`)), 'Arn'] },
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
          ['arn:', { Ref: 'AWS::Partition' }, `:secretsmanager:${to.region}:${to.account}:secret:${to.secret}-??????`],
        ],
      },
    },
  ];
}
