/**
 * Session events, local and replicated (the Servlet session and attribute listeners, with Tomcat's
 * `notifyListenersOnReplication`): what a node's session table saw change, and the typed listeners
 * that hear it. A listener that throws is logged and counted; it never breaks replication.
 */
import { InvalidOptionsError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { EndReason, SessionState } from './state.ts';

/** Where a change happened: on this node (a request or its sweep), or on another node (it arrived by replication). */
export type EventOrigin = 'local' | 'remote';

/** A session came into existence. */
export interface SessionCreatedEvent {
  readonly type: 'created';
  readonly key: string;
  readonly origin: EventOrigin;
  /** The node where it happened. */
  readonly node: string;
}

/** A session ended: `invalidate()`, idle or lifetime expiry, the old key of `regenerateId()`, or `endSessionsOf()`. */
export interface SessionEndedEvent {
  readonly type: 'ended';
  readonly key: string;
  readonly origin: EventOrigin;
  readonly node: string;
  readonly reason: EndReason;
}

/** An attribute was set (`removed: false`) or removed. */
export interface AttributeChangedEvent {
  readonly type: 'attribute';
  readonly key: string;
  readonly origin: EventOrigin;
  readonly node: string;
  readonly name: string;
  readonly removed: boolean;
}

/** Every session event. */
export type SessionEvent = SessionCreatedEvent | SessionEndedEvent | AttributeChangedEvent;

/** The event of each type. */
export interface SessionEventMap {
  created: SessionCreatedEvent;
  ended: SessionEndedEvent;
  attribute: AttributeChangedEvent;
}

/** How a listener is registered. */
export interface ListenerOptions {
  /** Also hear changes that arrive from other nodes (`origin: 'remote'`), not only this node's own. @default false */
  readonly replicated?: boolean;
}

/**
 * What a session table reports as it merges: each change with the node that made it (the writer
 * recorded in the change's stamp). `removed` is a session whose data this node stopped holding.
 */
export interface SessionObserver {
  created(state: SessionState, author: string): void;
  attribute(state: SessionState, name: string, removed: boolean, author: string): void;
  ended(state: SessionState, author: string): void;
  removed(key: string): void;
}

type Listener<T extends keyof SessionEventMap> = (event: SessionEventMap[T]) => void;

/** The listeners of one node; `origin` is decided against this node's id. */
export class SessionEvents {
  readonly #listeners: { [T in keyof SessionEventMap]: Array<{ listener: Listener<T>; replicated: boolean }> } = {
    created: [],
    ended: [],
    attribute: [],
  };

  /** `onListenerError` counts each listener call that threw (the cluster's `stats.listenerErrors`). */
  constructor(
    readonly node: string,
    readonly logger: Logger,
    readonly onListenerError: () => void,
  ) {}

  /** Adds a listener for one event type; returns a function that removes it. Throws `InvalidOptionsError` for an unknown type or a listener that is not a function. */
  on<T extends keyof SessionEventMap>(type: T, listener: Listener<T>, options: ListenerOptions = {}): () => void {
    if (!Object.hasOwn(this.#listeners, type))
      throw new InvalidOptionsError(`unknown session event "${String(type)}": created, ended or attribute`);
    if (typeof listener !== 'function') throw new InvalidOptionsError('a session listener must be a function');
    const entry = { listener, replicated: options.replicated ?? false };
    const list = this.#listeners[type] as Array<typeof entry>;
    list.push(entry);
    return () => {
      const at = list.indexOf(entry);
      if (at >= 0) list.splice(at, 1);
    };
  }

  /** Whether anyone listens (a table skips the work of finding changes when no one does). */
  get listening(): boolean {
    return this.#listeners.created.length + this.#listeners.ended.length + this.#listeners.attribute.length > 0;
  }

  /** The observer a session table reports to. */
  observer(): SessionObserver {
    const origin = (author: string): EventOrigin => (author === this.node ? 'local' : 'remote');
    return {
      created: (state, author) =>
        this.#emit('created', { type: 'created', key: state.key, origin: origin(author), node: author }),
      attribute: (state, name, removed, author) =>
        this.#emit('attribute', {
          type: 'attribute',
          key: state.key,
          origin: origin(author),
          node: author,
          name,
          removed,
        }),
      ended: (state, author) => {
        if (state.ended)
          this.#emit('ended', {
            type: 'ended',
            key: state.key,
            origin: origin(author),
            node: author,
            reason: state.ended.reason,
          });
      },
      removed: () => undefined,
    };
  }

  #emit<T extends keyof SessionEventMap>(type: T, event: SessionEventMap[T]): void {
    for (const { listener, replicated } of this.#listeners[type] as Array<{
      listener: Listener<T>;
      replicated: boolean;
    }>) {
      if (event.origin === 'remote' && !replicated) continue;
      try {
        listener(event);
      } catch (error) {
        this.onListenerError();
        this.logger.error(
          { event: type, session: event.key.slice(0, 8), error: (error as Error).message },
          'a session listener threw',
        );
      }
    }
  }
}

/** One observer that reports to several. */
export function observeAll(observers: SessionObserver[]): SessionObserver {
  return {
    created: (state, author) => {
      for (const o of observers) o.created(state, author);
    },
    attribute: (state, name, removed, author) => {
      for (const o of observers) o.attribute(state, name, removed, author);
    },
    ended: (state, author) => {
      for (const o of observers) o.ended(state, author);
    },
    removed: (key) => {
      for (const o of observers) o.removed(key);
    },
  };
}
