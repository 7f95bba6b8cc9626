/**
 * `wireNode`: builds one node's parts from resolved options (channel, bus, membership, session
 * events, principal index, schema drift check, manager, drain controller), so `createCluster` and
 * tests share one wiring.
 */
import { ClusterBus } from '../bus/cluster-bus.ts';
import type { Channel } from '../channel/channel.ts';
import { MemoryChannel } from '../channel/memory.ts';
import { DrainController } from '../drain.ts';
import type { Logger } from '../logger.ts';
import { BackupManager } from '../managers/backup/backup-manager.ts';
import { DeltaManager, type DeltaManagerOptions } from '../managers/delta/delta-manager.ts';
import type { SessionManager } from '../managers/manager.ts';
import { Membership } from '../membership/membership.ts';
import { HybridClock } from '../session/clock.ts';
import { observeAll, SessionEvents } from '../session/events.ts';
import { PrincipalIndex } from '../session/principal-index.ts';
import { SchemaDriftCheck } from '../session/schema.ts';
import { ReplicationStats } from '../stats.ts';
import type { ResolvedOptions } from './options.ts';
import { type ChannelWatch, watchChannel } from './status.ts';

/** Clock skew is logged at most this often (every occurrence is counted in the stats). */
const SKEW_LOG_INTERVAL_MS = 60_000;

/** One node's parts, wired but not started. */
export interface NodeParts {
  readonly options: ResolvedOptions;
  readonly channel: Channel;
  /** True when the node created its channel (the in-process default): stopping the node closes it. */
  readonly ownsChannel: boolean;
  /** The node's logger, bound to `cluster` and `node`. */
  readonly logger: Logger;
  readonly stats: ReplicationStats;
  readonly clock: HybridClock;
  readonly bus: ClusterBus;
  readonly membership: Membership;
  readonly manager: SessionManager;
  /** The session event listeners (`node.on(...)`), fed by the session table. */
  readonly events: SessionEvents;
  /** This node's sessions by principal, fed by the session table. */
  readonly principals: PrincipalIndex;
  readonly drainer: DrainController;
  /** The channel's connection state (for `/cluster`). */
  readonly channelWatch: ChannelWatch;
}

/** Wires a node's parts; nothing is subscribed or sent until the node starts. */
export function wireNode(options: ResolvedOptions): NodeParts {
  const { cluster, node } = options;
  const ownsChannel = options.channel === undefined;
  const channel = options.channel ?? new MemoryChannel();
  const logger = options.logger.child({ cluster, node });
  const stats = new ReplicationStats();
  let skewLoggedAt = Number.NEGATIVE_INFINITY;
  const clock = new HybridClock(node, Date.now, (skew) => {
    if (skew.kind === 'write') stats.clockSkewWrites++;
    else stats.clockSkewObserved++;
    const now = Date.now();
    if (now - skewLoggedAt < SKEW_LOG_INTERVAL_MS) return;
    skewLoggedAt = now;
    logger.warn(
      { ...skew, writes: stats.clockSkewWrites, observed: stats.clockSkewObserved },
      "clock skew: another node's clock is more than a minute ahead of this one (writes still order; sync the clocks)",
    );
  });
  const bus = new ClusterBus(
    channel,
    { cluster, node, incarnation: crypto.randomUUID() },
    options.subjectPrefix,
    stats,
    logger,
  );
  const membership = new Membership(
    bus,
    {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      memberDropMs: options.memberDropMs,
      pingTimeoutMs: options.pingTimeoutMs,
      probeIntervalMs: options.probeIntervalMs,
      reconnectGraceMs: options.reconnectGraceMs,
      ...(options.advertiseUrl !== undefined ? { advertiseUrl: options.advertiseUrl } : {}),
    },
    logger,
  );
  const events = new SessionEvents(node, logger, () => stats.listenerErrors++);
  const principals = new PrincipalIndex(options.principalAttribute);
  const observers = [events.observer(), principals.observer()];
  if (options.schema) {
    const drift = new SchemaDriftCheck(options.schema, node, (name, author, issues) => {
      stats.schemaDrift++;
      logger.warn(
        { attribute: name, from: author, issues: issues.slice(0, 3) },
        "schema drift: a replicated value does not match this node's schema (applied anyway)",
      );
    });
    observers.push(drift.observer());
  }
  const managerParts = { bus, membership, clock, stats, logger, observer: observeAll(observers) };
  const managerOptions: DeltaManagerOptions = {
    ackTimeoutMs: options.ackTimeoutMs,
    stateTransferTimeoutMs: options.stateTransferTimeoutMs,
    sweepIntervalMs: options.sweepIntervalMs,
    touchIntervalMs: options.touchIntervalMs,
    tombstoneTtlMs: options.tombstoneTtlMs,
    fetchTimeoutMs: options.fetchTimeoutMs,
    // Without a log, a node that may have missed deltas merges its peers' state after this long.
    resyncAfterMs: options.memberDropMs,
    pageLimits: options.pageLimits,
    snapshot: options.snapshot,
    ...(options.log ? { log: options.log } : {}),
    ...(options.store ? { store: options.store } : {}),
  };
  const manager: SessionManager =
    options.manager === 'backup'
      ? new BackupManager(managerParts, managerOptions)
      : new DeltaManager(managerParts, managerOptions);
  const drainer = new DrainController(manager, membership, logger, options.drainQuietMs);
  const channelWatch = watchChannel(channel, stats, logger);
  return {
    options,
    channel,
    ownsChannel,
    logger,
    stats,
    clock,
    bus,
    membership,
    manager,
    events,
    principals,
    drainer,
    channelWatch,
  };
}
