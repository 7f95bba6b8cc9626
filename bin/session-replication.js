#!/usr/bin/env node
// The `session-replication` command: loads the TypeScript sources through tsx, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
await import('../functions/node/cli.ts');
