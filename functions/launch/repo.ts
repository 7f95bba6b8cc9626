/** Where the repository (or the installed package) is: the nearest folder above this file with a package.json. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return from;
  }
}

/** The repository root, found from this module's location (works from the sources and from a build in `dist/`). */
export const REPO_ROOT: string = packageRoot(dirname(fileURLToPath(import.meta.url)));
