/**
 * `CopySender`: how the backup manager moves data and ownership. Session data goes point to point to
 * its holders in `copy` messages; ownership entries go to every node on `.map`. Both are split into
 * messages that fit the broker.
 */
import type { OwnershipEntry } from '../../codec/envelope.ts';
import { sessionWireBytes } from '../../codec/wire-size.ts';
import { sessionFields } from '../../logger.ts';
import type { SessionState } from '../../session/state.ts';
import { batchBySize } from '../batching.ts';
import type { ReplicaCore } from '../core.ts';
import type { SendMode } from '../manager.ts';

/** Largest number of entries or sessions in one `.map` or `copy` message. */
export const BATCH = 500;
/**
 * Session bytes per `copy` message (a single larger session goes alone): a failover re-backs many
 * sessions to one node at once, and one message must stay under the broker's max payload (1 MB).
 */
const COPY_BYTES = 256 * 1024;

/** What one `copy` write says about itself. */
export interface CopyOptions {
  /** A request's write, whose replication lag the holders measure (not a bulk re-backup or hand-over). */
  readonly write?: boolean;
  /** The route the request's cookie named, for log lines. */
  readonly route?: string | undefined;
}

/** Splits session data into `copy` batches of at most `BATCH` sessions and about `COPY_BYTES`. */
export function copyBatches(states: readonly SessionState[]): SessionState[][] {
  return batchBySize(states, { maxCount: BATCH, maxBytes: COPY_BYTES, sizeOf: sessionWireBytes });
}

/** Sends session data to holders and ownership entries to everyone. */
export class CopySender {
  constructor(
    private readonly core: ReplicaCore,
    private readonly ackTimeoutMs: number,
  ) {}

  /**
   * Sends session data (batched), with the entries of the sessions in each batch, to data holders;
   * in `ack` mode waits until each applied it (or `ackTimeoutMs`).
   */
  async copy(
    holders: string[],
    entries: OwnershipEntry[],
    states: SessionState[],
    mode: SendMode,
    { write = false, route }: CopyOptions = {},
  ): Promise<void> {
    const { bus, stats, logger } = this.core.parts;
    const waits: Promise<string[]>[] = [];
    for (const batch of copyBatches(states)) {
      const id = this.core.nextMessageId();
      const batchKeys = new Set(batch.map((s) => s.key));
      const batchEntries = entries.filter((e) => batchKeys.has(e.key));
      const body = { id, e: batchEntries, s: batch, ...(write ? { write } : {}) };
      const reply = mode === 'ack' ? bus.subjects.node(this.core.self) : undefined;
      const sendTo = (holder: string, again = false) => {
        try {
          bus.send(bus.subjects.node(holder), 'copy', body, reply);
        } catch (error) {
          if (again) return; // Sent again after the reconnect, or the wait runs out.
          stats.replicationErrors++;
          logger.error({ ...sessionFields(batch.map((s) => s.key)), route, holder, error }, 'copy to backup failed');
        }
      };
      // A copy or its ack lost on the way (a server of a NATS cluster died) is sent again to the holders that did not ack.
      if (mode === 'ack')
        waits.push(
          this.core.acks.wait(id, holders, this.ackTimeoutMs, (pending) => {
            for (const holder of pending) sendTo(holder, true);
          }),
        );
      for (const holder of holders) sendTo(holder);
    }
    const missing = (await Promise.all(waits)).flat();
    if (missing.length > 0) {
      stats.acksTimedOut++;
      logger.warn(
        { ...sessionFields(states.map((s) => s.key)), route, missing, timeoutMs: this.ackTimeoutMs },
        'ack timeout: the backup did not confirm the write',
      );
    }
  }

  /** Sends one session's data to another holder, unacknowledged and marked so that it travels no further. */
  pass(node: string, entry: OwnershipEntry, state: SessionState): void {
    const { bus, stats, logger } = this.core.parts;
    try {
      bus.send(bus.subjects.node(node), 'copy', { id: this.core.nextMessageId(), e: [entry], s: [state], fwd: true });
    } catch (error) {
      stats.replicationErrors++;
      logger.error({ ...sessionFields([state.key]), to: node, error }, 'passing session data on failed');
    }
  }

  /** Broadcasts ownership entries on `.map`, at most `BATCH` per message. */
  broadcast(entries: OwnershipEntry[]): void {
    const { bus, stats, logger } = this.core.parts;
    for (const batch of batchBySize(entries, { maxCount: BATCH })) {
      try {
        bus.send(bus.subjects.map, 'map', { e: batch });
      } catch (error) {
        stats.replicationErrors++;
        logger.error(
          { ...sessionFields(entries.map((e) => e.key)), entries: entries.length, error },
          'map broadcast failed',
        );
      }
    }
  }
}
