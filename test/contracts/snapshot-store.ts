// Owns: the SnapshotStore contract suite, run against every implementation (memory.test.ts, dynamodb.test.ts).
import { describe, expect, it } from 'vitest';
import { decodeValue } from '../../lib/session/values.ts';
import type { SessionState } from '../../lib/session/state.ts';
import type { LoadProgress, SnapshotItem, SnapshotStore } from '../../lib/store/snapshot-store.ts';
import { canonical, sessionKey, sessionState, shuffled } from '../kit/snapshots.ts';

/** What the contract needs from an implementation. */
export interface SnapshotStoreTarget {
  /** Shown in test names. */
  readonly name: string;
  /** A store for a cluster no other test uses (empty). */
  create(cluster: string): SnapshotStore;
  /**
   * Another handle on the same cluster's data, as a second node would hold (own client); defaults
   * to `store` itself for stores that live in one process.
   */
  another?(cluster: string, store: SnapshotStore): SnapshotStore;
  /** The fewest pages a load of 3,000 items of ~1.5 KB must take (DynamoDB pages at 1 MB per shard). */
  readonly minPagesFor3000: number;
  /** Per-test timeout for the bulk tests. */
  readonly bulkTimeoutMs?: number;
}

let clusters = 0;
const cluster = () => `c${process.pid}x${Date.now().toString(36)}x${++clusters}`;

/** Every state a full load returns, by key, plus the progress reports and the returned checkpoint. */
interface FullLoad {
  states: Map<string, SessionState>;
  progress: LoadProgress[];
  checkpoint: number | undefined;
  duplicates: number;
}

/** Loads everything `store` holds. */
async function loadAll(store: SnapshotStore): Promise<FullLoad> {
  const states = new Map<string, SessionState>();
  const progress: LoadProgress[] = [];
  let duplicates = 0;
  const checkpoint = await store.load(
    (page) => {
      for (const state of page) {
        if (states.has(state.key)) duplicates++;
        states.set(state.key, state);
      }
    },
    (p) => progress.push({ ...p }),
  );
  return { states, progress, checkpoint, duplicates };
}

/** The decoded value of one attribute of a loaded state. */
function attributeValue(state: SessionState | undefined, name: string): unknown {
  const text = state?.attributes.get(name)?.value;
  return text === undefined ? undefined : decodeValue(text);
}

/** Registers the contract tests for `target` inside a describe block. */
export function snapshotStoreContract(target: SnapshotStoreTarget): void {
  const another = (c: string, store: SnapshotStore) => target.another?.(c, store) ?? store;

  describe(`SnapshotStore contract: ${target.name}`, () => {
    it('an empty store loads nothing and has no checkpoint', async () => {
      const store = target.create(cluster());
      expect(await store.readCheckpoint()).toBeUndefined();
      const { states, checkpoint } = await loadAll(store);
      expect(states.size).toBe(0);
      expect(checkpoint).toBeUndefined();
    });

    it('write then load round-trips every value type, removals, timeouts and stamps exactly', async () => {
      const store = target.create(cluster());
      const values: Record<string, unknown> = {
        text: 'héllo ✓ 😀 "quoted" \\ back\nslash',
        empty: '',
        int: 42,
        float: -1234.5678,
        negativeZero: -0,
        nan: NaN,
        infinity: Infinity,
        yes: true,
        no: false,
        nothing: null,
        undef: undefined,
        big: 12345678901234567890123n,
        date: new Date('2026-11-22T10:20:30.456Z'),
        map: new Map<unknown, unknown>([
          ['a', 1],
          [2, { b: [3] }],
        ]),
        set: new Set(['x', 1, null]),
        bytes: new Uint8Array([0, 1, 127, 128, 255]),
        regexp: /ab+c/gi,
        array: [1, 'two', [3, [4]], { five: 5 }],
        nested: { deep: { deeper: { deepest: ['ok', { n: 1 }] } } },
        large: 'L'.repeat(100 * 1024),
        'name with spaces/ünïcode': 'odd attribute names survive too',
      };
      const full = sessionState(sessionKey(1), values, { removed: ['gone'], maxInactiveSeconds: 7200, node: 'node-a' });
      full.lastAccessedAt = full.createdAt + 5000;
      full.lastAccessedBy = 'node-b';
      const empty = sessionState(sessionKey(2), {}, { maxInactiveSeconds: -1 });
      const result = await store.write([
        { state: full, version: 7 },
        { state: empty, version: 7 },
      ]);
      expect(result).toEqual({ written: 2, superseded: 0 });

      const { states, duplicates } = await loadAll(store);
      expect(duplicates).toBe(0);
      expect([...states.keys()].sort()).toEqual([full.key, empty.key].sort());
      // Exactly the state that was written: stamps, sizes, removal registers, access fields.
      expect(canonical(states.get(full.key), { bytes: true })).toEqual(canonical(full, { bytes: true }));
      expect(canonical(states.get(empty.key), { bytes: true })).toEqual(canonical(empty, { bytes: true }));
      for (const [name, value] of Object.entries(values))
        expect(attributeValue(states.get(full.key), name), name).toEqual(value);
      expect(Object.is(attributeValue(states.get(full.key), 'negativeZero'), -0)).toBe(true);
      expect(states.get(full.key)!.attributes.get('gone')).toMatchObject({ bytes: 0 });
      expect(states.get(full.key)!.attributes.get('gone')!.value).toBeUndefined();
      // The loaded state is a copy: changing it does not change the store.
      states.get(full.key)!.attributes.clear();
      expect(canonical((await loadAll(store)).states.get(full.key), { bytes: true })).toEqual(
        canonical(full, { bytes: true }),
      );
    });

    it('a newer version replaces an item; an older one is reported superseded and changes nothing', async () => {
      const store = target.create(cluster());
      const key = sessionKey();
      expect(await store.write([{ state: sessionState(key, { v: 5 }), version: 5 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(await store.write([{ state: sessionState(key, { v: 3 }), version: 3 }])).toEqual({
        written: 0,
        superseded: 1,
      });
      expect(attributeValue((await loadAll(store)).states.get(key), 'v')).toBe(5);
      expect(await store.write([{ state: sessionState(key, { v: 9 }), version: 9 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(attributeValue((await loadAll(store)).states.get(key), 'v')).toBe(9);
      // A batch mixing both: only the stale item is skipped.
      const fresh = sessionKey();
      expect(
        await store.write([
          { state: sessionState(key, { v: 8 }), version: 8 },
          { state: sessionState(fresh, { v: 1 }), version: 1 },
        ]),
      ).toEqual({ written: 1, superseded: 1 });
      const { states } = await loadAll(store);
      expect(attributeValue(states.get(key), 'v')).toBe(9);
      expect(attributeValue(states.get(fresh), 'v')).toBe(1);
    });

    it(
      'an older version never overwrites a newer one when two writers race with interleaved versions',
      async () => {
        const c = cluster();
        const first = target.create(c);
        const second = another(c, first);
        const keys = Array.from({ length: 20 }, (_, i) => sessionKey(i));
        const writes = (store: SnapshotStore, versions: number[]) => async () => {
          let written = 0;
          let superseded = 0;
          // Each writer sends its versions in a random order, so stale writes keep arriving after newer ones.
          for (const version of shuffled(versions)) {
            const items: SnapshotItem[] = keys.map((key) => ({
              state: sessionState(key, { v: version, by: versions[0] }),
              version,
            }));
            const result = await store.write(items);
            written += result.written;
            superseded += result.superseded;
          }
          return { written, superseded };
        };
        const odd = Array.from({ length: 15 }, (_, i) => 2 * i + 1); // 1..29
        const even = Array.from({ length: 15 }, (_, i) => 2 * i + 2); // 2..30
        const [a, b] = await Promise.all([writes(first, odd)(), writes(second, even)()]);
        // Every item was either written or skipped as stale; nothing was lost to an error.
        expect(a.written + a.superseded).toBe(odd.length * keys.length);
        expect(b.written + b.superseded).toBe(even.length * keys.length);
        const { states } = await loadAll(first);
        expect(states.size).toBe(keys.length);
        for (const key of keys) expect(attributeValue(states.get(key), 'v'), key).toBe(30);
        // The other handle agrees.
        const seen = (await loadAll(second)).states;
        for (const key of keys) expect(attributeValue(seen.get(key), 'v')).toBe(30);
      },
      target.bulkTimeoutMs,
    );

    it('an ended state ends the item (a load skips it), but only when it is not older than what is stored', async () => {
      const store = target.create(cluster());
      const [kept, ended, neverStored] = [sessionKey(1), sessionKey(2), sessionKey(3)];
      await store.write([
        { state: sessionState(kept, { a: 1 }), version: 10 },
        { state: sessionState(ended, { a: 2 }), version: 10 },
      ]);
      // An end older than the stored snapshot is stale: the session stays.
      expect(await store.write([{ state: sessionState(kept, {}, { ended: 'expired' }), version: 4 }])).toEqual({
        written: 0,
        superseded: 1,
      });
      expect(
        await store.write([
          { state: sessionState(ended, {}, { ended: 'invalidated' }), version: 11 },
          { state: sessionState(neverStored, {}, { ended: 'expired' }), version: 11 },
        ]),
      ).toEqual({ written: 2, superseded: 0 });
      const { states } = await loadAll(store);
      expect([...states.keys()]).toEqual([kept]);
      expect(attributeValue(states.get(kept), 'a')).toBe(1);
    });

    it("an end is kept with its version: a stale writer's older live state is superseded and the session never loads again", async () => {
      const c = cluster();
      const store = target.create(c);
      const stale = another(c, store);
      const key = sessionKey();
      // The leader wrote S at 5; S ended at 8 and the (new) leader wrote the end.
      expect(await store.write([{ state: sessionState(key, { a: 1 }), version: 5 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(await store.write([{ state: sessionState(key, {}, { ended: 'invalidated' }), version: 8 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      // The old leader thaws and flushes what it held before the end.
      expect(await stale.write([{ state: sessionState(key, { a: 1 }), version: 5 }])).toEqual({
        written: 0,
        superseded: 1,
      });
      expect(await stale.write([{ state: sessionState(key, { a: 1 }), version: 7 }])).toEqual({
        written: 0,
        superseded: 1,
      });
      expect((await loadAll(store)).states.has(key)).toBe(false);
      expect((await loadAll(stale)).states.has(key)).toBe(false);
    });

    it('a live state never replaces an end, not even at a newer or the same version; a newer end replaces an older one', async () => {
      const store = target.create(cluster());
      const [key, never] = [sessionKey(1), sessionKey(2)];
      // An end for a session never stored still blocks every later live write.
      expect(await store.write([{ state: sessionState(never, {}, { ended: 'expired' }), version: 3 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(await store.write([{ state: sessionState(key, {}, { ended: 'invalidated' }), version: 10 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(
        await store.write([
          { state: sessionState(key, { back: true }), version: 12 },
          { state: sessionState(never, { back: true }), version: 3 },
        ]),
      ).toEqual({ written: 0, superseded: 2 });
      expect(await store.write([{ state: sessionState(key, {}, { ended: 'expired' }), version: 11 }])).toEqual({
        written: 1,
        superseded: 0,
      });
      expect(await store.write([{ state: sessionState(key, {}, { ended: 'invalidated' }), version: 9 }])).toEqual({
        written: 0,
        superseded: 1,
      });
      expect((await loadAll(store)).states.size).toBe(0);
    });

    it('the checkpoint only moves forward, also under concurrent writers', async () => {
      const c = cluster();
      const store = target.create(c);
      await store.writeCheckpoint(10);
      expect(await store.readCheckpoint()).toBe(10);
      await store.writeCheckpoint(5);
      expect(await store.readCheckpoint()).toBe(10);
      await store.writeCheckpoint(10);
      expect(await store.readCheckpoint()).toBe(10);
      await store.writeCheckpoint(12);
      expect(await store.readCheckpoint()).toBe(12);
      const other = another(c, store);
      await Promise.all(
        shuffled(Array.from({ length: 40 }, (_, i) => i + 1)).map((seq, i) =>
          (i % 2 ? store : other).writeCheckpoint(seq * 3),
        ),
      );
      expect(await store.readCheckpoint()).toBe(120);
      expect(await other.readCheckpoint()).toBe(120);
      // load() reports the checkpoint it read before loading.
      expect((await loadAll(store)).checkpoint).toBe(120);
      // Checkpoints are per cluster.
      expect(await target.create(cluster()).readCheckpoint()).toBeUndefined();
    });

    it(
      'loads 3,000 sessions across pages and shards, each once, with progress',
      async () => {
        const store = target.create(cluster());
        const padding = 'p'.repeat(1500);
        const items: SnapshotItem[] = Array.from({ length: 3000 }, (_, i) => ({
          state: sessionState(sessionKey(i), { i, padding }),
          version: 1 + (i % 7),
        }));
        const result = await store.write(items);
        expect(result).toEqual({ written: 3000, superseded: 0 });
        await store.writeCheckpoint(7);

        const pageSizes: number[] = [];
        const states = new Map<string, SessionState>();
        const progress: LoadProgress[] = [];
        const checkpoint = await store.load(
          (page) => {
            pageSizes.push(page.length);
            for (const state of page) states.set(state.key, state);
          },
          (p) => progress.push({ ...p }),
        );
        expect(checkpoint).toBe(7);
        expect(states.size).toBe(3000);
        expect(pageSizes.reduce((a, b) => a + b, 0)).toBe(3000); // no duplicates across pages
        expect(pageSizes.length).toBeGreaterThanOrEqual(target.minPagesFor3000);
        for (const [i, item] of items.entries()) expect(attributeValue(states.get(item.state.key), 'i')).toBe(i);
        // Progress counts up to the total, one report per page.
        expect(progress.length).toBe(pageSizes.length);
        expect(progress.at(-1)).toEqual({ sessions: 3000, pages: pageSizes.length });
        for (let i = 1; i < progress.length; i++) {
          expect(progress[i]!.sessions).toBeGreaterThanOrEqual(progress[i - 1]!.sessions);
          expect(progress[i]!.pages).toBe(progress[i - 1]!.pages + 1);
        }
      },
      target.bulkTimeoutMs,
    );

    it('skips items whose ttl has passed, keeps live and never-expiring ones', async () => {
      const store = target.create(cluster());
      const now = Math.floor(Date.now() / 1000);
      const [expired, live, forever] = [sessionKey(1), sessionKey(2), sessionKey(3)];
      await store.write([
        { state: sessionState(expired, { a: 1 }), version: 1, expiresAt: now - 60 },
        { state: sessionState(live, { a: 2 }), version: 1, expiresAt: now + 3600 },
        { state: sessionState(forever, { a: 3 }, { maxInactiveSeconds: -1 }), version: 1 },
      ]);
      const { states, progress } = await loadAll(store);
      expect([...states.keys()].sort()).toEqual([live, forever].sort());
      expect(progress.at(-1)?.sessions).toBe(2);
    });

    it("clusters sharing a store backend never see each other's sessions", async () => {
      const [a, b] = [target.create(cluster()), target.create(cluster())];
      const [ka, kb] = [sessionKey(1), sessionKey(2)];
      await Promise.all([
        a.write([{ state: sessionState(ka), version: 1 }]),
        b.write([{ state: sessionState(kb), version: 1 }]),
      ]);
      await a.writeCheckpoint(3);
      expect([...(await loadAll(a)).states.keys()]).toEqual([ka]);
      expect([...(await loadAll(b)).states.keys()]).toEqual([kb]);
      expect(await b.readCheckpoint()).toBeUndefined();
    });
  });
}
