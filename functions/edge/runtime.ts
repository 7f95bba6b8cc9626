/** The environment of an edge entry, found through `globalThis` so the code stays runtime-neutral. */

/**
 * The environment as strings: Deno's (needs --allow-env) or `process.env` (Bun, Node); an isolate
 * without either gets an empty one.
 */
export function runtimeEnv(): Record<string, string | undefined> {
  const scope = globalThis as {
    Deno?: { env: { toObject(): Record<string, string> } };
    process?: { env: Record<string, string | undefined> };
  };
  return scope.Deno?.env.toObject() ?? { ...scope.process?.env };
}
