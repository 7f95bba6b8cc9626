/**
 * State transfer between live members: pages of a donor's sessions (and ownership entries), asked on
 * `<prefix>.<cluster>.state` (one ready member answers through a queue group) or of one member on its
 * own subject (`ReplicaCore.receiveState` asks the ready members in turn; the gap repairs ask each).
 */
import type { ClusterBus, Incoming } from '../bus/cluster-bus.ts';
import type { MessageBody, OwnershipEntry } from '../codec/envelope.ts';
import { ENTRY_WIRE_BYTES, sessionWireBytes } from '../codec/wire-size.ts';
import { ChannelRequestError, MalformedMessageError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { SessionState } from '../session/state.ts';
import type { StateTransferStatus } from './manager.ts';

/** What a donor serves: a snapshot of keys, then, per key, the session data and/or ownership entry. */
export interface StateSource {
  keys(): string[];
  item(key: string): { state?: SessionState; entry?: OwnershipEntry };
}

/** One page as the joiner receives it. */
export interface StatePage {
  readonly sessions: SessionState[];
  readonly entries: OwnershipEntry[];
}

/** Page size limits; pages stay well under NATS's default 1 MB max payload. */
export interface PageLimits {
  readonly maxSessions: number;
  readonly maxBytes: number;
}

/**
 * A byte budget that fits one broker message: at most half the broker's max payload (when known),
 * which leaves room for the encoding and the envelope. A single larger item still goes alone.
 */
export function fitPayload(bytes: number, maxPayload: number | undefined): number {
  return maxPayload === undefined ? bytes : Math.max(1, Math.min(bytes, Math.floor(maxPayload / 2)));
}

/** A transfer is forgotten when its joiner has not asked for the next page for this long. */
const TRANSFER_IDLE_MS = 120_000;

/** The donor side: answers page requests from a snapshot of the source's keys. */
export class StateDonor {
  readonly #transfers = new Map<string, { keys: string[]; lastUsed: number }>();

  constructor(
    private readonly bus: ClusterBus,
    private readonly source: StateSource,
    private readonly limits: PageLimits,
    private readonly logger: Logger,
  ) {}

  /** Answers one `state-req`. */
  answer(incoming: Incoming): void {
    const { message, reply } = incoming;
    if (message.kind !== 'state-req' || !reply) return;
    const request = message.body;
    const now = Date.now();
    this.#forgetIdle(now);
    const known = request.transfer !== undefined ? this.#transfers.get(request.transfer) : undefined;
    if (request.transfer !== undefined && !known) return; // Expired transfer: the joiner times out and reports it.
    const id = request.transfer ?? crypto.randomUUID();
    const transfer = known ?? { keys: this.source.keys(), lastUsed: now };
    if (!known) {
      this.#transfers.set(id, transfer);
      this.logger.info({ joiner: message.node, sessions: transfer.keys.length }, 'state transfer: serving');
    }
    transfer.lastUsed = now;
    const sessions: SessionState[] = [];
    const entries: OwnershipEntry[] = [];
    let bytes = 0;
    let cursor = request.cursor;
    const maxBytes = fitPayload(this.limits.maxBytes, this.bus.channel.maxPayload);
    while (cursor < transfer.keys.length && sessions.length + entries.length < this.limits.maxSessions) {
      const { state, entry } = this.source.item(transfer.keys[cursor]!);
      const size = (state ? sessionWireBytes(state) : 0) + (entry ? ENTRY_WIRE_BYTES : 0);
      // Check the fit before adding: a page exceeds maxBytes only to carry one oversized session alone.
      if (cursor > request.cursor && bytes + size > maxBytes) break;
      cursor++;
      if (state) sessions.push(state);
      if (entry) entries.push(entry);
      bytes += size;
    }
    const next = cursor < transfer.keys.length ? cursor : null;
    if (next === null) this.#transfers.delete(id);
    this.bus.send(reply, 'state-page', {
      transfer: id,
      s: sessions,
      ...(entries.length > 0 ? { e: entries } : {}),
      next,
      total: transfer.keys.length,
    });
  }

  #forgetIdle(now: number): void {
    for (const [id, transfer] of this.#transfers)
      if (now - transfer.lastUsed > TRANSFER_IDLE_MS) this.#transfers.delete(id);
  }
}

/** What `receiveState` needs besides the bus. */
export interface ReceiveStateOptions {
  /** The budget for the whole transfer. */
  readonly timeoutMs: number;
  /** Called with each page as it arrives. */
  readonly apply: (page: StatePage) => void;
  /** Updated as the transfer goes: pages, sessions, donor, outcome. */
  readonly status: StateTransferStatus;
  readonly logger: Logger;
  /** Ask this member directly. @default whichever ready member answers on the `state` subject first */
  readonly donor?: string;
  /** Give up on a page that takes longer than this. @default the rest of `timeoutMs` */
  readonly pageTimeoutMs?: number;
}

/**
 * The joiner side: fetches every page from one donor within `timeoutMs`, handing each page to
 * `apply`. Updates `status` as it goes and never throws: a node without a donor starts empty, and
 * one whose donor fails keeps what arrived, with a warning.
 */
export async function receiveState(
  bus: ClusterBus,
  { timeoutMs, apply, status, logger, donor, pageTimeoutMs }: ReceiveStateOptions,
): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  status.state = 'running';
  let subject = donor !== undefined ? bus.subjects.node(donor) : bus.subjects.state;
  let request: MessageBody<'state-req'> = { cursor: 0 };
  try {
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new ChannelRequestError('timeout', subject);
      const reply = await bus.request(subject, 'state-req', request, Math.min(remaining, pageTimeoutMs ?? remaining));
      if (reply.kind !== 'state-page')
        throw new MalformedMessageError('malformed', `donor answered with ${reply.kind}`);
      const page = reply.body;
      status.donor = reply.node;
      status.pages++;
      status.sessionsReceived += page.s.length + (page.e?.length ?? 0);
      apply({ sessions: page.s, entries: page.e ?? [] });
      if (page.next === null) break;
      subject = bus.subjects.node(reply.node);
      request = { transfer: page.transfer, cursor: page.next };
    }
    status.state = 'done';
    logger.info(
      { donor: status.donor, sessions: status.sessionsReceived, pages: status.pages, ms: Date.now() - started },
      'state transfer: done',
    );
  } catch (error) {
    if (error instanceof ChannelRequestError && error.kind === 'no-responders' && status.pages === 0) {
      status.state = 'skipped';
      status.detail = 'no live member: started empty';
      logger.info({}, 'state transfer: no live member, starting empty');
    } else {
      status.state = 'failed';
      status.detail = `${(error as Error).message}; kept ${status.sessionsReceived} sessions received`;
      logger.warn(
        { donor: status.donor, sessions: status.sessionsReceived, error: (error as Error).message },
        'state transfer failed: starting with what arrived',
      );
    }
  }
  status.durationMs = Date.now() - started;
}

/**
 * Gap repair's side (delta resync, backup gap recovery): fetches the full state of each donor in
 * turn, a page within `pageTimeoutMs` (a live member answers at once, so a request sent just before a
 * connection dropped does not hold the repair), and returns each donor's final status.
 */
export async function receiveFromEach(
  bus: ClusterBus,
  donors: readonly string[],
  options: Omit<ReceiveStateOptions, 'status' | 'donor'>,
): Promise<Map<string, StateTransferStatus>> {
  const outcomes = new Map<string, StateTransferStatus>();
  for (const donor of donors) {
    const status: StateTransferStatus = { state: 'pending', sessionsReceived: 0, pages: 0 };
    await receiveState(bus, { ...options, status, donor });
    outcomes.set(donor, status);
  }
  return outcomes;
}
