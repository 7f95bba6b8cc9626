/**
 * `GET /metrics`: Prometheus text (format 0.0.4) written directly from the node's counters and
 * status, Web-standard and free of prom-client so every runtime exposes the same series.
 * Replication lag is a histogram, so a cluster-wide p99 can be computed with `histogram_quantile`.
 */
import type { ClusterNode } from '../index.ts';

/** The Content-Type of the Prometheus text format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string>>;

/** One sample of a metric family: `suffix` (such as `_bucket`) after the family name, its own labels, and the value. */
export interface MetricSample {
  readonly suffix?: string;
  readonly labels?: Labels;
  readonly value: number;
}

/** Writes Prometheus text one metric family at a time, every sample also carrying the common labels. */
export class MetricsWriter {
  readonly #lines: string[] = [];
  readonly #common: string;

  /** @param common labels every sample carries, after its own (such as `cluster` and `node`) */
  constructor(common: Labels) {
    this.#common = labelPairs(common);
  }

  /** One metric family: `# HELP`, `# TYPE`, then its samples. */
  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: readonly MetricSample[]): void {
    this.#lines.push(
      `# HELP ${name} ${help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`,
      `# TYPE ${name} ${type}`,
    );
    for (const { suffix = '', labels = {}, value } of samples) {
      const own = labelPairs(labels);
      this.#lines.push(`${name}${suffix}{${own ? `${own},` : ''}${this.#common}} ${formatValue(value)}`);
    }
  }

  /** The exposition written so far, ending in a newline. */
  text(): string {
    return `${this.#lines.join('\n')}\n`;
  }
}

function labelPairs(labels: Labels): string {
  return Object.entries(labels)
    .map(
      ([name, value]) => `${name}="${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`,
    )
    .join(',');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/**
 * Every numeric counter `ReplicationStats` tracks, as `[field, metric name, help]`. The admin tests
 * check that no counter of `stats.snapshot()` is missing here.
 */
// biome-ignore format: a table, one counter a row
const COUNTERS: ReadonlyArray<readonly [field: string, name: string, help: string]> = [
  ['bytesSent', 'sessrep_bytes_sent_total', 'Bytes of replication messages sent.'],
  ['bytesReceived', 'sessrep_bytes_received_total', 'Bytes of replication messages received, dropped ones included.'],
  ['messagesResent', 'sessrep_messages_resent_total', 'Ack-mode messages sent again to a member that had not acknowledged them in time.'],
  ['acksTimedOut', 'sessrep_acks_timed_out_total', 'Ack-mode commits that waited the full ack timeout for some replica.'],
  ['filteredRequests', 'sessrep_requests_filtered_total', "Requests the valve's filter kept from replicating."],
  ['oversizedRejected', 'sessrep_requests_oversized_total', 'Requests answered 413 because the session would exceed maxSessionBytes.'],
  ['routeRewrites', 'sessrep_route_rewrites_total', 'Session cookies whose route was rewritten to this node after a failover.'],
  ['versionWaits', 'sessrep_version_waits_total', 'Requests whose session copy here was older than the version the client presented (read-your-writes waits).'],
  ['versionRefusals', 'sessrep_version_refusals_total', 'Requests answered 503 because the newer session state did not arrive within readYourWritesWaitMs.'],
  ['versionsLost', 'sessrep_versions_lost_total', "Requests whose presented session version no member held any more (lost with its holders)."],
  ['versionsRejected', 'sessrep_version_cookies_rejected_total', 'Session version cookies that did not verify (forged, copied or damaged) and were ignored.'],
  ['rejectedSessions', 'sessrep_sessions_rejected_total', 'New sessions refused because this node held maxActiveSessions.'],
  ['sessionsCreated', 'sessrep_sessions_created_total', 'Sessions created on this node.'],
  ['sessionsExpired', 'sessrep_sessions_expired_total', 'Sessions this node expired.'],
  ['sessionsInvalidated', 'sessrep_sessions_invalidated_total', 'Sessions invalidated by requests on this node.'],
  ['channelErrors', 'sessrep_channel_errors_total', 'Operations the broker refused (permission violations and other server errors).'],
  ['replicationErrors', 'sessrep_replication_errors_total', 'Replication publishes that failed (the request was still answered).'],
  ['resyncs', 'sessrep_resyncs_total', 'Full-state merges from every ready member after a reconnect or a stall.'],
  ['resyncRepairs', 'sessrep_resync_repairs_total', 'Sessions a resync changed: updates this node had missed.'],
  ['clockSkewObserved', 'sessrep_clock_skew_observed_total', "Received stamps from a clock more than a minute ahead of this node's (not followed)."],
  ['clockSkewWrites', 'sessrep_clock_skew_writes_total', 'Writes stamped just after a value from a clock more than a minute ahead, so that they still win.'],
  ['wholeSessionFetches', 'sessrep_whole_session_fetches_total', 'Sessions fetched whole from a member because a delta showed this node lacked part of them.'],
  ['listenerErrors', 'sessrep_session_listener_errors_total', 'Session event listeners that threw (logged; replication went on).'],
  ['schemaDrift', 'sessrep_schema_drift_total', "Attribute values from other nodes that did not match this node's schema (applied anyway)."],
];

/** The counter maps of `ReplicationStats`, by message kind or drop reason. */
const LABELLED_COUNTERS: ReadonlyArray<
  readonly [field: 'sent' | 'received' | 'dropped', name: string, label: string, help: string]
> = [
  ['sent', 'sessrep_messages_sent_total', 'kind', 'Replication messages sent, by message kind.'],
  [
    'received',
    'sessrep_messages_received_total',
    'kind',
    'Replication messages received and accepted, by message kind.',
  ],
  [
    'dropped',
    'sessrep_messages_dropped_total',
    'reason',
    'Incoming messages dropped (malformed, foreign, unauthenticated, ...), by reason.',
  ],
];

/**
 * The fields of `ReplicationStats` the metrics cover (for the completeness test). `messagesSent` and
 * `messagesReceived` are the sums of the by-kind counters, which Prometheus adds up itself.
 */
export const COVERED_STATS: readonly string[] = [
  ...COUNTERS.map(([field]) => field),
  ...LABELLED_COUNTERS.map(([field]) => field),
  'messagesSent',
  'messagesReceived',
];

/** Member states always exported (0 when none), so dashboards see every series. */
const MEMBER_STATES = ['alive', 'unreachable', 'suspected', 'draining', 'joining'] as const;

/** Renders this node's metrics in the Prometheus text format. */
export function renderMetrics(node: ClusterNode): string {
  const out = new MetricsWriter({ cluster: node.cluster, node: node.node });
  const stats = node.stats;
  const status = node.status();

  for (const [field, name, help] of COUNTERS)
    out.family(name, 'counter', help, [{ value: Number((stats as unknown as Record<string, number>)[field] ?? 0) }]);
  for (const [field, name, label, help] of LABELLED_COUNTERS) {
    out.family(
      name,
      'counter',
      help,
      Object.entries(stats[field]).map(([value, count]) => ({ labels: { [label]: value }, value: count ?? 0 })),
    );
  }

  const { boundsMs, counts } = stats.lagBuckets();
  const totals = stats.lagTotals();
  out.family(
    'sessrep_replication_lag_seconds',
    'histogram',
    "Replication lag: time from a write's stamp on the writing node to its apply on this node (bucket edges are powers of two ms).",
    [
      ...boundsMs.map((ms, i) => ({ suffix: '_bucket', labels: { le: String(ms / 1000) }, value: counts[i]! })),
      { suffix: '_bucket', labels: { le: '+Inf' }, value: totals.count },
      { suffix: '_sum', value: totals.sumMs / 1000 },
      { suffix: '_count', value: totals.count },
    ],
  );

  const sessions = status.sessions;
  out.family(
    'sessrep_sessions',
    'gauge',
    'Sessions this node knows, by role: replica (delta manager: every node holds every session); primary, backup or proxy (backup manager).',
    status.manager === 'delta'
      ? [{ labels: { role: 'replica' }, value: sessions.total ?? 0 }]
      : ['primary', 'backup', 'proxy'].map((role) => ({ labels: { role }, value: sessions[role] ?? 0 })),
  );
  out.family('sessrep_session_tombstones', 'gauge', 'Ended sessions kept as tombstones to absorb late messages.', [
    { value: sessions.tombstones ?? 0 },
  ]);
  out.family(
    'sessrep_members',
    'gauge',
    'Cluster members as this node sees them (itself included), by state.',
    MEMBER_STATES.map((state) => ({
      labels: { state },
      value: status.members.filter((m) => m.state === state).length,
    })),
  );
  out.family('sessrep_ready', 'gauge', '1 once this node finished state transfer and serves traffic.', [
    { value: status.ready ? 1 : 0 },
  ]);
  out.family('sessrep_draining', 'gauge', '1 while this node drains.', [{ value: status.draining ? 1 : 0 }]);
  out.family('sessrep_channel_connected', 'gauge', '1 while the channel (NATS) is connected.', [
    { value: status.channel.status === 'connected' ? 1 : 0 },
  ]);
  out.family(
    'sessrep_state_transfer_sessions',
    'gauge',
    'Sessions (and ownership entries) received by the state transfer at start-up.',
    [{ value: status.stateTransfer.sessionsReceived }],
  );
  out.family(
    'sessrep_state_transfer_duration_seconds',
    'gauge',
    'How long the start-up state transfer took (0 while it runs).',
    [{ value: (status.stateTransfer.durationMs ?? 0) / 1000 }],
  );
  const applied = status.persistence?.appliedSeq;
  if (typeof applied === 'number')
    out.family('sessrep_log_applied_sequence', 'gauge', 'The last replication-log sequence this node applied.', [
      { value: applied },
    ]);
  return out.text();
}
