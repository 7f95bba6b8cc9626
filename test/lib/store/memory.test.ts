// Owns: MemorySnapshotStore against the SnapshotStore contract.
import { MemorySnapshotStore } from '../../../lib/store/memory.ts';
import { snapshotStoreContract } from '../../contracts/snapshot-store.ts';

snapshotStoreContract({
  name: 'MemorySnapshotStore',
  create: () => new MemorySnapshotStore(),
  minPagesFor3000: 1,
});
