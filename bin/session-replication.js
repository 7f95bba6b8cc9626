#!/usr/bin/env node
// Development launcher of the `session-replication` command: runs bin/session-replication.ts from the TypeScript sources
// through tsx, so no build step is needed in this repository (npm start, the tests). Installed users run dist/cli.mjs.
import { register } from 'tsx/esm/api';

register();
await import('./session-replication.ts');
