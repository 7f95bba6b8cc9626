/**
 * `ClusterBus`: one cluster's subjects on a channel. It encodes what this node sends, decodes and
 * validates what arrives, ignores this node's own messages, and drops (and counts) everything
 * malformed or foreign, so no handler ever sees a bad message and no bad message ends a subscription.
 */
import type { Channel, ChannelMessage, ChannelSubscription } from '../channel/channel.ts';
import {
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
  type MessageBody,
  type MessageKind,
} from '../codec/envelope.ts';
import { MalformedMessageError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ReplicationStats } from '../stats.ts';
import type { MessageProtection } from '../codec/protection.ts';

/** A decoded message and whether this process sent it. */
export interface Decoded {
  readonly message: Envelope;
  readonly own: boolean;
}

/** Who this node is on the wire. */
export interface BusIdentity {
  readonly cluster: string;
  readonly node: string;
  /** Random per process run. */
  readonly incarnation: string;
}

/** The subjects of one cluster: `<prefix>.<cluster>.<kind>[.<node>]`. */
export class ClusterSubjects {
  /** Delta manager: committed requests' changes and expiries. */
  readonly delta: string;
  /** Backup manager: ownership entries (key -> primary, backup) for every node's proxy map. */
  readonly map: string;
  /** Heartbeats, hellos and graceful leaves. */
  readonly heartbeat: string;
  /** First page of a state transfer, served by one ready member (queue group). */
  readonly state: string;

  constructor(
    readonly prefix: string,
    readonly cluster: string,
  ) {
    this.delta = `${prefix}.${cluster}.delta`;
    this.map = `${prefix}.${cluster}.map`;
    this.heartbeat = `${prefix}.${cluster}.hb`;
    this.state = `${prefix}.${cluster}.state`;
  }

  /** Point-to-point subject of one node: pings, acks, state transfer pages. */
  node(node: string): string {
    return `${this.prefix}.${this.cluster}.node.${node}`;
  }
}

/** A decoded message plus what is needed to answer it. */
export interface Incoming<K extends MessageKind = MessageKind> {
  readonly message: Envelope<K>;
  /** The sender's reply subject, when it asked for an answer. */
  readonly reply?: string;
}

/** Sends and receives envelopes on one cluster's subjects. */
export class ClusterBus {
  readonly subjects: ClusterSubjects;
  #protection?: MessageProtection;
  /** With protection, sends and deliveries go through these chains so their order is kept. */
  #outbound: Promise<void> = Promise.resolve();
  #inbound: Promise<void> = Promise.resolve();
  /** The broker round trip in flight (`sync`), and the one that follows it for what was sent meanwhile. */
  #roundTrip: Promise<void> | undefined;
  #nextRoundTrip: Promise<void> | undefined;

  constructor(
    readonly channel: Channel,
    readonly identity: BusIdentity,
    prefix: string,
    private readonly stats: ReplicationStats,
    private readonly logger: Logger,
  ) {
    this.subjects = new ClusterSubjects(prefix, identity.cluster);
  }

  /** Turns on authenticated (and, in `encrypt` mode, encrypted) messages for everything sent and received. */
  protect(protection: MessageProtection): void {
    this.#protection = protection;
  }

  /** Publishes a message; with `reply`, receivers answer to that subject. */
  send<K extends MessageKind>(subject: string, kind: K, body: MessageBody<K>, reply?: string): void {
    const plain = this.#encode(kind, body);
    const options = reply !== undefined ? { reply } : undefined;
    const protection = this.#protection;
    if (!protection) {
      this.channel.publish(subject, plain, options);
      this.stats.countSent(kind, plain.byteLength);
      return;
    }
    this.#outbound = this.#outbound
      .then(async () => {
        const data = await protection.protect(this.#header(kind), plain);
        this.channel.publish(subject, data, options);
        this.stats.countSent(kind, data.byteLength);
      })
      .catch((error: unknown) => {
        this.stats.replicationErrors++;
        this.logger.error({ subject, kind, error: (error as Error).message }, 'send failed');
      });
  }

  /** Resolves once every message handed to `send` has been published. */
  async flush(): Promise<void> {
    await this.#outbound;
  }

  /**
   * Resolves once the broker confirmed every message handed to `send` so far (`Channel.sync`), or
   * gave up waiting; never rejects. Undefined when the channel has no sync. One round trip is in
   * flight at a time, bounded by `timeoutMs`: calls made meanwhile share the next one, sent when it
   * returns, so a busy node pays one round trip per broker latency, not one per batch (a call waits
   * at most twice `timeoutMs`).
   */
  sync(timeoutMs: number): Promise<void> | undefined {
    if (!this.channel.sync) return undefined;
    if (!this.#roundTrip) return this.#startRoundTrip(timeoutMs);
    this.#nextRoundTrip ??= this.#roundTrip.then(() => {
      this.#nextRoundTrip = undefined;
      return this.#startRoundTrip(timeoutMs);
    });
    return this.#nextRoundTrip;
  }

  #startRoundTrip(timeoutMs: number): Promise<void> {
    const channel = this.channel;
    // Without protection the sends are already queued, so the round trip shares their socket write.
    const confirmed = this.#protection ? this.#outbound.then(() => channel.sync?.()) : channel.sync?.();
    const trip = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      Promise.resolve(confirmed).then(done, done);
    });
    this.#roundTrip = trip;
    void trip.then(() => {
      if (this.#roundTrip === trip) this.#roundTrip = undefined;
    });
    return trip;
  }

  /** Sends a request and decodes the first reply. Rejects with `ChannelRequestError` or `MalformedMessageError`. */
  async request<K extends MessageKind>(
    subject: string,
    kind: K,
    body: MessageBody<K>,
    timeoutMs: number,
  ): Promise<Envelope> {
    const data = await this.encode(kind, body);
    const reply = await this.channel.request(subject, data, { timeoutMs });
    const decoded = await this.decode(reply, subject);
    if (!decoded) throw new MalformedMessageError('malformed', `unusable reply on ${subject}`);
    return decoded.message;
  }

  /**
   * Subscribes to a subject. The handler gets only valid messages of this cluster from other
   * processes; anything else is dropped and counted by reason.
   */
  listen(subject: string, handler: (incoming: Incoming) => void, options?: { queue?: string }): ChannelSubscription {
    return this.channel.subscribe(subject, (raw) => this.#dispatch(raw, handler), options);
  }

  /**
   * Decodes one raw message: undefined (dropped and counted) when it is malformed, foreign or fails
   * authentication; `own` tells this process's own messages (which `listen` handlers never see).
   * Synchronous without protection; a promise with it (WebCrypto is asynchronous).
   */
  decode(data: Uint8Array, subject: string): Decoded | undefined | Promise<Decoded | undefined> {
    const protection = this.#protection;
    if (!protection) return this.#decodePlain(data, data.byteLength, subject);
    return protection.unprotect(data).then(
      ({ header, payload }) => {
        const decoded = this.#decodePlain(payload, data.byteLength, subject);
        if (
          decoded &&
          (header.cluster !== decoded.message.cluster ||
            header.node !== decoded.message.node ||
            header.kind !== decoded.message.kind)
        ) {
          return this.#drop(
            new MalformedMessageError('unauthenticated', 'the authenticated header does not match the message'),
            data.byteLength,
            subject,
          );
        }
        return decoded;
      },
      (error: unknown) => this.#drop(error, data.byteLength, subject),
    );
  }

  /** Encodes (and protects) a message without sending it, e.g. for the replication log; counts it as sent. */
  async encode<K extends MessageKind>(kind: K, body: MessageBody<K>): Promise<Uint8Array> {
    const plain = this.#encode(kind, body);
    const data = this.#protection ? await this.#protection.protect(this.#header(kind), plain) : plain;
    this.stats.countSent(kind, data.byteLength);
    return data;
  }

  #decodePlain(data: Uint8Array, wireBytes: number, subject: string): Decoded | undefined {
    let message: Envelope;
    try {
      message = decodeEnvelope(data, this.identity.cluster);
    } catch (error) {
      return this.#drop(error, wireBytes, subject);
    }
    const own = message.incarnation === this.identity.incarnation;
    if (!own) this.stats.countReceived(message.kind, wireBytes);
    return { message, own };
  }

  /** Counts and logs a dropped message; never logs its payload. */
  #drop(error: unknown, bytes: number, subject: string): undefined {
    const reason = error instanceof MalformedMessageError ? error.reason : 'malformed';
    this.stats.countDropped(reason, bytes);
    this.logger.warn({ subject, bytes, reason, error: (error as Error).message.slice(0, 200) }, 'dropped a message');
    return undefined;
  }

  #dispatch(raw: ChannelMessage, handler: (incoming: Incoming) => void): void {
    const decoded = this.decode(raw.data, raw.subject);
    if (decoded instanceof Promise) {
      this.#inbound = this.#inbound.then(async () => this.#deliver(await decoded, raw, handler));
    } else {
      this.#deliver(decoded, raw, handler);
    }
  }

  #deliver(decoded: Decoded | undefined, raw: ChannelMessage, handler: (incoming: Incoming) => void): void {
    if (!decoded || decoded.own) return;
    const { message } = decoded;
    try {
      handler({ message, ...(raw.reply !== undefined ? { reply: raw.reply } : {}) });
    } catch (error) {
      this.stats.countDropped('handler-error', 0);
      this.logger.error(
        { subject: raw.subject, kind: message.kind, from: message.node, error },
        'failed to handle a message',
      );
    }
  }

  #header(kind: MessageKind) {
    return { cluster: this.identity.cluster, node: this.identity.node, kind };
  }

  #encode<K extends MessageKind>(kind: K, body: MessageBody<K>): Uint8Array {
    const { cluster, node, incarnation } = this.identity;
    return encodeEnvelope({ cluster, node, incarnation, kind, body });
  }
}
