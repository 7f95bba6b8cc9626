/**
 * `CopySender`: how the backup manager moves data and ownership. Session data goes point to point to
 * its holders in `copy` messages; ownership entries go to every node on `.map`. Both are split into
 * messages that fit the broker. Request writes of one event-loop turn share one message per
 * destination (concurrent requests on a primary mostly copy to the same few backups).
 */
import type { OwnershipEntry } from '../../codec/envelope.ts';
import { sessionWireBytes } from '../../codec/wire-size.ts';
import { sessionFields } from '../../logger.ts';
import type { SessionState } from '../../session/state.ts';
import { ASYNC_SYNC_MS, batchBySize, nextTurn } from '../batching.ts';
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

/** One destination's request writes of the current event-loop turn. */
interface TurnBatch {
  /** The latest entry of each session in the batch. */
  readonly entries: Map<string, OwnershipEntry>;
  readonly states: SessionState[];
  /** Some write in it waits for the holder's acknowledgement. */
  ack: boolean;
  /** Resolves once the batch was sent and the broker confirmed it (`ClusterBus.sync`, bounded). */
  readonly sent: Promise<void>;
  markSent: () => void;
  /** Resolves with the holder when it did not acknowledge in time, else with nothing. */
  readonly acked: Promise<string[]>;
  settleAcks: (missing: Promise<string[]>) => void;
}

function newTurnBatch(): TurnBatch {
  const batch = {
    entries: new Map<string, OwnershipEntry>(),
    states: [] as SessionState[],
    ack: false,
  } as Partial<TurnBatch> & { ack: boolean };
  (batch as { sent: Promise<void> }).sent = new Promise<void>((resolve) => (batch.markSent = resolve));
  (batch as { acked: Promise<string[]> }).acked = new Promise<string[]>((resolve) => (batch.settleAcks = resolve));
  return batch as TurnBatch;
}

/** Sends session data to holders and ownership entries to everyone. */
export class CopySender {
  /** Request writes waiting for the end of the current turn, per destination. */
  readonly #turn = new Map<string, TurnBatch>();
  #scheduled = false;
  /**
   * Entries every holder already got (broadcast on `.map`, or carried by a write's copy). On an
   * ordered channel a later write's copy leaves them out: the holder has them before the data.
   */
  readonly #carried = new WeakSet<OwnershipEntry>();

  constructor(
    private readonly core: ReplicaCore,
    private readonly ackTimeoutMs: number,
    /** False while the channel is down (async writes then do not wait for the broker's confirmation). */
    private readonly connected: () => boolean = () => true,
  ) {}

  /**
   * Sends session data (batched), with the entries of the sessions in each batch, to data holders;
   * in `ack` mode waits until each applied it (or `ackTimeoutMs`). A request's `write` leaves at the
   * end of the event-loop turn, in one message per holder with the turn's other writes, and resolves
   * once the broker confirmed it (async, at most `ASYNC_SYNC_MS`) or the holders acknowledged (ack).
   */
  async copy(
    holders: string[],
    entries: OwnershipEntry[],
    states: SessionState[],
    mode: SendMode,
    { write = false, route }: CopyOptions = {},
  ): Promise<void> {
    const waits = write
      ? holders.map((holder) => this.#queue(holder, entries, states, mode))
      : this.#send(holders, entries, states, mode, write, route);
    this.#report(await Promise.all(waits), states, route);
  }

  /** Sends the turn's request writes now: one message (or more, when large) per destination. */
  flush(): void {
    if (!this.#scheduled) return;
    this.#scheduled = false;
    const batches = [...this.#turn];
    this.#turn.clear();
    const ordered = this.core.parts.bus.channel.ordered === true;
    for (const [holder, batch] of batches) {
      const entries = [...batch.entries.values()].filter((entry) => !(ordered && this.#carried.has(entry)));
      for (const entry of entries) this.#carried.add(entry);
      const waits = this.#send([holder], entries, batch.states, batch.ack ? 'ack' : 'async', true);
      batch.settleAcks(Promise.all(waits).then((missing) => missing.flat()));
    }
    const confirmed = this.connected() ? this.core.parts.bus.sync(ASYNC_SYNC_MS) : undefined;
    for (const [, batch] of batches) {
      if (confirmed) void confirmed.then(batch.markSent);
      else batch.markSent();
    }
  }

  /** Adds a write to its holder's batch of this turn; resolves with the holder if it did not acknowledge (ack). */
  async #queue(holder: string, entries: OwnershipEntry[], states: SessionState[], mode: SendMode): Promise<string[]> {
    let batch = this.#turn.get(holder);
    if (!batch) {
      batch = newTurnBatch();
      this.#turn.set(holder, batch);
    }
    for (const entry of entries) batch.entries.set(entry.key, entry);
    batch.states.push(...states);
    if (mode === 'ack') batch.ack = true;
    if (!this.#scheduled) {
      this.#scheduled = true;
      nextTurn(() => this.flush());
    }
    if (mode !== 'ack') {
      await batch.sent;
      return [];
    }
    return batch.acked;
  }

  /** Counts and logs holders that did not acknowledge a write in time. */
  #report(missingPerWait: string[][], states: SessionState[], route: string | undefined): void {
    const missing = missingPerWait.flat();
    if (missing.length === 0) return;
    const { stats, logger } = this.core.parts;
    stats.acksTimedOut++;
    logger.warn(
      { ...sessionFields(states.map((s) => s.key)), route, missing, timeoutMs: this.ackTimeoutMs },
      'ack timeout: the backup did not confirm the write',
    );
  }

  /** Sends session data to holders now, in messages that fit the broker; the ack waits in `ack` mode. */
  #send(
    holders: string[],
    entries: OwnershipEntry[],
    states: SessionState[],
    mode: SendMode,
    write: boolean,
    route?: string,
  ): Promise<string[]>[] {
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
    return waits;
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
    for (const entry of entries) this.#carried.add(entry);
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
