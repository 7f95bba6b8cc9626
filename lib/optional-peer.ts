/** Loading code that needs an optional peer dependency, with a clear error when the peer is not installed. */
import { MissingPeerDependencyError } from './errors.ts';

/**
 * Runs `load` (a dynamic `import()`); when it fails because one of `packages` cannot be found, throws a
 * {@link MissingPeerDependencyError} naming that package instead of the runtime's module-resolution error.
 * The built entry points that need NATS or the AWS SDK load through it; so can programs that load such an entry lazily.
 *
 * @param neededBy What needs the packages, as the error will say (such as `session-replication/nats`).
 * @param packages The optional peer packages `load` imports (directly or through its imports).
 * @param load Imports the module, such as `() => import('session-replication/nats')`.
 */
export async function loadOptionalPeer<T>(
  neededBy: string,
  packages: readonly string[],
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const missing = missingPackage(error, packages);
    if (missing === undefined) throw error;
    throw new MissingPeerDependencyError(missing, neededBy, { cause: error });
  }
}

/** The package of `packages` that a module-resolution error says is missing (Node, Deno and Bun quote the name). */
function missingPackage(error: unknown, packages: readonly string[]): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (!/cannot find|not found|could not (find|resolve)|failed to resolve/i.test(message)) return undefined;
  return packages.find((name) =>
    new RegExp(`["'\`]${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(/[^"'\`]*)?["'\`]`).test(message),
  );
}
