/**
 * History is bounded by age as well as by count: the in-memory ring drops what is older than `ttl` (a recovery
 * that needs it is unrecoverable, `too-old`), and Redis drops a channel's whole history (with its epoch) after
 * `ttl` without a publish (a recovery finds a new epoch). Engine-level tests: the memory engine on a fake
 * clock, the Redis engine on the real server.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { natsHistory } from '../../brokers/nats-history.js';
import { redisHistory } from '../../brokers/redis-history.js';
import { encode, memoryHistory, type HistoryContext, type HistoryRead } from '../../src/index.js';

const context = (): HistoryContext & { frames: number } => {
  const c = {
    frames: 0,
    deliver: () => void c.frames++,
    error: (err: unknown) => {
      throw err;
    },
    lost: () => {},
  };
  return c;
};

afterEach(() => {
  vi.useRealTimers();
});

describe('history age (ttl)', () => {
  it('memory: entries older than ttl are gone; a recovery that needs one is too-old, a newer one still works', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const history = memoryHistory({ size: 100, ttl: 1000 });
    const c = context();
    history.start(c);
    for (const text of ['a', 'b', 'c']) await history.publish('alarms', encode(text));
    const start = (await history.read('alarms', null)) as HistoryRead & { ok: true };
    const epoch = start.position!.epoch;
    expect(start.position).toEqual({ epoch, offset: 3 });
    // Within the ttl: everything after offset 1 is there.
    vi.advanceTimersByTime(999);
    const fresh = (await history.read('alarms', { epoch, offset: 1 })) as HistoryRead & { ok: true };
    expect(fresh.ok).toBe(true);
    expect(fresh.entries.map((e) => e.offset)).toEqual([2, 3]);
    // Past it: a, b and c are gone, d (published now) is kept.
    vi.advanceTimersByTime(2);
    await history.publish('alarms', encode('d'));
    expect(await history.read('alarms', { epoch, offset: 1 })).toMatchObject({
      ok: false,
      reason: 'too-old',
    });
    const recent = (await history.read('alarms', { epoch, offset: 3 })) as HistoryRead & { ok: true };
    expect(recent.ok).toBe(true);
    expect(recent.entries).toHaveLength(1);
    expect(c.frames).toBe(4);
    await history.close();
  });

  it('redis: a channel without a publish for ttl loses its history and its epoch', async () => {
    const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
    await client.connect();
    const history = redisHistory({ client, prefix: `test-age-${randomUUID()}:`, ttl: 1000 });
    try {
      history.start(context());
      await history.publish('alarms', encode('a'));
      await history.publish('alarms', encode('b'));
      const before = await history.read('alarms', null);
      expect(before.ok).toBe(true);
      const position = before.position!;
      expect(position.offset).toBe(2);
      expect(await history.read('alarms', { epoch: position.epoch, offset: 1 })).toMatchObject({ ok: true });
      // Bounded wait: ttl plus margin; Redis expires the keys on access past their PEXPIRE.
      await sleep(1600);
      const after = await history.read('alarms', { epoch: position.epoch, offset: 1 });
      expect(after).toMatchObject({ ok: false, reason: 'epoch' });
      expect(after.position?.epoch).not.toBe(position.epoch);
      expect(after.position?.offset).toBe(0);
    } finally {
      await history.close();
      client.disconnect();
    }
  });

  it('nats: messages older than ttl leave the stream (max_age); a recovery that needs them is refused', async () => {
    const nc = await connect({ servers: '127.0.0.1:4222' });
    const jsm = await jetstreamManager(nc);
    const stream = `test_age_${randomUUID().replace(/-/g, '')}`;
    const history = natsHistory({ manager: jsm, stream, prefix: `${stream}.`, ttl: 1000 });
    try {
      history.start(context());
      await history.subscribe('alarms');
      await history.publish('alarms', encode('a'));
      await history.publish('alarms', encode('b'));
      const before = await history.read('alarms', null);
      const position = before.position!;
      expect(position.offset).toBe(2);
      expect(await history.read('alarms', { epoch: position.epoch, offset: 1 })).toMatchObject({ ok: true });
      // JetStream removes them once max_age passed: poll, bounded (5 s for a ttl of 1 s).
      let after = await history.read('alarms', { epoch: position.epoch, offset: 1 });
      for (let i = 0; i < 25 && after.ok; i++) {
        await sleep(200);
        after = await history.read('alarms', { epoch: position.epoch, offset: 1 });
      }
      expect(after.ok).toBe(false);
      expect(['too-old', 'epoch']).toContain((after as HistoryRead & { ok: false }).reason);
    } finally {
      await history.close();
      await jsm.streams.delete(stream).catch(() => false);
      await nc.close();
    }
  });
});
