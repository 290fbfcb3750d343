import {
  connect as natsConnect,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry } from '../../src/index.js';
import { channelToken, natsBroker, tokenChannel, type NatsBroker } from '../../brokers/nats.js';
import { Leftovers, ServerProcess, connect, eventually, nextEvent, run, startNode } from './helpers.js';
import { brokerSuite } from './suite.js';

async function nats(leftovers: Leftovers, options: NodeConnectionOptions = { servers: '127.0.0.1:4222' }) {
  const nc = await natsConnect(options);
  leftovers.add(() => (nc.isClosed() ? undefined : nc.close()));
  return nc;
}

brokerSuite({
  name: 'nats',
  prefix: (test) => `fanout-test.${run}.${test}.`,
  async broker(leftovers, prefix) {
    const nc = await nats(leftovers);
    return { broker: natsBroker({ connection: nc, prefix }), inbound: () => nc.stats().inMsgs };
  },
  async raw(leftovers, prefix, channel, bytes) {
    const nc = await nats(leftovers);
    nc.publish(prefix + channelToken(channel), bytes);
    await nc.flush();
    await nc.close();
  },
});

describe('nats broker before start', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('sends a publish made in the same tick as the registry constructor', async () => {
    const prefix = `fanout-test.${run}.early.`;
    const b = await startNode(leftovers, 'B', natsBroker({ connection: await nats(leftovers), prefix }));
    const onB = await connect(leftovers, b, ['early']);
    await (b.registry.options.broker as NatsBroker).idle();
    const a = new SessionRegistry({ broker: natsBroker({ connection: await nats(leftovers), prefix }) });
    leftovers.add(() => a.close());
    a.publish('early', 'early');
    await onB.until((m) => m.includes('early'), '"early" on B');
    expect(onB.messages).toEqual(['early']);
  });
});

describe('nats broker subjects and options', () => {
  it('escapes channel names into one subject token, reversibly', () => {
    const names = [
      'alarms',
      'a.b',
      'eu west',
      '*',
      '>',
      'a.>',
      '%41',
      'zone-3_x',
      'ünï ✓',
      '\u{1F600}',
      '..',
    ];
    for (const name of names) {
      const token = channelToken(name);
      expect(token).toMatch(/^[A-Za-z0-9_%-]+$/);
      expect(tokenChannel(token)).toBe(name);
    }
    expect(channelToken('alarms.eu west')).toBe('alarms%2Eeu%20west');
    expect(new Set(names.map(channelToken)).size).toBe(names.length);
    expect(() => tokenChannel('a.b')).toThrow(TypeError);
    expect(() => tokenChannel('%2e')).toThrow(TypeError); // lower case is not what channelToken makes
    expect(() => channelToken('\ud800')).toThrow(TypeError);
  });

  it('rejects wrong options with a TypeError naming the option', () => {
    const fake = { publish() {}, subscribe() {}, status() {} } as unknown as NatsConnection;
    expect(() => natsBroker({} as never)).toThrow(/"connection"/);
    expect(() => natsBroker({ connection: fake, prefix: 'a b.' })).toThrow(/"prefix"/);
    expect(() => natsBroker({ connection: fake, prefix: 'a.*.' })).toThrow(/"prefix"/);
    expect(() => natsBroker({ connection: fake, prefix: '.a.' })).toThrow(/"prefix"/);
    expect(() => natsBroker({ connection: fake, timeout: -1 })).toThrow(RangeError);
    expect(natsBroker({ connection: fake, prefix: '' }).subject('a.b')).toBe('a%2Eb');
    expect(natsBroker({ connection: fake, prefix: 'app.v1.' }).subject('x')).toBe('app.v1.x');
  });
});

describe('nats broker: the server goes away and comes back', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('local delivery goes on, errors and failed publishes are reported, cross-node delivery resumes', async () => {
    // `-p -1`: the server picks a free port itself and logs it (no probe-then-bind race at the first start).
    // The restart binds that same port again: the only race left is another process taking it in the
    // milliseconds between stop and start.
    const server = new ServerProcess(
      '/usr/sbin/nats-server',
      /client connections on 127\.0\.0\.1:(\d+)[\s\S]*Server is ready/,
    );
    leftovers.add(() => server.stop());
    const match = await server.start(['-a', '127.0.0.1', '-p', '-1']);
    const port = match[1] as string;

    const options = { servers: `127.0.0.1:${port}`, reconnectTimeWait: 20, maxReconnectAttempts: -1 };
    const brokerA: NatsBroker = natsBroker({ connection: await nats(leftovers, options), timeout: 300 });
    const brokerB: NatsBroker = natsBroker({ connection: await nats(leftovers, options), timeout: 300 });
    const a = await startNode(leftovers, 'A', brokerA);
    const b = await startNode(leftovers, 'B', brokerB);
    const onA = await connect(leftovers, a, ['r']);
    const onB = await connect(leftovers, b, ['r']);
    await Promise.all([brokerA.idle(), brokerB.idle()]);

    a.registry.publish('r', 'before');
    await onB.until((m) => m.includes('before'), '"before" on B');
    await eventually(() => a.registry.stats().broker.published === 1, 'the confirmation of "before"');

    const lost = [a, b].map((n) =>
      nextEvent(n.registry, 'error', (e: Error) => /connection lost/.test(e.message)),
    );
    await server.stop();
    await Promise.all(lost);

    const failed = nextEvent(a.registry, 'error', (e: Error) => /publish not/.test(e.message));
    a.registry.publish('r', 'during');
    await onA.until((m) => m.includes('during'), 'local delivery of "during" on A');
    await failed;
    expect(a.registry.stats().broker).toMatchObject({ published: 1, failed: 1 });

    await server.start(['-a', '127.0.0.1', '-p', port]);
    await Promise.all([brokerA.idle(), brokerB.idle()]);

    a.registry.publish('r', 'after');
    await onB.until((m) => m.includes('after'), '"after" on B (subscription restored)');
    b.registry.publish('r', 'after-b');
    await onA.until((m) => m.includes('after-b'), '"after-b" on A');
    // B's own copy may trail A's: B's channel was fanned out just before, so its publish waits for the window.
    await onB.until((m) => m.includes('after-b'), '"after-b" on B');
    expect(onB.messages).toEqual(['before', 'after', 'after-b']);
    expect(onA.messages).toEqual(['before', 'during', 'after', 'after-b']);
    // A publish counts as published when the broker confirms it, which may come after the other node got it.
    await eventually(() => a.registry.stats().broker.published === 2, 'two confirmed publishes on A');
    await eventually(() => b.registry.stats().broker.published === 1, 'one confirmed publish on B');
    expect(a.registry.stats().broker.failed).toBe(1);
    expect(b.registry.stats().broker.failed).toBe(0);
  });
});
