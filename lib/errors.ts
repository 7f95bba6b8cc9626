/** The typed error family: every failure the library reports is one of these. */

/** What a `SessionReplicationError` carries besides its code and message. */
export interface SessionReplicationErrorOptions {
  /** The underlying error. */
  readonly cause?: unknown;
  /** The HTTP status a request failing with this error is answered with (see `errorResponse`). */
  readonly status?: number;
  /** Seconds after which a retry may succeed: the `Retry-After` header of that answer. */
  readonly retryAfter?: number;
}

/**
 * Base class of every error raised by session-replication; `code` is stable for programs to match.
 * Errors a request can fail with also carry the HTTP `status` (and `retryAfter`) it is answered with.
 */
export class SessionReplicationError extends Error {
  /** A stable, machine-readable code such as `SESSION_TOO_LARGE`. */
  readonly code: string;
  /** The HTTP status of the answer to a request that failed with this error, when it maps to one. */
  readonly status?: number;
  /** Seconds a client should wait before retrying (the `Retry-After` header), when a retry may succeed. */
  readonly retryAfter?: number;
  constructor(code: string, message: string, options: SessionReplicationErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    if (options.status !== undefined) this.status = options.status;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }
}

/**
 * The base of the errors that are a code and a message (with an optional cause): a subclass only names its `code`,
 * so each stays an exported class of its own (name, doc comment, `instanceof`) without repeating the constructor.
 */
export abstract class CodedError extends SessionReplicationError {
  /** The code every error of the subclass carries. */
  static readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super((new.target as unknown as typeof CodedError).code, message, options);
  }
}

/** Options given to `createCluster`, the middleware or the CLI are invalid. */
export class InvalidOptionsError extends CodedError {
  static override readonly code = 'INVALID_OPTIONS';
}

/** A session (or one attribute) would exceed `maxSessionBytes`; the middleware answers 413. */
export class SessionTooLargeError extends SessionReplicationError {
  constructor(
    readonly sizeBytes: number,
    readonly limitBytes: number,
  ) {
    super(
      'SESSION_TOO_LARGE',
      `session would be ${sizeBytes} bytes, over the limit of ${limitBytes} bytes (maxSessionBytes)`,
      { status: 413 },
    );
  }
}

/** An attribute value cannot be replicated (a function, a symbol, a class instance, ...). */
export class UnserializableValueError extends SessionReplicationError {
  constructor(name: string, reason: string, options?: { cause?: unknown }) {
    super('UNSERIALIZABLE_VALUE', `attribute "${name}" cannot be replicated: ${reason}`, options);
  }
}

/** A session limit other than its size was hit: attribute count, name length or value nesting depth. */
export class SessionLimitError extends SessionReplicationError {
  constructor(
    readonly limit: 'maxAttributes' | 'maxAttributeNameLength' | 'maxValueDepth',
    message: string,
  ) {
    super('SESSION_LIMIT', message);
  }
}

/** This node holds `maxActiveSessions` sessions already; the middleware answers 503 with Retry-After. */
export class TooManySessionsError extends SessionReplicationError {
  constructor(readonly limit: number) {
    super('TOO_MANY_SESSIONS', `this node holds its maximum of ${limit} sessions (maxActiveSessions)`, {
      status: 503,
      retryAfter: 10,
    });
  }
}

/**
 * This node is draining and does not serve the session a request names (or a new one): the
 * middleware answers 503 with Retry-After, and a load balancer retries on another node.
 */
export class NodeDrainingError extends SessionReplicationError {
  constructor() {
    super('NODE_DRAINING', 'this node is draining: retry on another node', { status: 503, retryAfter: 1 });
  }
}

/**
 * Send mode `persist`: the replication log (JetStream) did not store a request's change, which is
 * only on this node; the middleware answers 503 with Retry-After instead of claiming it was stored.
 */
export class ChangeNotStoredError extends SessionReplicationError {
  constructor() {
    super('CHANGE_NOT_STORED', 'the change could not be stored in the replication log; retry', {
      status: 503,
      retryAfter: 1,
    });
  }
}

/**
 * Send mode `ack`: not every member confirmed a request's change in time, or the node was not
 * connected (then the change was undone here); the middleware answers 503 with Retry-After.
 */
export class ChangeNotConfirmedError extends SessionReplicationError {
  constructor() {
    super('CHANGE_NOT_CONFIRMED', 'not every member confirmed the change; retry', { status: 503, retryAfter: 1 });
  }
}

/**
 * The node was disconnected (or stalled and cut off) for longer than `memberDropMs` and has not
 * caught up: it serves no session from its possibly stale table; the middleware answers 503 with
 * Retry-After, and a load balancer retries on another node.
 */
export class NodeCatchingUpError extends SessionReplicationError {
  constructor() {
    super('NODE_CATCHING_UP', 'this node is catching up after a gap: retry on another node', {
      status: 503,
      retryAfter: 1,
    });
  }
}

/**
 * This node lacks part of the requested session (a delta reached it without the session it changes,
 * after a failed state transfer or a lost message) and no member could give it the whole session
 * yet: it answers 503 with Retry-After rather than serve part of the session or a new one.
 */
export class SessionIncompleteError extends SessionReplicationError {
  constructor() {
    super('SESSION_INCOMPLETE', 'this node does not hold the whole session yet: retry', {
      status: 503,
      retryAfter: 1,
    });
  }
}

/**
 * Read-your-writes: the client presented a newer version of its session than this node holds, and
 * the newer state did not arrive within `readYourWritesWaitMs` (from the member that wrote it, the
 * other members or the log). Nothing was served from the older copy; the middleware answers 503 with
 * Retry-After, and a load balancer retries on another node.
 */
export class SessionBehindError extends SessionReplicationError {
  constructor() {
    super('SESSION_BEHIND', "this node's copy of the session is older than the client's: retry", {
      status: 503,
      retryAfter: 1,
    });
  }
}

/** A session was used after `invalidate()`. */
export class InvalidatedSessionError extends SessionReplicationError {
  constructor() {
    super('SESSION_INVALIDATED', 'the session has been invalidated');
  }
}

/** Why an incoming message was dropped; counted per reason in stats. */
export type DropReason =
  | 'malformed'
  | 'foreign-cluster'
  | 'unsupported-version'
  | 'own-message'
  | 'handler-error'
  | 'unprotected'
  | 'unknown-key'
  | 'unauthenticated';

/** An incoming replication message could not be decoded or does not belong here; it is dropped and counted. */
export class MalformedMessageError extends SessionReplicationError {
  constructor(
    readonly reason: DropReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('MALFORMED_MESSAGE', message, options);
  }
}

/** A request over the channel got no answer in time, or nobody was listening. */
export class ChannelRequestError extends SessionReplicationError {
  constructor(
    readonly kind: 'timeout' | 'no-responders' | 'closed',
    subject: string,
    options?: { cause?: unknown },
  ) {
    super(
      kind === 'timeout' ? 'REQUEST_TIMEOUT' : kind === 'closed' ? 'CHANNEL_CLOSED' : 'NO_RESPONDERS',
      `request on ${subject}: ${kind}`,
      options,
    );
  }
}

/** State transfer from a peer failed; the node starts empty and says so. */
export class StateTransferError extends CodedError {
  static override readonly code = 'STATE_TRANSFER_FAILED';
}

/** An entry point needs an optional peer dependency that is not installed; the message names the package to install. */
export class MissingPeerDependencyError extends SessionReplicationError {
  constructor(
    /** The npm package to install, such as `@nats-io/nats-core`. */
    readonly packageName: string,
    /** What needs it, such as `session-replication/nats`. */
    readonly neededBy: string,
    options?: { cause?: unknown },
  ) {
    super(
      'MISSING_PEER_DEPENDENCY',
      `${neededBy} needs the package "${packageName}", which is not installed: npm install ${packageName}`,
      options,
    );
  }
}

/** A message is larger than the channel (or broker) carries; nothing of it was sent. */
export class MessageTooLargeError extends SessionReplicationError {
  constructor(
    readonly subject: string,
    readonly sizeBytes: number,
    readonly limitBytes: number,
    what = 'message',
  ) {
    super('MESSAGE_TOO_LARGE', `${what} on ${subject} is ${sizeBytes} bytes, over the limit of ${limitBytes} bytes`);
  }
}

/** The broker refused to set up what a channel needs (topic, queue, subscription); `cause` holds its answer. */
export class BrokerSetupError extends CodedError {
  static override readonly code = 'BROKER_SETUP_FAILED';
}

/**
 * The replication log already holds a different message under this message id (within its
 * duplicate window), so this one was not stored; persist mode answers 503.
 */
export class DuplicateMessageIdError extends SessionReplicationError {
  constructor(
    readonly log: string,
    readonly msgId: string,
    readonly storedSeq: number,
  ) {
    super(
      'LOG_DUPLICATE_MESSAGE_ID',
      `${log}: message id ${msgId} already names another message (sequence ${storedSeq}); not stored`,
    );
  }
}

/**
 * Some snapshot items could not be written now (the store is unreachable, throttling outlasted the
 * retries, or it refused); `done` tells what the same call did write, `unwritten` which keys to retry.
 */
export class SnapshotWriteError extends SessionReplicationError {
  constructor(
    message: string,
    readonly done: { written: number; superseded: number; rejected?: Array<{ key: string; reason: string }> },
    readonly unwritten: readonly string[],
    options?: { cause?: unknown },
  ) {
    super('SNAPSHOT_WRITE_FAILED', message, options);
  }
}

/** A runtime adapter was loaded on another runtime (`session-replication/deno` outside Deno, ...). */
export class UnsupportedRuntimeError extends SessionReplicationError {
  constructor(
    /** The entry point, such as `session-replication/deno`. */
    readonly entry: string,
    /** The runtime it needs, such as `Deno`. */
    readonly runtime: string,
  ) {
    super('UNSUPPORTED_RUNTIME', `${entry} runs on ${runtime} only (its ${runtime} API is missing here)`);
  }
}

/** A value given to `set()` does not match the Standard Schema configured for its attribute (`schema`). */
export class InvalidSessionValueError extends SessionReplicationError {
  constructor(
    readonly attribute: string,
    readonly issues: readonly string[],
  ) {
    super('INVALID_SESSION_VALUE', `attribute "${attribute}" does not match its schema: ${issues.join('; ')}`);
  }
}
