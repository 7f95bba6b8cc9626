/** `NatsChannel`: the `Channel` over a NATS connection made by the caller (TCP on Node, WebSocket on edge). */
import { errors, type NatsConnection } from '@nats-io/nats-core';
import { ChannelRequestError } from '../errors.ts';
import type { Channel, ChannelStatus, ChannelSubscription, MessageHandler, SubscribeOptions } from './channel.ts';
import { assertPublishSubject } from './subjects.ts';

/**
 * The connection policy every node uses, over TCP or WebSocket: wait for the first connect and then
 * retry forever with jittered backoff, and never receive its own publishes (a node skips them anyway;
 * not sending them back saves a decode per message).
 */
export const NODE_CONNECTION_DEFAULTS = {
  waitOnFirstConnect: true,
  maxReconnectAttempts: -1,
  reconnectTimeWait: 500,
  reconnectJitter: 250,
  noEcho: true,
} as const;

/**
 * Wraps a connected `NatsConnection`. The connection's own reconnect logic (with backoff) keeps it
 * alive; status changes are reported through `onStatus`. Closing the channel closes the connection.
 */
export class NatsChannel implements Channel {
  readonly kind = 'nats';
  readonly ordered: boolean = true;
  readonly #listeners: Array<(status: ChannelStatus, detail?: string) => void> = [];

  constructor(readonly connection: NatsConnection) {
    void this.#watchStatus();
  }

  get maxPayload(): number | undefined {
    return this.connection.info?.max_payload;
  }

  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void {
    assertPublishSubject(subject);
    try {
      this.connection.publish(subject, data, options?.reply !== undefined ? { reply: options.reply } : undefined);
    } catch (cause) {
      throw this.#translate(cause, subject);
    }
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription {
    try {
      return this.#subscribe(subject, handler, options);
    } catch (cause) {
      // Like publish and request: a closed connection fails with ChannelRequestError kind `closed`.
      throw this.#translate(cause, subject);
    }
  }

  #subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): ChannelSubscription {
    const subscription = this.connection.subscribe(subject, {
      ...(options?.queue !== undefined ? { queue: options.queue } : {}),
      callback: (error, message) => {
        if (error) {
          this.#emit('error', `subscription to ${subject} failed: ${error.message}`);
          return;
        }
        try {
          handler({ subject: message.subject, data: message.data, ...(message.reply ? { reply: message.reply } : {}) });
        } catch {
          // A handler error must never end the subscription.
        }
      },
    });
    return { unsubscribe: () => subscription.unsubscribe() };
  }

  async request(subject: string, data: Uint8Array, options: { timeoutMs: number }): Promise<Uint8Array> {
    assertPublishSubject(subject);
    try {
      const reply = await this.connection.request(subject, data, { timeout: options.timeoutMs });
      return reply.data;
    } catch (cause) {
      throw this.#translate(cause, subject);
    }
  }

  async flush(): Promise<void> {
    await this.connection.flush();
  }

  /** A PING written right behind the pending publishes (one socket write), resolved by the server's PONG. */
  async sync(): Promise<void> {
    try {
      await this.connection.flush();
    } catch (cause) {
      throw this.#translate(cause, 'sync');
    }
  }

  /** A PING to the server and its PONG (`flush` on the connection). */
  async ping(): Promise<void> {
    await this.connection.flush();
  }

  onStatus(listener: (status: ChannelStatus, detail?: string) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.connection.isClosed()) await this.connection.drain().catch(() => this.connection.close());
  }

  #translate(cause: unknown, subject: string): Error {
    if (cause instanceof errors.RequestError && cause.isNoResponders())
      return new ChannelRequestError('no-responders', subject, { cause });
    if (cause instanceof errors.NoRespondersError) return new ChannelRequestError('no-responders', subject, { cause });
    if (
      cause instanceof errors.TimeoutError ||
      (cause instanceof errors.RequestError && cause.cause instanceof errors.TimeoutError)
    ) {
      return new ChannelRequestError('timeout', subject, { cause });
    }
    if (
      cause instanceof errors.ClosedConnectionError ||
      cause instanceof errors.DrainingConnectionError ||
      endedByClose(cause)
    )
      return new ChannelRequestError('closed', subject, { cause });
    return cause instanceof Error ? cause : new Error(String(cause));
  }

  #emit(status: ChannelStatus, detail?: string): void {
    for (const listener of this.#listeners) listener(status, detail);
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.connection.status()) {
      if (status.type === 'disconnect') this.#emit('disconnected', String(status.server));
      else if (status.type === 'reconnecting') this.#emit('reconnecting');
      else if (status.type === 'reconnect') this.#emit('connected', String(status.server));
      else if (status.type === 'error') this.#emit('error', describeServerError(status.error));
      else if (status.type === 'close') this.#emit('closed');
    }
  }
}

/**
 * Whether a request failed because the connection closed while it was in flight: nats.js rejects those
 * with a `RequestError` "connection closed" (wrapping one with the same message), and marks them no other way.
 */
function endedByClose(cause: unknown): boolean {
  for (let error = cause; error instanceof errors.RequestError; error = error.cause)
    if (error.message === 'connection closed') return true;
  return false;
}

/** A one-line account of a server error, naming the subject for permission violations. */
function describeServerError(error: Error): string {
  if (error instanceof errors.PermissionViolationError) {
    return `NATS permission violation: ${error.operation} on "${error.subject}"${error.queue ? ` (queue ${error.queue})` : ''} is not allowed for this user`;
  }
  return error.message;
}
