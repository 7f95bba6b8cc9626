// Owns: the ReplicationLog contract run against JetStreamLog on the shared nats-server (and a lagging
// wrapper of it), plus JetStream-specific message-id behaviour (a foreign message under a writer's id).
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DuplicateMessageIdError } from '../../lib/errors.ts';
import { jetStreamLogFor, type ReplicationLog } from '../../lib/log/jetstream.ts';
import { describeReplicationLogContract, type ReplicationLogFixture } from '../contracts/replication-log.ts';
import { laggingLog, uniqueCluster, waitFor } from '../kit/index.ts';

let nc: NatsConnection;
beforeAll(async () => {
  nc = await connect({ servers: inject('natsUrl'), name: 'replication-log-contract' });
});
afterAll(async () => {
  await nc?.close();
});

/** A fresh stream; every writer gets its own connection, as a separate node would. */
async function jetStreamFixture(
  wrap: (log: ReplicationLog) => ReplicationLog = (log) => log,
): Promise<ReplicationLogFixture> {
  const cluster = uniqueCluster('rlog');
  const connections: NatsConnection[] = [];
  const open = async () => {
    const own = await connect({ servers: inject('natsUrl'), name: `rlog-${cluster}` });
    connections.push(own);
    return wrap(jetStreamLogFor(own, cluster));
  };
  const log = await open();
  return {
    log,
    writer: open,
    async destroy() {
      await (await jetstreamManager(nc)).streams.delete(log.name).catch(() => undefined);
      await Promise.allSettled(connections.map((c) => c.close()));
    },
  };
}

describeReplicationLogContract({ name: 'JetStreamLog', create: () => jetStreamFixture() });
describeReplicationLogContract({
  name: 'JetStreamLog delivering 20 ms late',
  create: () => jetStreamFixture((log) => laggingLog(log, 20)),
});

describe('JetStreamLog message ids', () => {
  it("a message someone else stored under the writer's next id is not taken for this writer's message", async () => {
    const fixture = await jetStreamFixture();
    try {
      const { log } = fixture;
      await log.ensure();
      const first = await log.append(new TextEncoder().encode('A-1'), 'a-1');
      // The id JetStream stored for A's first message, as a reader of the stream sees it.
      const stored = await (await jetstreamManager(nc)).streams.getMessage(log.name, { seq: first });
      const storedId = stored?.header?.get('Nats-Msg-Id');
      expect(storedId).toMatch(/\.a-1$/);
      const nextId = storedId!.replace(/a-1$/, 'a-2');
      // A foreign publisher (no cluster key: straight into the stream) takes A's next id.
      const h = headers();
      h.set('Nats-Msg-Id', nextId);
      const subject = (await (await jetstreamManager(nc)).streams.info(log.name)).config.subjects[0]!;
      await jetstream(nc).publish(subject, new TextEncoder().encode('impostor'), { headers: h });

      await expect(log.append(new TextEncoder().encode('A-2'), 'a-2')).rejects.toBeInstanceOf(DuplicateMessageIdError);
      // The stream holds A-1 and the impostor only: A-2 was not stored and was not reported as stored.
      const messages: string[] = [];
      const follower = await log.follow(first, (m) => messages.push(new TextDecoder().decode(m.data)));
      await waitFor('the two stored messages', () => messages.length >= 2);
      follower.stop();
      expect(messages).toEqual(['A-1', 'impostor']);
    } finally {
      await fixture.destroy();
    }
  });
});
