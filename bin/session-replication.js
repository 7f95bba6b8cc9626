#!/usr/bin/env node
// The `session-replication` command: loads the TypeScript sources through tsx, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
// The project pins Node 20 and an AWS SDK release that supports it; the SDK's notice about its future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
await import('../functions/node/cli.ts');
