// Owns: cluster timing presets for tests (failure detection and sweeps in well under a second).
import type { ClusterOptions } from '../../lib/index.ts';

/** For nodes on a real nats-server: failure detection in ~0.6 s, sweeps every 100 ms. */
export const FAST = {
  heartbeatIntervalMs: 100,
  memberDropMs: 600,
  pingTimeoutMs: 300,
  sweepIntervalMs: 100,
} as const satisfies Partial<ClusterOptions>;

/** For nodes on the in-process channel (no network hop): twice as fast as {@link FAST}, with short transfer and ack timeouts. */
export const FASTER = {
  heartbeatIntervalMs: 50,
  memberDropMs: 300,
  pingTimeoutMs: 100,
  sweepIntervalMs: 50,
  stateTransferTimeoutMs: 3000,
  ackTimeoutMs: 2000,
} as const satisfies Partial<ClusterOptions>;
