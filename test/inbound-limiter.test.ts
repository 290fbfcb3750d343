/** The inbound token buckets, with the clock passed in (pure unit tests; the socket tests are in transports/). */
import { describe, expect, it } from 'vitest';
import { DEFAULT_INBOUND_LIMIT, InboundLimiter } from '../src/index.js';
import { resolveInboundLimit } from '../src/options.js';

const limits = Object.freeze({
  messagesPerSecond: 10,
  messageBurst: 20,
  bytesPerSecond: 1000,
  byteBurst: 2000,
});

describe('InboundLimiter', () => {
  it('lets a full burst through at once, then refuses the next message', () => {
    const bucket = new InboundLimiter(limits, 0);
    for (let i = 0; i < 20; i++) expect(bucket.take(1, 0)).toBe(true);
    expect(bucket.take(1, 0)).toBe(false);
  });

  it('refills at the rate: one message per 100 ms at 10/s, never above the burst', () => {
    const bucket = new InboundLimiter(limits, 0);
    for (let i = 0; i < 20; i++) bucket.take(1, 0);
    expect(bucket.take(1, 50)).toBe(false);
    expect(bucket.take(1, 100)).toBe(true);
    expect(bucket.take(1, 100)).toBe(false);
    // An hour idle refills to the burst, not beyond.
    let passed = 0;
    while (passed < 100 && bucket.take(1, 3_600_100)) passed++;
    expect(passed).toBe(20);
  });

  it('counts bytes on their own bucket; a refused message takes nothing', () => {
    const bucket = new InboundLimiter(limits, 0);
    expect(bucket.take(1500, 0)).toBe(true);
    expect(bucket.take(600, 0)).toBe(false);
    expect(bucket.take(500, 0)).toBe(true);
    expect(bucket.take(1, 0)).toBe(false);
    expect(bucket.take(1, 1)).toBe(true); // 1 ms refills 1 byte; message tokens were left untouched
  });

  it('sustains exactly the rate over a long run', () => {
    const bucket = new InboundLimiter(limits, 0);
    let passed = 0;
    // A client trying 1,000 messages/s for 10 s: the burst plus 10/s.
    for (let ms = 0; ms < 10_000; ms++) if (bucket.take(1, ms)) passed++;
    expect(passed).toBeGreaterThanOrEqual(20 + 99);
    expect(passed).toBeLessThanOrEqual(20 + 100);
  });
});

describe('resolveInboundLimit', () => {
  it('defaults to DEFAULT_INBOUND_LIMIT, grows an unset byteBurst to maxPayload, and takes false', () => {
    expect(resolveInboundLimit(undefined, 64 * 1024)).toEqual(DEFAULT_INBOUND_LIMIT);
    expect(resolveInboundLimit(undefined, 4 * 1024 * 1024)).toMatchObject({ byteBurst: 4 * 1024 * 1024 });
    expect(resolveInboundLimit(false, 1024)).toBe(false);
    expect(resolveInboundLimit({ messagesPerSecond: 5 }, 1024)).toMatchObject({
      messagesPerSecond: 5,
      messageBurst: 200,
    });
  });
});
