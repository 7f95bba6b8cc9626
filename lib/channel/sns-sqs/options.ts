/**
 * The options of `SnsSqsChannel.connect`, validated with zod (as `createCluster` does): bad ones throw
 * `InvalidOptionsError` naming each problem; defaults live in the schema.
 */
import type { SNSClient } from '@aws-sdk/client-sns';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { InvalidOptionsError } from '../../errors.ts';

/** The default largest payload (NATS's default max_payload): 1 MiB, at most 6 fragments. */
export const SNS_SQS_MAX_PAYLOAD = 1024 * 1024;

const token = (what: string) =>
  z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, `${what} must be 1-64 characters of A-Z a-z 0-9 _ -`);
const client = <T>(what: string) =>
  z.custom<T>(
    (value) => typeof value === 'object' && value !== null && typeof (value as { send?: unknown }).send === 'function',
    `${what} must be an AWS SDK v3 client`,
  );

/** The options schema: what `connect` validates and its defaults. */
const optionsSchema = z.object({
  sns: client<SNSClient>('sns'),
  sqs: client<SQSClient>('sqs'),
  cluster: token('cluster'),
  node: token('node'),
  namePrefix: token('namePrefix').default('sessrep'),
  topicArn: z.string().min(1).optional(),
  subjectPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'subjectPrefix must be dot-separated tokens of A-Z a-z 0-9 _ -')
    .default('sessrep'),
  pointToPoint: z
    .custom<(subject: string) => string | undefined>(
      (value) => typeof value === 'function',
      'pointToPoint must be a function',
    )
    .optional(),
  waitTimeSeconds: z.number().int().min(1).max(20, 'waitTimeSeconds must be an integer from 1 to 20').default(20),
  noRespondersMs: z.number().positive('noRespondersMs must be positive').default(2000),
  reclaimStaleQueues: z.boolean().default(true),
  maxPayload: z
    .number()
    .int()
    .min(1)
    .max(16 * 1024 * 1024, 'maxPayload must be an integer from 1 to 16 MiB')
    .default(SNS_SQS_MAX_PAYLOAD),
});

/** Options of `SnsSqsChannel.connect`. */
export interface SnsSqsChannelOptions {
  /** SNS client made by the caller (region, credentials, endpoint). */
  readonly sns: SNSClient;
  /** SQS client made by the caller; same account and region as the topic. */
  readonly sqs: SQSClient;
  /** The cluster: one SNS topic per cluster. A-Z a-z 0-9 _ -, at most 64. */
  readonly cluster: string;
  /** This node's id; must equal `createCluster`'s `node`. A-Z a-z 0-9 _ -, at most 64. */
  readonly node: string;
  /**
   * Prefix of the topic and queue names.
   * @default 'sessrep'
   */
  readonly namePrefix?: string;
  /** Use this existing topic instead of creating (or finding) `<namePrefix>-<cluster>`. */
  readonly topicArn?: string;
  /**
   * `createCluster`'s `subjectPrefix`: its node subjects are point-to-point.
   * @default 'sessrep'
   */
  readonly subjectPrefix?: string;
  /** Which node a subject is addressed to (point-to-point), or undefined for a broadcast. Replaces the default rule (`clusterPointToPoint`). */
  readonly pointToPoint?: (subject: string) => string | undefined;
  /**
   * Long-poll wait in seconds, 1-20. Shorter only costs more empty receives.
   * @default 20
   */
  readonly waitTimeSeconds?: number;
  /**
   * A request that hears no reply and no delivery receipt this long (ms) after SNS accepted it rejects with `no-responders`.
   * @default 2000
   */
  readonly noRespondersMs?: number;
  /**
   * Delete the queues left behind by earlier runs of this node id (crashed before `close`) while connecting.
   * @default true
   */
  readonly reclaimStaleQueues?: boolean;
  /**
   * The largest payload in bytes (up to 16 MiB); above `SNS_SQS_FRAGMENT_BYTES` a message travels in several SNS messages.
   * @default 1048576 (1 MiB)
   */
  readonly maxPayload?: number;
}

/** Validated options with their defaults filled in. */
export type ResolvedSnsSqsOptions = z.output<typeof optionsSchema>;

/** Validates `options` and fills in defaults; throws `InvalidOptionsError` naming every bad option. */
export function resolveOptions(options: SnsSqsChannelOptions): ResolvedSnsSqsOptions {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new InvalidOptionsError(`SnsSqsChannel: ${z.prettifyError(parsed.error).replaceAll('\n', '; ')}`);
  return parsed.data;
}
