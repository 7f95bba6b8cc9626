/**
 * The CDK app: one `SessionReplication-<env>` stack per environment, configured by context:
 *   npx cdk deploy -c env=prod -c natsSecret=sessrep/prod/nats
 *   npx cdk synth  -c env=dev -c natsUrl=tls://connect.ngs.global   (offline: no AWS credentials needed)
 */
import { App } from 'aws-cdk-lib';
import { SessionStack, sessionStackPropsFromContext } from '../lib/session-stack.ts';

const app = new App();
const { id, props } = sessionStackPropsFromContext((key) => app.node.tryGetContext(key));
new SessionStack(app, id, props);
app.synth();
