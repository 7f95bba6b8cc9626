/** The settings of `SessionClusterFunction`. */
import type { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { BundlingOptions } from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as sns from 'aws-cdk-lib/aws-sns';

/** Where the function finds NATS (servers and credentials live outside the template). */
export interface SessionFunctionNats {
  /** NATS server URLs, comma-separated; optional when the secret or parameter carries `servers`. */
  readonly url?: string;
  /** A Secrets Manager secret name or full ARN with the NATS settings; the role may read it and nothing else. */
  readonly secret?: string;
  /** An SSM SecureString parameter name with the NATS settings. */
  readonly parameter?: string;
  /** The customer-managed KMS key of the secret or parameter (AWS-managed keys need nothing). */
  readonly kmsKeyArn?: string;
}

/** Settings of `SessionClusterFunction`. */
export interface SessionClusterFunctionProps {
  /** The handler's source file (TypeScript or JavaScript), bundled with esbuild. */
  readonly entry: string;
  /**
   * The exported handler's name.
   * @default 'handler'
   */
  readonly handler?: string;
  /** The cluster every instance of the function joins (1-64 characters of A-Z a-z 0-9 _ -). */
  readonly cluster: string;
  /** Where NATS is. */
  readonly nats: SessionFunctionNats;
  /**
   * `delta` (every instance holds every session; uses the table and the JetStream log) or `backup`.
   * @default 'delta'
   */
  readonly manager?: 'delta' | 'backup';
  /**
   * When a session write is answered.
   * @default 'persist' with the delta manager, 'async' with the backup manager
   */
  readonly sendMode?: 'async' | 'ack' | 'persist';
  /**
   * Session timeout in seconds.
   * @default 1800
   */
  readonly maxInactive?: number;
  /**
   * Keep the snapshot table when the stack is deleted.
   * @default true
   */
  readonly retainTable?: boolean;
  /**
   * The function's log level.
   * @default 'warn'
   */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /**
   * Memory in MB.
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * `arm64` (20 % cheaper per GB-second) or `x86_64`.
   * @default 'arm64'
   */
  readonly architecture?: 'arm64' | 'x86_64';
  /**
   * The Node.js runtime.
   * @default 'nodejs22.x'
   */
  readonly runtime?: 'nodejs20.x' | 'nodejs22.x' | 'nodejs24.x';
  /**
   * Invocation timeout: a cold start (connect, snapshot load, log replay) plus a catch-up plus the request.
   * @default Duration.seconds(15)
   */
  readonly timeout?: Duration;
  /** Caps the instances, i.e. the cluster size (every instance is a member). */
  readonly reservedConcurrency?: number;
  /**
   * A Function URL in front of the function; omit for none (an API Gateway or ALB of your own).
   * The URL passes every path to the app: keep operator routes (drain, session admin) out of an
   * app served on a URL with `NONE` auth.
   */
  readonly functionUrl?: { readonly authType?: 'NONE' | 'AWS_IAM' };
  /** The SNS topic the alarms notify. */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Add the Lambda Insights extension, so Lambda sends SIGTERM before recycling an instance and it
   * leaves the cluster at once (otherwise the others drop it after missing heartbeats).
   * @default false
   */
  readonly gracefulShutdown?: boolean;
  /** A VPC to run in (private NATS servers). */
  readonly vpc?: ec2.IVpc;
  /**
   * Namespace of the metrics the log metric filters publish.
   * @default `SessionReplication/<cluster>`
   */
  readonly metricNamespace?: string;
  /** More environment variables for the handler. */
  readonly environment?: Readonly<Record<string, string>>;
  /** The function's description. */
  readonly description?: string;
  /** The directory esbuild bundles from (where `node_modules` is); default: NodejsFunction's own lookup. */
  readonly projectRoot?: string;
  /** The lockfile; default: NodejsFunction's own lookup. */
  readonly depsLockFilePath?: string;
  /** esbuild settings replacing the defaults (one minified ESM file with the AWS SDK inside). */
  readonly bundling?: BundlingOptions;
}
