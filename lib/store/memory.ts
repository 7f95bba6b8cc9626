/** `MemorySnapshotStore`: the snapshot contract in one process's memory (tests, single-process clusters). */
import { cloneState, type SessionState } from '../session/state.ts';
import type { LoadProgress, SnapshotItem, SnapshotStore, SnapshotWriteResult } from './snapshot-store.ts';

/** Keeps items in a Map; same version rules as the DynamoDB store, ends kept as tombstones. */
export class MemorySnapshotStore implements SnapshotStore {
  readonly kind = 'memory';
  readonly #items = new Map<string, { state: SessionState; version: number; expiresAt?: number }>();
  #checkpoint: number | undefined;

  async write(items: readonly SnapshotItem[]): Promise<SnapshotWriteResult> {
    const result: SnapshotWriteResult = { written: 0, superseded: 0 };
    for (const { state, version, expiresAt } of items) {
      const current = this.#items.get(state.key);
      // An end replaces any state not newer than it; a live state never replaces an end.
      if (current && (current.version > version || (current.state.ended && !state.ended))) {
        result.superseded++;
        continue;
      }
      this.#items.set(state.key, {
        state: cloneState(state),
        version,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      result.written++;
    }
    return result;
  }

  async writeCheckpoint(sequence: number): Promise<void> {
    if (this.#checkpoint === undefined || sequence > this.#checkpoint) this.#checkpoint = sequence;
  }

  async readCheckpoint(): Promise<number | undefined> {
    return this.#checkpoint;
  }

  async load(
    onPage: (states: SessionState[]) => void,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<number | undefined> {
    const checkpoint = this.#checkpoint;
    // Like DynamoDB's lagging TTL deletion: an expired item is skipped on load; so is a tombstone.
    const now = Math.floor(Date.now() / 1000);
    const states = [...this.#items.values()]
      .filter((item) => !item.state.ended && (item.expiresAt === undefined || item.expiresAt >= now))
      .map((item) => cloneState(item.state));
    onPage(states);
    onProgress?.({ sessions: states.length, pages: 1 });
    return checkpoint;
  }
}
