/** Public entry point: Web-standard only, runs on every Hono runtime. NATS lives in `session-replication/nats`. */
export {
  createCluster,
  type ChannelState,
  type ClusterNode,
  type ClusterOptions,
  type ClusterStatus,
  type MemberStatus,
  type MembershipView,
  type PrincipalSession,
  type SessionList,
} from './cluster/index.ts';
export type { DrainStatus } from './drain.ts';
export type { Channel, ChannelMessage, ChannelStatus, ChannelSubscription } from './channel/channel.ts';
export type { MessageHandler, SubscribeOptions } from './channel/channel.ts';
export { MemoryBus, MemoryChannel, defaultMemoryBus } from './channel/memory.ts';
export * from './errors.ts';
export { errorResponse, type ErrorBody } from './http/error-response.ts';
export { loadOptionalPeer } from './optional-peer.ts';
export { consoleLogger, type Logger, type LogLevel, type LogSink } from './logger.ts';
export type {
  CommitOptions,
  SendMode,
  SessionManager,
  SessionSummary,
  StateTransferStatus,
} from './managers/manager.ts';
export type { MemberInfo } from './membership/membership.ts';
export {
  DEFAULT_COOKIE_NAME,
  DEFAULT_FILTER,
  type SessionMiddlewareOptions,
  type SessionVariables,
} from './middleware/session-middleware.ts';
export { formatSessionId, parseSessionId, TOKEN_PATTERN, type SessionId } from './session/ids.ts';
export { checkClusterKeys, parseClusterKeys, type ClusterKeyConfig, type ProtectionMode } from './codec/protection.ts';
export {
  DEFAULT_PRINCIPAL_ATTRIBUTE,
  FLASH_PREFIX,
  Session,
  type SessionData,
  type ValueOf,
} from './session/session.ts';
export type {
  AttributeChangedEvent,
  EventOrigin,
  ListenerOptions,
  SessionCreatedEvent,
  SessionEndedEvent,
  SessionEvent,
  SessionEventMap,
} from './session/events.ts';
export type { SchemaData, SessionSchema } from './session/schema.ts';
export type { EndReason } from './session/state.ts';
export { ReplicationStats, type TrafficRates } from './stats.ts';
export { LagWindow, RateWindow, type LagSummary } from './stats-window.ts';
export { MemorySnapshotStore } from './store/memory.ts';
export type {
  LoadProgress,
  SnapshotItem,
  SnapshotRejection,
  SnapshotStore,
  SnapshotWriteResult,
} from './store/snapshot-store.ts';
export type { LogFollower, LogMessage, ReplicationLog } from './log/replication-log.ts';
export { CatchUpLog, type CatchUpLogOptions, type CatchUpResult } from './log/catch-up-log.ts';
export { LogReplayStore } from './store/log-replay.ts';
