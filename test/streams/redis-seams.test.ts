/**
 * The Redis history reads over one connection and delivers live messages over another (its pub/sub
 * subscriber). These tests put a stall proxy in front of that subscriber only, so a test decides when live
 * messages arrive and when the subscriber may reconnect: the seam of a recovery, and outages of the subscriber.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { redisHistory, type RedisHistoryEngine } from '../../brokers/redis-history.js';
import { StallProxy } from '../brokers/stall.js';
import { connect, Leftovers, within } from '../transports/clients.js';
import { parse, short, type Frame } from './frames.js';
import { killSubscriber, startPair } from './pair.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());
let runs = 0;

async function setup(size = 100) {
  const prefix = `fanout-test-seams-${process.pid}-${Date.now().toString(36)}-${++runs}:`;
  const proxy = await StallProxy.start({ host: '127.0.0.1', port: 6379 });
  const clients: Redis[] = [];
  const redis = (options: RedisOptions = {}) => {
    const c = new Redis({ host: '127.0.0.1', port: 6379, ...options });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  const admin = redis();
  leftovers.add(async () => {
    await proxy.close();
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    for (const c of clients) c.disconnect();
  });
  // Node A: scripts and reads go straight to Redis, its subscriber (derived with duplicate()) through the proxy.
  const direct = redis();
  direct.duplicate = ((options: RedisOptions = {}) =>
    redis({ ...options, port: proxy.port, retryStrategy: () => 20 })) as typeof direct.duplicate;
  const historyA = redisHistory({ client: direct, prefix, size });
  const { a, b, errors, url } = await startPair(
    leftovers,
    historyA,
    redisHistory({ client: redis(), prefix, size }),
  );
  const c1 = await connect(leftovers, url);
  const [sub] = await c1.received(1);
  const epoch = (parse(sub as string) as Frame).epoch as string;

  /** Node B publishes `texts`; resolves once Redis stored them all (B's publishes are asynchronous). */
  async function publish(...texts: string[]): Promise<void> {
    const before = Number((await admin.hget(`${prefix}stream-meta:alarms`, 'offset')) ?? 0);
    for (const t of texts) b.publish('alarms', t);
    await within(
      (async () => {
        while (Number(await admin.hget(`${prefix}stream-meta:alarms`, 'offset')) < before + texts.length)
          await new Promise((resolve) => setTimeout(resolve, 5));
      })(),
      5000,
      `${texts.length} publishes stored`,
    );
  }

  /** Drops node A's subscriber connection; it cannot come back while the proxy is paused. */
  async function dropSubscriber(): Promise<void> {
    proxy.pause();
    await killSubscriber(admin, historyA, a, 5000);
  }

  return {
    a,
    b,
    url,
    c1,
    epoch,
    proxy,
    errors,
    publish,
    dropSubscriber,
    historyA: historyA as RedisHistoryEngine,
  };
}

describe('redis history: the two ways in (reads and live delivery)', () => {
  it('a message the replay returned and that is still on its way live is sent once', async () => {
    const { url, c1, epoch, proxy, publish } = await setup();
    proxy.pause(); // live messages to node A wait in the proxy
    await publish('m1', 'm2');
    // This client recovers from offset 0 while m1 and m2 are stored but not yet delivered live on node A.
    const c2 = await connect(leftovers, `${url}?since=${epoch}:0:alarms`);
    await c2.received(3);
    proxy.resume(); // now m1 and m2 arrive live: c1 needs them, c2 has them
    await publish('m3');
    await c1.received(4);
    await c2.received(4);
    expect(c1.messages.map(short)).toEqual(['sub:0', 'm:1:m1', 'm:2:m2', 'm:3:m3']);
    expect(c2.messages.map(short)).toEqual(['m:1:m1', 'm:2:m2', 'rec:2:2', 'm:3:m3']);
  });
});

describe('redis history: subscriber outage', () => {
  it('a session that had received nothing live yet gets what was published during the outage', async () => {
    const { a, c1, proxy, publish, dropSubscriber, errors } = await setup();
    await dropSubscriber();
    await publish('m1', 'm2', 'm3', 'm4', 'm5');
    proxy.resume(); // the subscriber reconnects; node A fills from the Stream
    await publish('m6');
    await c1.received(7);
    expect(c1.messages.map(short)).toEqual([
      'sub:0',
      'm:1:m1',
      'm:2:m2',
      'm:3:m3',
      'm:4:m4',
      'm:5:m5',
      'm:6:m6',
    ]);
    expect(a.stats().streams).toMatchObject({ lost: 0 });
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/subscriber connection lost/)]);
  });

  it('a session that joins during the outage is answered after the fill, at a position it can follow', async () => {
    const { url, c1, proxy, publish, dropSubscriber } = await setup();
    await publish('m1');
    await c1.received(2);
    await dropSubscriber();
    await publish('m2', 'm3');
    const c2 = await connect(leftovers, url); // its read waits for the fill
    proxy.resume();
    await c2.received(1);
    await publish('m4');
    await c1.received(5);
    await c2.received(2);
    expect(c1.messages.map(short)).toEqual(['sub:0', 'm:1:m1', 'm:2:m2', 'm:3:m3', 'm:4:m4']);
    expect(c2.messages.map(short)).toEqual(['sub:3', 'm:4:m4']);
  });

  it('when the history no longer holds what the outage missed, every session is told unrec, then live', async () => {
    const { a, url, c1, epoch, proxy, publish, dropSubscriber, errors } = await setup(2);
    await publish('m1');
    const c2 = await connect(leftovers, `${url}?since=${epoch}:0:alarms`);
    await c2.received(2);
    await c1.received(2);
    await dropSubscriber();
    await publish('m2', 'm3', 'm4', 'm5'); // the Stream keeps m4 and m5 only
    proxy.resume();
    await c1.received(3); // unrec
    await c2.received(3);
    await publish('m6');
    await c1.received(4);
    await c2.received(4);
    expect(c1.messages.map(short)).toEqual(['sub:0', 'm:1:m1', 'unrec:too-old', 'm:6:m6']);
    expect(c2.messages.map(short)).toEqual(['m:1:m1', 'rec:1:1', 'unrec:too-old', 'm:6:m6']);
    expect(parse(c1.messages[2] as string)).toMatchObject({ epoch, offset: 5 });
    expect(a.stats().streams).toMatchObject({ lost: 1 });
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/subscriber connection lost/),
      expect.stringMatching(/cannot be delivered \(too-old\)/),
    ]);
  });
});
