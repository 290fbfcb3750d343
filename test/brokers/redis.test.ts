import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry } from '../../src/index.js';
import { redisBroker, type RedisBroker } from '../../brokers/redis.js';
import { Leftovers, ServerProcess, connect, eventually, nextEvent, run, startNode } from './helpers.js';
import { StallProxy } from './stall.js';
import { brokerSuite } from './suite.js';

const SHARED: RedisOptions = { host: '127.0.0.1', port: 6379 };

function client(leftovers: Leftovers, options: RedisOptions = SHARED): Redis {
  const redis = new Redis(options);
  redis.on('error', () => {}); // reconnect noise; the broker reports what matters
  leftovers.add(() => redis.disconnect());
  return redis;
}

brokerSuite({
  name: 'redis',
  prefix: (test) => `fanout-test:${run}:${test}:`,
  async broker(leftovers, prefix) {
    return { broker: redisBroker({ client: client(leftovers), prefix }) };
  },
  async raw(leftovers, prefix, channel, bytes) {
    const redis = client(leftovers);
    await redis.publish(prefix + channel, bytes);
    redis.disconnect();
  },
  async subscribers(leftovers, prefix, channel) {
    const redis = client(leftovers);
    const reply = (await redis.call('PUBSUB', 'NUMSUB', prefix + channel)) as [string, number];
    redis.disconnect();
    return Number(reply[1]);
  },
});

describe('redis broker with a lazyConnect client', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('connects the client itself and sends a publish made before the broker started', async () => {
    const prefix = `fanout-test:${run}:lazy:`;
    const b = await startNode(leftovers, 'B', redisBroker({ client: client(leftovers), prefix }));
    const onB = await connect(leftovers, b, ['lazy']);
    await (b.registry.options.broker as RedisBroker).idle();
    const lazy = client(leftovers, { ...SHARED, lazyConnect: true });
    expect(lazy.status).toBe('wait');
    const a = new SessionRegistry({ broker: redisBroker({ client: lazy, prefix }) });
    leftovers.add(() => a.close());
    // Same tick as the constructor: the registry has not started its broker yet.
    a.publish('lazy', 'early');
    await onB.until((m) => m.includes('early'), '"early" on B');
    expect(onB.messages).toEqual(['early']);
  });
});

describe('redis broker: a publish whose reply is lost', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('reaches the other node once although ioredis sends it again after the reconnect', async () => {
    const prefix = `fanout-test:${run}:resend:`;
    const b = await startNode(leftovers, 'B', redisBroker({ client: client(leftovers), prefix }));
    const onB = await connect(leftovers, b, ['resend']);
    await (b.registry.options.broker as RedisBroker).idle();
    // Node A reaches Redis through a proxy that can lose Redis's replies; ioredis resends unanswered commands
    // after a reconnect (autoResendUnfulfilledCommands, on by default), and Redis relays that PUBLISH again.
    const proxy = await StallProxy.start(SHARED as { host: string; port: number });
    leftovers.add(() => proxy.close());
    const viaProxy = client(leftovers, { host: '127.0.0.1', port: proxy.port, retryStrategy: () => 20 });
    const a = new SessionRegistry({ broker: redisBroker({ client: viaProxy, prefix }), nodeId: 'A' });
    a.on('error', () => {}); // the cut is reported; what matters is what B gets
    leftovers.add(() => a.close());
    a.publish('resend', 'm1');
    await onB.until((m) => m.length === 1, 'm1 on B');
    proxy.swallowReplies();
    a.publish('resend', 'm2');
    await onB.until((m) => m.length === 2, 'm2 on B');
    proxy.cut();
    // After the reconnect: m2's PUBLISH again, then m3.
    a.publish('resend', 'm3');
    await onB.until((m) => m.includes('m3'), 'm3 on B');
    // Anything that would still come (nothing should) has the time of one more publish to.
    a.publish('resend', 'm4');
    await onB.until((m) => m.includes('m4'), 'm4 on B');
    expect(onB.messages).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(b.registry.stats().broker).toMatchObject({ received: 5, duplicates: 1 });
  });
});

describe('redis broker options', () => {
  it('rejects wrong options with a TypeError naming the option', () => {
    expect(() => redisBroker({} as never)).toThrow(/"client"/);
    expect(() => redisBroker({ client: {} as never })).toThrow(/"client"/);
    const fake = { duplicate() {}, publish() {}, status: 'wait' } as unknown as Redis;
    expect(() => redisBroker({ client: fake, prefix: 1 as never })).toThrow(/"prefix"/);
    expect(() => redisBroker({ client: fake, timeout: 0 })).toThrow(RangeError);
    expect(() => redisBroker({ client: fake, timeout: 'x' as never })).toThrow(/"timeout"/);
    expect(() => redisBroker({ client: fake, nope: 1 } as never)).toThrow(/"nope"/);
  });
});

describe('redis broker: the server goes away and comes back', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('local delivery goes on, errors and failed publishes are reported, cross-node delivery resumes', async () => {
    // A private redis-server on a unix socket: no port to race for, and the same path after the restart.
    const dir = mkdtempSync(join(tmpdir(), 'fanout-redis-'));
    leftovers.add(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'r.sock');
    const args = ['--port', '0', '--unixsocket', path, '--save', '', '--appendonly', 'no', '--dir', dir];
    const server = new ServerProcess('redis-server', /ready to accept connections/);
    leftovers.add(() => server.stop());
    await server.start(args);

    const options: RedisOptions = { path, retryStrategy: () => 20 };
    const clientA = client(leftovers, options);
    const clientB = client(leftovers, options);
    const brokerA: RedisBroker = redisBroker({ client: clientA, prefix: `restart:${run}:`, timeout: 300 });
    const brokerB: RedisBroker = redisBroker({ client: clientB, prefix: `restart:${run}:`, timeout: 300 });
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
    const publisherDown = clientA.status === 'ready' ? nextEvent(clientA, 'close') : Promise.resolve();
    await server.stop();
    await Promise.all(lost);
    // Once the client knows, a publish is never written (so never resent late by ioredis); one written just
    // before it knew would be resent after the reconnect (see the README on autoResendUnfulfilledCommands).
    await publisherDown;

    const failed = nextEvent(a.registry, 'error', (e: Error) => /publish not/.test(e.message));
    a.registry.publish('r', 'during');
    await onA.until((m) => m.includes('during'), 'local delivery of "during" on A');
    await failed;
    expect(a.registry.stats().broker).toMatchObject({ published: 1, failed: 1 });

    await server.start(args);
    await Promise.all([brokerA.idle(), brokerB.idle()]);
    for (const c of [clientA, clientB]) if (c.status !== 'ready') await nextEvent(c, 'ready');

    a.registry.publish('r', 'after');
    await onB.until((m) => m.includes('after'), '"after" on B (subscription restored)');
    b.registry.publish('r', 'after-b');
    await onA.until((m) => m.includes('after-b'), '"after-b" on A');
    // B's own copy may trail A's: B's channel was fanned out just before, so its publish waits for the window.
    await onB.until((m) => m.includes('after-b'), '"after-b" on B');
    // At most once: what was published during the outage never reaches the other node.
    expect(onB.messages).toEqual(['before', 'after', 'after-b']);
    expect(onA.messages).toEqual(['before', 'during', 'after', 'after-b']);
    // A publish counts as published when the broker confirms it, which may come after the other node got it.
    await eventually(() => a.registry.stats().broker.published === 2, 'two confirmed publishes on A');
    await eventually(() => b.registry.stats().broker.published === 1, 'one confirmed publish on B');
    expect(a.registry.stats().broker.failed).toBe(1);
    expect(b.registry.stats().broker.failed).toBe(0);
  });
});
