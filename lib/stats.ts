/** Counters every node keeps (Tomcat's manager and valve statistics), readable on any runtime. */
import type { DropReason } from './errors.ts';
import type { MessageKind } from './codec/envelope.ts';

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
  /** Requests whose path matched the valve's filter and were not replicated. */
  filteredRequests = 0;
  /** Requests answered 413 because the session would exceed `maxSessionBytes`. */
  oversizedRejected = 0;
  /** Cookies whose route was rewritten to this node after a failover. */
  routeRewrites = 0;
  sessionsCreated = 0;
  sessionsExpired = 0;
  sessionsInvalidated = 0;
  /** Replication failures (publish errors); requests are still answered. */
  replicationErrors = 0;

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

  /** A copy for `/cluster`. */
  snapshot(): Record<string, unknown> {
    return structuredClone({ ...this }) as Record<string, unknown>;
  }
}
