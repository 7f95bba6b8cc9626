// Owns: the SessionManager contract (test/contracts/session-manager.ts) run against both strategies over
// the shared nats-server the test setup starts: one NATS connection per node.
import { connect } from '@nats-io/transport-node';
import { inject } from 'vitest';
import { NatsChannel } from '../../lib/channel/nats.ts';
import { describeSessionManagerContract } from '../contracts/session-manager.ts';
import { FAST } from '../kit/timings.ts';

/** A node's channel on its own connection; stopping the node closes it. */
const natsChannel = async () =>
  new NatsChannel(await connect({ servers: inject('natsUrl'), name: 'session-manager-contract' }));

/** Over a real broker a silent member is declared dead a little later than in process. */
const options = { ...FAST, fetchTimeoutMs: 1000 } as const;

describeSessionManagerContract({ name: 'delta over NATS', manager: 'delta', channel: natsChannel, options });
describeSessionManagerContract({ name: 'backup over NATS', manager: 'backup', channel: natsChannel, options });
