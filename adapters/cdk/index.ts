/**
 * `session-replication/cdk`: an AWS CDK construct for a Lambda function built on
 * `session-replication/lambda` (needs `aws-cdk-lib` and `constructs`, and `esbuild` to bundle).
 */
export type { SessionClusterFunctionProps, SessionFunctionNats } from './props.ts';
export { METRIC_FILTERS, SESSION_FUNCTION_ENV, SessionClusterFunction } from './session-cluster-function.ts';
