/** Public entry point: Web-standard only, runs on every Hono runtime. NATS lives in `session-replication/nats`. */
export { createCluster, type ClusterOptions, type ClusterStatus, type MemberStatus, type ReplicatedSessions, type SessionList, type SessionSummary } from './cluster.ts';
export type { DrainStatus } from './drain.ts';
export type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from './channel/channel.ts';
export { MemoryBus, MemoryChannel, defaultMemoryBus } from './channel/memory.ts';
export * from './errors.ts';
export { loadOptionalPeer } from './optional-peer.ts';
export { consoleLogger, type Logger, type LogLevel } from './logger.ts';
export type { SendMode, StateTransferStatus } from './managers/manager.ts';
export { DEFAULT_FILTER, type SessionMiddlewareOptions, type SessionVariables } from './middleware/session-middleware.ts';
export { formatSessionId, parseSessionId, type SessionId } from './session/ids.ts';
export { Session } from './session/session.ts';
export { ReplicationStats, type TrafficRates } from './stats.ts';
export { LagWindow, RateWindow, type LagSummary } from './stats-window.ts';
export { MemorySnapshotStore } from './store/memory.ts';
export type { LoadProgress, SnapshotItem, SnapshotRejection, SnapshotStore, SnapshotWriteResult } from './store/snapshot-store.ts';
export type { LogFollower, LogMessage, ReplicationLog } from './log/replication-log.ts';
