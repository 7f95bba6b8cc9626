/**
 * The options of `createCluster`, their validation, and every default: `resolveOptions()` is the one
 * place a default is decided, including those computed from other options.
 *
 * Over 400 lines on purpose: the documented interface, the schema checked against it and the resolver
 * stay in one file so an option's doc comment, its validation and its default are read together.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { z } from 'zod';
import type { Channel } from '../channel/channel.ts';
import type { ReplicationLog } from '../log/replication-log.ts';
import { checkClusterKeys, type ClusterKeyConfig, type ProtectionMode } from '../codec/protection.ts';
import { InvalidOptionsError } from '../errors.ts';
import { consoleLogger, type Logger } from '../logger.ts';
import type { SendMode } from '../managers/manager.ts';
import type { PageLimits } from '../managers/state-transfer.ts';
import { TOKEN_PATTERN } from '../session/ids.ts';
import type { SessionSchema } from '../session/schema.ts';
import type { SnapshotStore } from '../store/snapshot-store.ts';
import type { SnapshotWriterOptions } from '../store/snapshot-writer.ts';

/** Options of `createCluster`; only `cluster` is required. */
export interface ClusterOptions {
  /**
   * The cluster name: nodes with the same name (and `subjectPrefix`) on one broker form a cluster,
   * like Tomcat's multicast group. 1-64 characters of `A-Z a-z 0-9 _ -`.
   */
  readonly cluster: string;
  /**
   * This node's id, unique in the cluster: also the route in the session cookie
   * (`SESSIONID=<key>.<node>`) that sticky load balancers follow. 1-64 characters of `A-Z a-z 0-9 _ -`.
   * @default the first 8 characters of a random UUID
   */
  readonly node?: string;
  /**
   * The transport between nodes: a `NatsChannel` (`session-replication/nats`), a `SnsSqsChannel`
   * (`session-replication/sns-sqs`) or a `MemoryChannel`. A channel passed here belongs to the caller:
   * `stop()` leaves it open.
   * @default a `MemoryChannel` on the process-wide in-memory bus, closed by `stop()`
   */
  readonly channel?: Channel;
  /**
   * First tokens of every subject: subjects are `<subjectPrefix>.<cluster>.<kind>[.<node>]`.
   * Dot-separated tokens of `A-Z a-z 0-9 _ -`.
   * @default 'sessrep'
   */
  readonly subjectPrefix?: string;
  /**
   * The replication strategy: `delta` (all-to-all, every node holds every session) or `backup`
   * (each session on a primary and one backup, proxies elsewhere).
   * @default 'delta'
   */
  readonly manager?: 'delta' | 'backup';
  /**
   * When a request's answer is sent: `async` at once; `ack` after every replica applied the change
   * (or `ackTimeoutMs`); `persist` after the replication log stored it (503 with Retry-After when it
   * could not). `persist` needs `log`.
   * @default 'async'
   */
  readonly sendMode?: SendMode;
  /**
   * How long an `ack` commit waits for every member; then it logs a warning and counts
   * `stats.acksTimedOut`. Milliseconds.
   * @default 5000
   */
  readonly ackTimeoutMs?: number;
  /**
   * Heartbeat period (Tomcat's `frequency`). Milliseconds.
   * @default 500
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * Silence after which a member is pinged and, without an answer, dropped (Tomcat's `dropTime`).
   * Must be longer than `heartbeatIntervalMs`. Milliseconds.
   * @default 3000
   */
  readonly memberDropMs?: number;
  /**
   * How long the ping to a silent member waits. Milliseconds.
   * @default 1000
   */
  readonly pingTimeoutMs?: number;
  /**
   * How often a node pings its successor in the ring of members, so that a killed member (its subject
   * left without responder by the broker) is noticed without traffic. 0 turns it off. Milliseconds.
   * @default 40, or 0 on the SNS/SQS channel (where a ping is an SQS message)
   */
  readonly probeIntervalMs?: number;
  /**
   * How long a member's subject must find no responder before it is declared dead: a client that
   * reconnects within it (a link reset, a lost server of a NATS cluster) stays a member. Milliseconds.
   * @default 1000
   */
  readonly reconnectGraceMs?: number;
  /**
   * How long a node waits for a member to hand a session over: a backup-manager proxy taking a session
   * over, a delta-manager node that lacks part of a session (see `SessionIncompleteError`). Milliseconds.
   * @default 5000
   */
  readonly fetchTimeoutMs?: number;
  /**
   * A joining node's budget for fetching every session from a peer; then it starts with what
   * arrived, with a warning. 0 skips the transfer. Milliseconds.
   * @default 60000
   */
  readonly stateTransferTimeoutMs?: number;
  /**
   * The session timeout for new sessions, in seconds (each session can change its own through
   * `maxInactiveInterval`); 0 or less never expires.
   * @default 1800
   */
  readonly maxInactiveSeconds?: number;
  /**
   * Absolute lifetime of new sessions from creation, in seconds, enforced on every node beside the
   * idle timeout (each session can change its own through `maxLifetime`); 0: none.
   * @default 0
   */
  readonly maxLifetimeSeconds?: number;
  /**
   * Standard Schemas (zod, valibot, arktype) per attribute name: a value is checked at `set()`
   * (`InvalidSessionValueError`), and a change arriving from another node that does not match is applied,
   * logged and counted (`stats.schemaDrift`).
   * @default none
   */
  readonly schema?: SessionSchema;
  /**
   * The attribute `session.setPrincipal()` writes and the principal index (`findByPrincipal`,
   * `endSessionsOf`) reads.
   * @default 'principal'
   */
  readonly principalAttribute?: string;
  /**
   * Period of the expiry sweep. Milliseconds.
   * @default 10000
   */
  readonly sweepIntervalMs?: number;
  /**
   * Least time between two replicated keep-alive touches of a session that was read but not
   * changed (a session that expires sooner is touched at least every tenth of its timeout, and no
   * more often than every second). Milliseconds.
   * @default a tenth of `maxInactiveSeconds`, between 1000 and 60000
   */
  readonly touchIntervalMs?: number;
  /**
   * How long ended sessions are remembered as tombstones at least, so late messages cannot bring them
   * back; a tombstone also lives until no copy of the session could still be live (twice its timeout
   * after its last access plus two touch intervals, or its lifetime's end). Milliseconds.
   * @default 600000
   */
  readonly tombstoneTtlMs?: number;
  /**
   * Largest session, in bytes: a request that would make its session larger gets
   * `SessionTooLargeError` at `set()`, is answered 413 and replicates nothing. With a `store`, at
   * most 389120 (a DynamoDB item is limited to 400 KB).
   * @default 1 MiB, or 350 KiB with a `store`; at most the channel's max payload less 64 KiB
   */
  readonly maxSessionBytes?: number;
  /**
   * The replication log (JetStream, `session-replication/jetstream`): joining, restarted and thawed
   * nodes replay it instead of asking a peer, and `sendMode: 'persist'` waits for it. Delta manager only.
   * @default none: catch-up from a live peer only
   */
  readonly log?: ReplicationLog;
  /**
   * The snapshot store (DynamoDB, `session-replication/dynamodb`): a joining node loads the sessions
   * from it and replays the `log` from its checkpoint. Needs `log`.
   * @default none
   */
  readonly store?: SnapshotStore;
  /**
   * How often the snapshot leader writes changed sessions to the `store`. Milliseconds.
   * @default 1000
   */
  readonly snapshotIntervalMs?: number;
  /**
   * New sessions are refused with 503 and Retry-After while this node holds this many sessions
   * (Tomcat's `maxActiveSessions`); 0 or less is unlimited.
   * @default -1
   */
  readonly maxActiveSessions?: number;
  /**
   * Most attributes in one session; more throw `SessionLimitError` at `set()`.
   * @default 1000
   */
  readonly maxAttributes?: number;
  /**
   * Longest attribute name, in characters (at most 1024); longer throw `SessionLimitError`.
   * @default 256
   */
  readonly maxAttributeNameLength?: number;
  /**
   * Deepest nesting of an attribute value (at most 1000); deeper throw `SessionLimitError`.
   * @default 32
   */
  readonly maxValueDepth?: number;
  /**
   * 256-bit keys, newest first: every message is protected with the first and accepted under any,
   * so keys can be rotated without downtime. Without keys, messages are neither signed nor encrypted.
   * @default none
   */
  readonly clusterKeys?: readonly ClusterKeyConfig[];
  /**
   * With `clusterKeys`: `encrypt` (AES-256-GCM) or `sign` (HMAC-SHA256, readable on the broker).
   * @default 'encrypt'
   */
  readonly protection?: ProtectionMode;
  /**
   * Read-your-writes on any node, without a sticky load balancer: every response that carries a
   * session tells the client its session's version (the cookie `<cookieName>_v`), and a node whose
   * copy is older than the version a client presents (or that has none) asks the member that wrote
   * it, the other members and the log for the newer state, for at most this long; then it answers 503
   * with Retry-After, never 200 with the older copy. 0 turns read-your-writes off (no version cookie,
   * no wait). Milliseconds.
   * @default 2000
   */
  readonly readYourWritesWaitMs?: number;
  /**
   * Keys that sign the session version cookie (HMAC-SHA256 with a key derived from each; the first
   * signs, any verifies), so nobody outside the cluster can forge or move a version. Without them (and
   * without `clusterKeys`) a version is bound to its session key only: a client that holds the key
   * could forge its own session's version, which only makes its own requests wait.
   * @default `clusterKeys`
   */
  readonly versionCookieKeys?: readonly ClusterKeyConfig[];
  /**
   * This node's HTTP base URL (`http://` or `https://`), announced in heartbeats and shown on
   * `/cluster`, so a dashboard can poll every member.
   * @default none
   */
  readonly advertiseUrl?: string;
  /**
   * Draining: how long no session request may arrive before the node reports `drained` (the load
   * balancer stopped routing here). Milliseconds.
   * @default 1000
   */
  readonly drainQuietMs?: number;
  /**
   * Where the node logs: any pino-compatible logger. Lines carry `cluster` and `node`, and
   * replication lines `session` (a key prefix) and `route`.
   * @default `consoleLogger()`: the console, level `warn`
   */
  readonly logger?: Logger;
}

/** Options with every default applied and every computed default derived: what `wireNode` builds a node from. */
export interface ResolvedOptions {
  readonly cluster: string;
  readonly node: string;
  /** Undefined: the node creates (and owns) an in-process `MemoryChannel`. */
  readonly channel: Channel | undefined;
  readonly subjectPrefix: string;
  readonly manager: 'delta' | 'backup';
  readonly sendMode: SendMode;
  readonly ackTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly memberDropMs: number;
  readonly pingTimeoutMs: number;
  readonly probeIntervalMs: number;
  readonly reconnectGraceMs: number;
  readonly fetchTimeoutMs: number;
  readonly stateTransferTimeoutMs: number;
  readonly maxInactiveSeconds: number;
  readonly maxLifetimeSeconds: number;
  readonly schema: SessionSchema | undefined;
  readonly principalAttribute: string;
  readonly sweepIntervalMs: number;
  readonly touchIntervalMs: number;
  readonly tombstoneTtlMs: number;
  readonly maxSessionBytes: number;
  readonly log: ReplicationLog | undefined;
  readonly store: SnapshotStore | undefined;
  /** Write-behind timing of the snapshot store: `snapshotIntervalMs` and the derived checkpoint poll. */
  readonly snapshot: SnapshotWriterOptions;
  /** How much one state transfer page carries (the backup manager's entries are small, so more per page). */
  readonly pageLimits: PageLimits;
  readonly maxActiveSessions: number;
  readonly maxAttributes: number;
  readonly maxAttributeNameLength: number;
  readonly maxValueDepth: number;
  readonly clusterKeys: readonly ClusterKeyConfig[] | undefined;
  readonly protection: ProtectionMode;
  readonly readYourWritesWaitMs: number;
  /** The keys of the session version cookie: `versionCookieKeys`, else `clusterKeys`, else none. */
  readonly versionCookieKeys: readonly ClusterKeyConfig[] | undefined;
  readonly advertiseUrl: string | undefined;
  readonly drainQuietMs: number;
  readonly logger: Logger;
}

/** Default session size limit: 1 MiB, or 350 KiB with a snapshot store so every session fits one DynamoDB item. */
const DEFAULT_SESSION_BYTES = 1024 * 1024;
const DEFAULT_STORED_SESSION_BYTES = 350 * 1024;
/** Largest `maxSessionBytes` allowed with a snapshot store (DynamoDB's item limit less the item's keys and fields). */
const MAX_STORED_SESSION_BYTES = 380 * 1024;
/** Room a replication message needs besides the session's attributes (envelope, keys, stamps). */
export const PAYLOAD_OVERHEAD_BYTES: number = 64 * 1024;
/** State transfer pages stay well under NATS's default 1 MB max payload. */
const DELTA_PAGE_LIMITS: PageLimits = { maxSessions: 1000, maxBytes: 512 * 1024 };
/** Ownership entries are small: the backup manager sends more of them per page. */
const BACKUP_PAGE_LIMITS: PageLimits = { maxSessions: 5000, maxBytes: 512 * 1024 };

const token = (what: string) => z.string().regex(TOKEN_PATTERN, `${what} must be 1-64 characters of A-Z a-z 0-9 _ -`);
const ms = (fallback: number) => z.number().int().positive().default(fallback);
const implementing = <T>(what: string, members: string[]) =>
  z.custom<T>(
    (value) => typeof value === 'object' && value !== null && members.every((member) => member in value),
    `${what} must have ${members.join('/')}`,
  );

/** Validates `ClusterOptions` and fills in the plain defaults; the derived ones come in `resolveOptions`. */
const optionsSchema = z
  .object({
    cluster: token('cluster'),
    node: token('node').optional(),
    channel: implementing<Channel>('channel', ['publish', 'subscribe']).optional(),
    subjectPrefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'subjectPrefix must be dot-separated tokens of A-Z a-z 0-9 _ -')
      .default('sessrep'),
    manager: z.enum(['delta', 'backup']).default('delta'),
    sendMode: z.enum(['async', 'ack', 'persist']).default('async'),
    ackTimeoutMs: ms(5000),
    heartbeatIntervalMs: ms(500),
    memberDropMs: ms(3000),
    pingTimeoutMs: ms(1000),
    probeIntervalMs: z.number().int().nonnegative().optional(),
    reconnectGraceMs: ms(1000),
    fetchTimeoutMs: ms(5000),
    stateTransferTimeoutMs: z.number().int().nonnegative().default(60_000),
    maxInactiveSeconds: z.number().int().default(1800),
    maxLifetimeSeconds: z.number().int().nonnegative().default(0),
    schema: z
      .record(
        z.string(),
        z.custom<StandardSchemaV1>(
          (value) => typeof value === 'object' && value !== null && '~standard' in value,
          'schema entries must be Standard Schemas',
        ),
      )
      .optional(),
    principalAttribute: z.string().min(1).max(256).default('principal'),
    sweepIntervalMs: ms(10_000),
    touchIntervalMs: z.number().int().positive().optional(),
    tombstoneTtlMs: ms(600_000),
    maxSessionBytes: z.number().int().positive().optional(),
    log: implementing<ReplicationLog>('log', ['append', 'follow']).optional(),
    store: implementing<SnapshotStore>('store', ['load', 'write']).optional(),
    snapshotIntervalMs: ms(1000),
    maxActiveSessions: z.number().int().default(-1),
    maxAttributes: z.number().int().positive().default(1000),
    maxAttributeNameLength: z.number().int().positive().max(1024).default(256),
    maxValueDepth: z.number().int().positive().max(1000).default(32),
    clusterKeys: z
      .array(z.object({ id: z.string(), secret: z.string() }))
      .min(1)
      .readonly()
      .optional(),
    protection: z.enum(['encrypt', 'sign']).default('encrypt'),
    readYourWritesWaitMs: z.number().int().nonnegative().default(2000),
    versionCookieKeys: z
      .array(z.object({ id: z.string(), secret: z.string() }))
      .min(1)
      .readonly()
      .optional(),
    advertiseUrl: z
      .string()
      .max(512)
      .regex(/^https?:\/\/\S+$/, 'advertiseUrl must be an http(s) URL')
      .optional(),
    drainQuietMs: z.number().int().nonnegative().default(1000),
    logger: implementing<Logger>('logger', ['debug', 'info', 'warn', 'error', 'child']).optional(),
  })
  .strict()
  .refine((o) => o.memberDropMs > o.heartbeatIntervalMs, {
    message: 'memberDropMs must be longer than heartbeatIntervalMs',
    path: ['memberDropMs'],
  })
  .refine((o) => o.sendMode !== 'persist' || o.log !== undefined, {
    message: 'sendMode persist needs a replication log (JetStream): pass `log`',
    path: ['sendMode'],
  })
  .refine((o) => o.store === undefined || o.log !== undefined, {
    message: 'a snapshot store needs a replication log (JetStream) to replay from: pass `log`',
    path: ['store'],
  })
  .refine((o) => o.manager === 'delta' || o.log === undefined, {
    message: 'the replication log and snapshot store work with the delta manager only',
    path: ['log'],
  })
  .refine(
    (o) => o.store === undefined || o.maxSessionBytes === undefined || o.maxSessionBytes <= MAX_STORED_SESSION_BYTES,
    {
      message: `with a snapshot store, maxSessionBytes must be at most ${MAX_STORED_SESSION_BYTES} (DynamoDB items are limited to 400 KB)`,
      path: ['maxSessionBytes'],
    },
  ) satisfies z.ZodType<unknown, ClusterOptions>;

/** Compile-time check, with the `satisfies` above: the schema and `ClusterOptions` name the same options. */
type OptionNamesDiffer =
  | Exclude<keyof z.input<typeof optionsSchema>, keyof ClusterOptions>
  | Exclude<keyof ClusterOptions, keyof z.input<typeof optionsSchema>>;
type Holds<T extends true> = T;
// biome-ignore lint/correctness/noUnusedVariables: a compile-time assertion, checked by tsc where it is declared.
type OptionNamesMatch = Holds<[OptionNamesDiffer] extends [never] ? true : false>;

/**
 * Validates options and derives every default. Throws `InvalidOptionsError` naming every bad option
 * (and for malformed `clusterKeys`).
 */
export function resolveOptions(options: ClusterOptions): ResolvedOptions {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new InvalidOptionsError(`invalid options: ${z.prettifyError(parsed.error).replaceAll('\n', '; ')}`);
  const o = parsed.data;
  if (o.clusterKeys) checkClusterKeys(o.clusterKeys);
  if (o.versionCookieKeys) checkClusterKeys(o.versionCookieKeys);
  // The default fits one broker message (NATS's default max payload is 1 MB) and one DynamoDB item.
  const maxPayload = o.channel?.maxPayload;
  const fitsPayload = maxPayload === undefined ? Infinity : maxPayload - PAYLOAD_OVERHEAD_BYTES;
  const sessionBytes = o.store ? DEFAULT_STORED_SESSION_BYTES : DEFAULT_SESSION_BYTES;
  return {
    ...o,
    node: o.node ?? crypto.randomUUID().slice(0, 8),
    probeIntervalMs: o.probeIntervalMs ?? (o.channel?.kind === 'sns-sqs' ? 0 : 40),
    channel: o.channel,
    touchIntervalMs:
      o.touchIntervalMs ?? Math.min(60_000, Math.max(1000, Math.floor((o.maxInactiveSeconds * 1000) / 10))),
    maxSessionBytes: o.maxSessionBytes ?? Math.min(sessionBytes, fitsPayload),
    log: o.log,
    store: o.store,
    snapshot: { intervalMs: o.snapshotIntervalMs, checkpointPollMs: Math.max(5000, o.snapshotIntervalMs * 5) },
    pageLimits: o.manager === 'backup' ? BACKUP_PAGE_LIMITS : DELTA_PAGE_LIMITS,
    clusterKeys: o.clusterKeys,
    versionCookieKeys: o.versionCookieKeys ?? o.clusterKeys,
    schema: o.schema,
    advertiseUrl: o.advertiseUrl,
    logger: o.logger ?? consoleLogger(),
  };
}
