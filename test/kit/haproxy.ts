// Owns: HAProxy in front of test node processes (the launcher's configuration, the one `cluster` uses).
import { haproxyBinary, startHaproxy, type HaproxyHandle } from '../../functions/launch/index.ts';
import type { NodeHandle } from './node-process.ts';

/** The haproxy binary, or undefined when it is not installed (the tests that need it are skipped). */
export const HAPROXY = haproxyBinary();

/** Starts HAProxy on a free loopback port in front of `nodes` (sticky on the cookie's route unless `sticky: false`), and waits until it routes. */
export function startHaproxyFor(
  nodes: readonly Pick<NodeHandle, 'node' | 'port'>[],
  { sticky = true }: { sticky?: boolean } = {},
): Promise<HaproxyHandle> {
  return startHaproxy({
    servers: nodes.map((n) => ({ node: n.node, host: '127.0.0.1', port: n.port })),
    ...(sticky ? {} : { sticky: false }),
  });
}
