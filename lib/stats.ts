/** Counters every node keeps (Tomcat's manager and valve statistics), readable on any runtime. */
import type { DropReason } from './errors.ts';
import type { MessageKind } from './codec/envelope.ts';
import { LagWindow, RateWindow, type LagSummary } from './stats-window.ts';

/** Message and byte rates per second, in (received) and out (sent). */
export interface TrafficRates {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Seconds the rates cover (up to about 10). */
  windowSeconds: number;
}

/** Plain counters, incremented in place; `snapshot()` gives a JSON-ready copy. */
export class ReplicationStats {
  messagesSent = 0;
  bytesSent = 0;
  messagesReceived = 0;
  bytesReceived = 0;
  /** Messages sent, by kind. */
  readonly sent: Partial<Record<MessageKind, number>> = {};
  /** Messages received and accepted, by kind. */
  readonly received: Partial<Record<MessageKind, number>> = {};
  /** Messages dropped, by reason. */
  readonly dropped: Partial<Record<DropReason, number>> = {};
  /** Ack-mode commits that waited the full `ackTimeoutMs` for some member. */
  acksTimedOut = 0;
  /** Ack-mode messages sent again, point to point, to a member that had not acknowledged them in time (one per member). */
  messagesResent = 0;
  /** Requests whose path matched the valve's filter and were not replicated. */
  filteredRequests = 0;
  /** Requests answered 413 because the session would exceed `maxSessionBytes`. */
  oversizedRejected = 0;
  /** Cookies whose route was rewritten to this node after a failover. */
  routeRewrites = 0;
  /** Requests whose session here was older than the version the client presented: they waited for the newer state. */
  versionWaits = 0;
  /** Of those, requests answered 503 because the newer state did not arrive in `readYourWritesWaitMs`. */
  versionRefusals = 0;
  /** Requests whose presented version no member held any more (lost with its holders): served from what the cluster has. */
  versionsLost = 0;
  /** Session version cookies that did not verify (forged, copied from another session, damaged): ignored. */
  versionsRejected = 0;
  /** New sessions refused because of `maxActiveSessions` (Tomcat's rejectedSessions). */
  rejectedSessions = 0;
  sessionsCreated = 0;
  sessionsExpired = 0;
  sessionsInvalidated = 0;
  /** Operations the broker refused (permission violations and other server errors). */
  channelErrors = 0;
  /** Replication failures (publish errors); requests are still answered. */
  replicationErrors = 0;
  /** Resyncs: full-state merges from every ready member after a reconnect or a stall (deltas may have been missed). */
  resyncs = 0;
  /** Sessions a resync changed: updates this node had missed. */
  resyncRepairs = 0;
  /** Received stamps from a clock more than a minute ahead of this node's, which this node's clock did not follow. */
  clockSkewObserved = 0;
  /** Writes stamped just after the value they replaced, because a clock more than a minute ahead had stamped it. */
  clockSkewWrites = 0;
  /** Sessions fetched whole from a member because a delta showed this node lacked part of them. */
  wholeSessionFetches = 0;
  /** Session listeners (`on('created' | 'ended' | 'attribute')`) that threw. */
  listenerErrors = 0;
  /** Attribute values from other nodes that did not match this node's schema (drift during a rolling deploy). */
  schemaDrift = 0;

  /** Counts one outgoing message. */
  countSent(kind: MessageKind, bytes: number): void {
    this.messagesSent++;
    this.bytesSent += bytes;
    this.sent[kind] = (this.sent[kind] ?? 0) + 1;
  }

  /** Counts one incoming message that decoded. */
  countReceived(kind: MessageKind, bytes: number): void {
    this.messagesReceived++;
    this.bytesReceived += bytes;
    this.received[kind] = (this.received[kind] ?? 0) + 1;
  }

  /** Counts one dropped message. */
  countDropped(reason: DropReason, bytes: number): void {
    this.bytesReceived += bytes;
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  // Private fields stay out of `snapshot()`: it copies the public counters only.
  readonly #rates = new RateWindow(['messagesIn', 'messagesOut', 'bytesIn', 'bytesOut'] as const);
  readonly #lag = new LagWindow();

  /** Samples the traffic counters for `rates()`; the cluster calls it once a second. */
  sampleRates(now: number = Date.now()): void {
    this.#rates.sample(now, [this.messagesReceived, this.messagesSent, this.bytesReceived, this.bytesSent]);
  }

  /** Messages and bytes per second over the last ~10 s of samples. */
  rates(): TrafficRates {
    return this.#rates.rates();
  }

  /** Records the lag of one applied replication message: `now` minus the wall time of its write's stamp. */
  recordLag(lagMs: number, now: number = Date.now()): void {
    this.#lag.record(lagMs, now);
  }

  /** Replication lag p50/p99 over the last minute. */
  lag(now: number = Date.now()): LagSummary {
    return this.#lag.summary(now);
  }

  /** All-time count and sum (ms) of recorded lags (a Prometheus summary's `_count` and `_sum`). */
  lagTotals(): { count: number; sumMs: number } {
    return { count: this.#lag.count, sumMs: this.#lag.sumMs };
  }

  /** All-time lag counts below 1, 2, 4, ... 65536 ms (a Prometheus histogram's cumulative buckets). */
  lagBuckets(): { boundsMs: number[]; counts: number[] } {
    return this.#lag.cumulative();
  }

  /** A copy for `/cluster`. */
  snapshot(): Record<string, unknown> {
    return structuredClone({ ...this }) as Record<string, unknown>;
  }
}
