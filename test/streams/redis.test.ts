import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { redisHistory } from '../../brokers/redis-history.js';
import { connect, Leftovers } from '../transports/clients.js';
import { fleetSuite } from './fleet.js';
import { StallProxy } from '../brokers/stall.js';
import { killSubscriber, startPair } from './pair.js';

fleetSuite({
  name: 'redis',
  async history(leftovers, prefix, options = {}) {
    const client = new Redis({ host: '127.0.0.1', port: 6379 });
    client.on('error', () => {});
    leftovers.add(async () => {
      // The run's keys go with the test.
      const keys = await client.keys(`${prefix}:*`);
      if (keys.length > 0) await client.del(...keys);
      client.disconnect();
    });
    return redisHistory({ client, prefix: `${prefix}:`, ...options });
  },
});

it('redisHistory validates its options, naming them', () => {
  const client = new Redis({ lazyConnect: true });
  expect(() => redisHistory({ client: {} as never })).toThrow(/"client"/);
  expect(() => redisHistory({ client, size: -1 })).toThrow(/"size"/);
  expect(() => redisHistory({ client, ttl: 0 })).toThrow(/"ttl"/);
  expect(() => redisHistory({ client, nope: 1 } as never)).toThrow(/"nope"/);
  client.disconnect();
});

describe('redis history, subscriber outage', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('fills what was published while its subscriber connection was down: connected clients see no gap', async () => {
    const prefix = `fanout-test-outage-${process.pid}-${Date.now().toString(36)}:`;
    const clients: Redis[] = [];
    const engine = () => {
      const client = new Redis({ host: '127.0.0.1', port: 6379 });
      client.on('error', () => {});
      clients.push(client);
      return redisHistory({ client, prefix });
    };
    leftovers.add(async () => {
      const keys = await clients[0]?.keys(`${prefix}*`);
      if (keys !== undefined && keys.length > 0) await clients[0]?.del(...keys);
      for (const c of clients) c.disconnect();
    });
    const historyA = engine();
    const { a, b, url } = await startPair(leftovers, historyA, engine());
    const client = await connect(leftovers, url);
    await client.received(1); // sub
    a.publish('alarms', 'm1');
    await client.received(2);
    // Kill node A's subscriber connection (found by its name), then publish from node B while it is down.
    await killSubscriber(clients[0] as Redis, historyA, a, 10_000);
    for (let i = 2; i <= 6; i++) b.publish('alarms', `m${i}`);
    // After the reconnect: the missed ones from the Stream, then live ones, each once, in order.
    b.publish('alarms', 'm7');
    await client.received(8, 15_000);
    const texts = client.messages.slice(1).map((m) => m.slice(m.indexOf('\n') + 1));
    expect(texts).toEqual(['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
  });
});

describe('redis history, a publish whose reply is lost', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('is stored and delivered once when ioredis sends the script again after the reconnect', async () => {
    const prefix = `fanout-test-resend-${process.pid}-${Date.now().toString(36)}:`;
    const admin = new Redis({ host: '127.0.0.1', port: 6379 });
    admin.on('error', () => {});
    const direct = new Redis({ host: '127.0.0.1', port: 6379 });
    direct.on('error', () => {});
    // Node B's command connection goes through a proxy that can lose Redis's replies; ioredis resends unanswered
    // commands after a reconnect (autoResendUnfulfilledCommands, on by default).
    const proxy = await StallProxy.start({ host: '127.0.0.1', port: 6379 });
    const viaProxy = new Redis({ host: '127.0.0.1', port: proxy.port, retryStrategy: () => 20 });
    viaProxy.on('error', () => {});
    leftovers.add(async () => {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      viaProxy.disconnect();
      direct.disconnect();
      admin.disconnect();
      await proxy.close();
    });
    const { a, b, url } = await startPair(
      leftovers,
      redisHistory({ client: direct, prefix }),
      redisHistory({ client: viaProxy, prefix }),
    );
    const client = await connect(leftovers, url);
    await client.received(1); // sub
    b.publish('alarms', 'm1');
    await client.received(2);

    // Redis runs m2's script (the client on A gets it), but B never hears back; then the connection drops.
    proxy.swallowReplies();
    b.publish('alarms', 'm2');
    await client.received(3);
    proxy.cut();
    // After the reconnect ioredis sends m2's script again; m3 comes after it on the same connection.
    b.publish('alarms', 'm3');
    await client.received(4, 15_000);
    // Anything that would still arrive (a second m2 stored under a new offset) has time to.
    a.publish('alarms', 'm4');
    await client.received(5, 15_000);
    const texts = client.messages.slice(1).map((m) => m.slice(m.indexOf('\n') + 1));
    expect(texts).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(await admin.xlen(`${prefix}stream:alarms`)).toBe(4);
  });
});
