/**
 * What a node shows operators: the `/cluster` view (`ClusterStatus`), the `/cluster/sessions` view
 * (`SessionList`) and the channel's connection state, built through the `SessionManager` contract
 * so they read the same for every replication strategy.
 */
import type { Channel, ChannelStatus } from '../channel/channel.ts';
import type { Logger } from '../logger.ts';
import type { SendMode, SessionManager, SessionSummary, StateTransferStatus } from '../managers/manager.ts';
import type { Membership } from '../membership/membership.ts';
import type { ReplicationStats, TrafficRates } from '../stats.ts';
import type { LagSummary } from '../stats-window.ts';

/** A member as shown on `/cluster`. */
export interface MemberStatus {
  node: string;
  self: boolean;
  /**
   * `unreachable` (its subject has no responder: dead or reconnecting) wins over `suspected` (missed
   * heartbeats, answered a ping), which wins over `draining`, which wins over `joining` (not ready yet).
   */
  state: 'alive' | 'unreachable' | 'suspected' | 'draining' | 'joining';
  /**
   * `false` once the member is `unreachable`: the broker has no subscriber on its subject (its connection is
   * gone), acks no longer wait for it, and it is dropped after the reconnect grace unless it comes back.
   */
  alive: boolean;
  ready: boolean;
  draining: boolean;
  /** The member's HTTP base URL, when it advertises one. */
  url?: string;
  startedAt: number;
  lastSeenMsAgo: number;
}

/** The channel's connection as shown on `/cluster`. */
export interface ChannelState {
  /** `memory`, `nats`, `sns-sqs`, ... (`Channel.kind`). */
  kind: string;
  status: ChannelStatus;
  /** What the channel said with its last status change. */
  detail?: string;
}

/** The JSON served at `/cluster`. */
export interface ClusterStatus {
  cluster: string;
  node: string;
  manager: 'delta' | 'backup';
  ready: boolean;
  sendMode: SendMode;
  channel: ChannelState;
  /** This node's clock when it answered (ms since epoch): ages on `/cluster` are relative to it. */
  time: number;
  /** This node's advertised HTTP base URL. */
  url?: string;
  draining: boolean;
  members: MemberStatus[];
  sessions: Record<string, number>;
  /** Messages and bytes per second in and out, over the last ~10 s. */
  rates: TrafficRates;
  /** Replication lag (now minus the write's stamp, measured where it is applied) over the last minute. */
  replicationLag: LagSummary;
  stateTransfer: StateTransferStatus;
  /** Replication log and snapshot store progress, when configured. */
  persistence?: Record<string, unknown>;
  stats: Record<string, unknown>;
}

/** The JSON served at `/cluster/sessions`. */
export interface SessionList {
  node: string;
  manager: 'delta' | 'backup';
  /** This node's clock when it answered (ms since epoch). */
  time: number;
  /** Sessions this node knows (delta: held; backup: every live ownership entry). */
  total: number;
  sessions: SessionSummary[];
}

/** What the views read: one node's parts. */
export interface StatusSource {
  readonly cluster: string;
  readonly node: string;
  readonly sendMode: SendMode;
  readonly advertiseUrl: string | undefined;
  readonly manager: SessionManager;
  readonly membership: Membership;
  readonly stats: ReplicationStats;
  /** The channel's connection. */
  readonly channelWatch: ChannelWatch;
}

/** The channel's connection state as a node follows it. */
export interface ChannelWatch {
  /** The state now. */
  current(): ChannelState;
  /** Stops following: a channel the caller keeps open after the node stopped is no longer this node's to report on. */
  stop(): void;
}

/** Most rows `/cluster/sessions` lists. */
const MAX_SESSION_ROWS = 10_000;

/**
 * Follows the channel's connection state for `/cluster`, logging each change (a broker refusal is
 * an error, counted in `stats.channelErrors`).
 */
export function watchChannel(channel: Channel, stats: ReplicationStats, logger: Logger): ChannelWatch {
  const state: ChannelState = { kind: channel.kind, status: 'connected' };
  let watching = true;
  channel.onStatus((status, detail) => {
    if (!watching) return;
    state.status = status;
    if (detail !== undefined) state.detail = detail;
    if (status === 'error') {
      stats.channelErrors++;
      logger.error({ status, detail }, 'the broker refused an operation');
    } else if (status === 'connected' || status === 'closed') {
      logger.info({ status, detail }, 'channel connection changed');
    } else {
      logger.warn({ status, detail }, 'channel connection changed');
    }
  });
  return {
    current: () => ({ ...state }),
    stop: () => {
      watching = false;
    },
  };
}

/** The `/cluster` view of a node now. */
export function clusterStatus(source: StatusSource): ClusterStatus {
  const { manager, membership, stats, advertiseUrl } = source;
  const now = Date.now();
  const draining = membership.draining;
  const self: MemberStatus = {
    node: source.node,
    self: true,
    state: draining ? 'draining' : manager.ready ? 'alive' : 'joining',
    alive: true,
    ready: manager.ready,
    draining,
    ...(advertiseUrl !== undefined ? { url: advertiseUrl } : {}),
    startedAt: membership.startedAt,
    lastSeenMsAgo: 0,
  };
  const others = membership.members().map(
    (m): MemberStatus => ({
      node: m.node,
      self: false,
      state: m.state !== 'alive' ? m.state : m.draining ? 'draining' : m.ready ? 'alive' : 'joining',
      alive: m.state !== 'unreachable',
      ready: m.ready,
      draining: m.draining,
      ...(m.url !== undefined ? { url: m.url } : {}),
      startedAt: m.startedAt,
      lastSeenMsAgo: now - m.lastSeen,
    }),
  );
  const persistence = manager.persistence;
  return {
    cluster: source.cluster,
    node: source.node,
    manager: manager.name,
    ready: manager.ready,
    sendMode: source.sendMode,
    channel: source.channelWatch.current(),
    time: now,
    ...(advertiseUrl !== undefined ? { url: advertiseUrl } : {}),
    draining,
    members: [self, ...others],
    sessions: manager.sessionCounts(),
    rates: stats.rates(),
    replicationLag: stats.lag(now),
    stateTransfer: { ...manager.stateTransfer },
    ...(persistence ? { persistence } : {}),
    stats: stats.snapshot(),
  };
}

/** The `/cluster/sessions` view: at most `limit` rows (0 to 10000; NaN lists none), key prefixes only. */
export function sessionList(source: StatusSource, limit: number): SessionList {
  const rows = Number.isNaN(limit) ? 0 : Math.max(0, Math.min(Math.floor(limit), MAX_SESSION_ROWS));
  const { total, sessions } = source.manager.summaries(rows);
  return { node: source.node, manager: source.manager.name, time: Date.now(), total, sessions };
}
