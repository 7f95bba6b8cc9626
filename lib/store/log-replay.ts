/** `LogReplayStore`: the snapshot store of a node that has a replication log but no durable snapshots. */
import type { ReplicationLog } from '../log/replication-log.ts';
import type { SessionState } from '../session/state.ts';
import type { LoadProgress, SnapshotItem, SnapshotStore, SnapshotWriteResult } from './snapshot-store.ts';

/**
 * Keeps nothing and reports the log's first retained sequence as its checkpoint, so a joining node
 * replays the whole retained log (24 h by default, longer than a session's timeout) instead of
 * asking a peer that may be frozen or gone (a Lambda function scaled to zero has no peer).
 */
export class LogReplayStore implements SnapshotStore {
  readonly kind = 'log-replay';
  readonly #log: ReplicationLog;

  constructor(log: ReplicationLog) {
    this.#log = log;
  }

  async write(items: readonly SnapshotItem[]): Promise<SnapshotWriteResult> {
    return { written: items.length, superseded: 0 };
  }

  async writeCheckpoint(): Promise<void> {}

  async readCheckpoint(): Promise<number | undefined> {
    return undefined;
  }

  async load(
    onPage: (states: SessionState[]) => void,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<number | undefined> {
    const { first } = await this.#log.bounds();
    onPage([]);
    onProgress?.({ sessions: 0, pages: 1 });
    return Math.max(0, first - 1);
  }
}
