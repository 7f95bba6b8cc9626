// Owns: the SessionManager contract (test/contracts/session-manager.ts) run against both strategies in
// process, over the memory channel.
import { MemoryBus, MemoryChannel } from '../../../lib/channel/memory.ts';
import { describeSessionManagerContract } from '../../contracts/session-manager.ts';

// One broker for the file: every test uses its own cluster name, so their subjects never meet.
const bus = new MemoryBus();

describeSessionManagerContract({ name: 'delta over memory', manager: 'delta', channel: () => new MemoryChannel(bus) });
describeSessionManagerContract({
  name: 'backup over memory',
  manager: 'backup',
  channel: () => new MemoryChannel(bus),
  options: { fetchTimeoutMs: 1000 },
});
