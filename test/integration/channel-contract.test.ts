// Owns: the Channel contract suite run against MemoryChannel and NatsChannel (real nats-server).
import { connect } from '@nats-io/transport-node';
import { inject } from 'vitest';
import { MemoryBus, MemoryChannel } from '../../lib/channel/memory.ts';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { describeChannelContract } from '../contracts/channel.ts';

// Both keep the publisher's order and report "no responders" at once.
const capabilities = { ordered: true, noRespondersWithinMs: 1000, sync: true };

describeChannelContract(
  'memory',
  async (count) => {
    const bus = new MemoryBus();
    return Array.from({ length: count }, () => new MemoryChannel(bus));
  },
  capabilities,
);

describeChannelContract(
  'nats',
  async (count) =>
    Promise.all(
      Array.from(
        { length: count },
        async () => new NatsChannel(await connect({ servers: inject('natsUrl'), name: 'it-contract' })),
      ),
    ),
  capabilities,
);
