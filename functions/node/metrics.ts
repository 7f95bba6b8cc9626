/**
 * `GET /metrics` for the Node server: Prometheus text built with prom-client. Every value is read
 * at scrape time from the library's own counters (`ReplicationStats`, `status()`), so the library
 * stays runtime-neutral and other runtimes can expose the same numbers their own way.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { ClusterNode } from '../../lib/index.ts';

/** The `/metrics` endpoint of one node. */
export interface NodeMetrics {
  readonly registry: Registry;
  /** Answers a scrape. */
  handler(): Promise<Response>;
}

/** Member states always exported (0 when none), so dashboards see every series. */
const MEMBER_STATES = ['alive', 'suspected', 'draining', 'joining'] as const;

/**
 * Builds a registry for one node: `sessrep_*` metrics from the node's counters plus prom-client's
 * default process metrics, every series labelled with `cluster` and `node`.
 */
export function createNodeMetrics(sessions: ClusterNode, options: { processMetrics?: boolean } = {}): NodeMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ cluster: sessions.cluster, node: sessions.node });
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const stats = sessions.stats;
  const registers = [registry];

  /** A counter mirroring one library counter. */
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  /** A counter with one label, mirroring a library counter map such as `stats.sent`. */
  const labelledCounter = (name: string, help: string, label: string, read: () => Partial<Record<string, number>>) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [value, count] of Object.entries(read())) this.inc({ [label]: value }, count ?? 0);
      },
    });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  labelledCounter('sessrep_messages_sent_total', 'Replication messages sent, by message kind.', 'kind', () => stats.sent);
  labelledCounter('sessrep_messages_received_total', 'Replication messages received and accepted, by message kind.', 'kind', () => stats.received);
  labelledCounter('sessrep_messages_dropped_total', 'Incoming messages dropped (malformed, foreign, unauthenticated, ...), by reason.', 'reason', () => stats.dropped);
  counter('sessrep_bytes_sent_total', 'Bytes of replication messages sent.', () => stats.bytesSent);
  counter('sessrep_bytes_received_total', 'Bytes of replication messages received, dropped ones included.', () => stats.bytesReceived);
  counter('sessrep_acks_timed_out_total', 'Ack-mode commits that waited the full ack timeout for some replica.', () => stats.acksTimedOut);
  counter('sessrep_replication_errors_total', 'Replication publishes that failed (the request was still answered).', () => stats.replicationErrors);
  counter('sessrep_sessions_created_total', 'Sessions created on this node.', () => stats.sessionsCreated);
  counter('sessrep_sessions_expired_total', 'Sessions this node expired.', () => stats.sessionsExpired);
  counter('sessrep_sessions_invalidated_total', 'Sessions invalidated by requests on this node.', () => stats.sessionsInvalidated);
  counter('sessrep_requests_filtered_total', "Requests the valve's filter kept from replicating.", () => stats.filteredRequests);
  counter('sessrep_requests_oversized_total', 'Requests answered 413 because the session would exceed maxSessionBytes.', () => stats.oversizedRejected);
  counter('sessrep_route_rewrites_total', "Session cookies whose route was rewritten to this node after a failover.", () => stats.routeRewrites);

  new Gauge({
    name: 'sessrep_sessions',
    help: 'Sessions this node knows, by role: replica (delta manager: every node holds every session); primary, backup or proxy (backup manager).',
    labelNames: ['role'],
    registers,
    collect() {
      this.reset();
      const counts = sessions.status().sessions;
      if (sessions.manager.name === 'delta') this.set({ role: 'replica' }, counts.total ?? 0);
      else for (const role of ['primary', 'backup', 'proxy']) this.set({ role }, counts[role] ?? 0);
    },
  });
  gauge('sessrep_session_tombstones', 'Ended sessions kept as tombstones to absorb late messages.', () => sessions.status().sessions.tombstones ?? 0);
  new Gauge({
    name: 'sessrep_members',
    help: 'Cluster members as this node sees them (itself included), by state.',
    labelNames: ['state'],
    registers,
    collect() {
      const members = sessions.status().members;
      for (const state of MEMBER_STATES) this.set({ state }, members.filter((m) => m.state === state).length);
    },
  });
  gauge('sessrep_ready', '1 once this node finished state transfer and serves traffic.', () => (sessions.ready ? 1 : 0));
  gauge('sessrep_draining', '1 while this node drains.', () => (sessions.membership.draining ? 1 : 0));
  gauge('sessrep_channel_connected', '1 while the channel (NATS) is connected.', () => (sessions.status().channel.status === 'connected' ? 1 : 0));
  gauge('sessrep_state_transfer_sessions', 'Sessions (and ownership entries) received by the state transfer at start-up.', () => sessions.manager.stateTransfer.sessionsReceived);
  gauge('sessrep_state_transfer_duration_seconds', 'How long the start-up state transfer took (0 while it runs).', () => (sessions.manager.stateTransfer.durationMs ?? 0) / 1000);
  registry.registerMetric(lagSummary(sessions) as unknown as Metric);

  return {
    registry,
    async handler() {
      return new Response(await registry.metrics(), { headers: { 'content-type': registry.contentType, 'cache-control': 'no-store' } });
    },
  };
}

/**
 * `sessrep_replication_lag_seconds` as a Prometheus summary: p50 and p99 over the last minute from
 * the library's lag window, `_sum` and `_count` over the node's life. prom-client's own Summary
 * computes quantiles from its own observations, so this one is a plain metric object.
 */
function lagSummary(sessions: ClusterNode) {
  const name = 'sessrep_replication_lag_seconds';
  const help = "Replication lag: time from a write's stamp on the writing node to its apply on this node; quantiles over the last minute.";
  return {
    name,
    help,
    type: 'summary',
    aggregator: 'sum',
    get() {
      const lag = sessions.stats.lag();
      const totals = sessions.stats.lagTotals();
      // No quantiles without samples in the window (rather than NaN): _sum and _count are always there.
      const quantiles =
        lag.p50Ms === null || lag.p99Ms === null
          ? []
          : [
              { labels: { quantile: 0.5 }, value: lag.p50Ms / 1000 },
              { labels: { quantile: 0.99 }, value: lag.p99Ms / 1000 },
            ];
      return {
        name,
        help,
        type: 'summary',
        aggregator: 'sum',
        values: [
          ...quantiles,
          { metricName: `${name}_sum`, labels: {}, value: totals.sumMs / 1000 },
          { metricName: `${name}_count`, labels: {}, value: totals.count },
        ],
      };
    },
  };
}
