/**
 * `ClusterBus`: one cluster's subjects on a channel. It encodes what this node sends, decodes and
 * validates what arrives, ignores this node's own messages, and drops (and counts) everything
 * malformed or foreign, so no handler ever sees a bad message and no bad message ends a subscription.
 */
import type { Channel, ChannelMessage, ChannelSubscription } from '../channel/channel.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope, type MessageBody, type MessageKind } from '../codec/envelope.ts';
import { MalformedMessageError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ReplicationStats } from '../stats.ts';

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

  constructor(
    readonly channel: Channel,
    readonly identity: BusIdentity,
    prefix: string,
    private readonly stats: ReplicationStats,
    private readonly logger: Logger,
  ) {
    this.subjects = new ClusterSubjects(prefix, identity.cluster);
  }

  /** Publishes a message; with `reply`, receivers answer to that subject. */
  send<K extends MessageKind>(subject: string, kind: K, body: MessageBody<K>, reply?: string): void {
    const data = this.#encode(kind, body);
    this.channel.publish(subject, data, reply !== undefined ? { reply } : undefined);
    this.stats.countSent(kind, data.byteLength);
  }

  /** Sends a request and decodes the first reply. Rejects with `ChannelRequestError` or `MalformedMessageError`. */
  async request<K extends MessageKind>(subject: string, kind: K, body: MessageBody<K>, timeoutMs: number): Promise<Envelope> {
    const data = this.#encode(kind, body);
    this.stats.countSent(kind, data.byteLength);
    const reply = await this.channel.request(subject, data, { timeoutMs });
    const message = decodeEnvelope(reply, this.identity.cluster);
    this.stats.countReceived(message.kind, reply.byteLength);
    return message;
  }

  /**
   * Subscribes to a subject. The handler gets only valid messages of this cluster from other
   * processes; anything else is dropped and counted by reason.
   */
  listen(subject: string, handler: (incoming: Incoming) => void, options?: { queue?: string }): ChannelSubscription {
    return this.channel.subscribe(subject, (raw) => this.#dispatch(raw, handler), options);
  }

  /**
   * Decodes one raw message: undefined (dropped and counted) when it is malformed or foreign;
   * `own` tells this process's own messages (which `listen` handlers never see).
   */
  decode(data: Uint8Array, subject: string): { message: Envelope; own: boolean } | undefined {
    let message: Envelope;
    try {
      message = decodeEnvelope(data, this.identity.cluster);
    } catch (error) {
      const reason = error instanceof MalformedMessageError ? error.reason : 'malformed';
      this.stats.countDropped(reason, data.byteLength);
      this.logger.warn({ subject, bytes: data.byteLength, reason, error: (error as Error).message.slice(0, 200) }, 'dropped a message');
      return undefined;
    }
    const own = message.incarnation === this.identity.incarnation;
    if (!own) this.stats.countReceived(message.kind, data.byteLength);
    return { message, own };
  }

  /** Encodes a message without sending it (for the replication log), counting it as sent. */
  encode<K extends MessageKind>(kind: K, body: MessageBody<K>): Uint8Array {
    const data = this.#encode(kind, body);
    this.stats.countSent(kind, data.byteLength);
    return data;
  }

  #dispatch(raw: ChannelMessage, handler: (incoming: Incoming) => void): void {
    const decoded = this.decode(raw.data, raw.subject);
    if (!decoded || decoded.own) return;
    const { message } = decoded;
    try {
      handler({ message, ...(raw.reply !== undefined ? { reply: raw.reply } : {}) });
    } catch (error) {
      this.stats.countDropped('handler-error', 0);
      this.logger.error({ subject: raw.subject, kind: message.kind, from: message.node, error }, 'failed to handle a message');
    }
  }

  #encode<K extends MessageKind>(kind: K, body: MessageBody<K>): Uint8Array {
    const { cluster, node, incarnation } = this.identity;
    return encodeEnvelope({ cluster, node, incarnation, kind, body });
  }
}
