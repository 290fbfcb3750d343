import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { expect, it } from 'vitest';
import { natsHistory } from '../../brokers/nats-history.js';
import { fleetSuite } from './fleet.js';

/** Each test gets its own JetStream stream (run-unique name and subjects), deleted after it. */
fleetSuite({
  name: 'nats',
  async history(leftovers, prefix, options = {}) {
    const nc = await connect({ servers: '127.0.0.1:4222' });
    const jsm = await jetstreamManager(nc);
    const stream = prefix.replace(/[^A-Za-z0-9_-]/g, '_');
    leftovers.add(async () => {
      await jsm.streams.delete(stream).catch(() => false);
      await nc.close();
    });
    return natsHistory({ manager: jsm, stream, prefix: `${stream}.`, ...options });
  },
});

it('natsHistory validates its options, naming them', () => {
  const manager = { jetstream: () => ({}), streams: {} } as unknown as JetStreamManager;
  expect(() => natsHistory({ manager: {} as never })).toThrow(/"manager"/);
  expect(() => natsHistory({ manager, stream: 'a b' })).toThrow(/"stream"/);
  expect(() => natsHistory({ manager, prefix: 'no-dot' })).toThrow(/"prefix"/);
  expect(() => natsHistory({ manager, size: -1 })).toThrow(/"size"/);
  expect(() => natsHistory({ manager, ttl: 10 })).toThrow(/"ttl"/);
  expect(() => natsHistory({ manager, nope: 1 } as never)).toThrow(/"nope"/);
});
