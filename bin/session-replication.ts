#!/usr/bin/env node
// The `session-replication` command. Built to dist/cli.mjs (`npm run build`, run with plain node: the published `bin`);
// bin/session-replication.js runs this same file from the TypeScript sources through tsx (npm start, the tests).
// The project pins Node 20 and an AWS SDK release that supports it; the SDK's notice about its future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
await import('../functions/node/cli.ts');
