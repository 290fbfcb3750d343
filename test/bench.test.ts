/**
 * Smoke test of the benchmark harness (the bench itself is not part of `npm test`): the frame parser, the
 * histogram, the run verdicts, and a tiny real run over loopback sockets whose counted deliveries must be
 * exactly N x M.
 */
import { describe, expect, it } from 'vitest';
import { FrameReader, findStamp, readDigits } from '../bench/frames.js';
import { Clients, Server, burst, judge, type Measured } from '../bench/harness.js';
import { createHistogram, percentiles, record } from '../bench/histogram.js';
import { mergeResults } from '../bench/merge.js';
import { liveChildren } from '../bench/proc.js';
import { makePayload, type Target } from '../bench/protocol.js';
import { bestOf } from '../bench/scenarios.js';

function serverFrame(payload: Buffer, op = 1): Buffer {
  const len = payload.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | op, len])
      : len < 65536
        ? Buffer.from([0x80 | op, 126, len >> 8, len & 255])
        : Buffer.concat([
            Buffer.from([0x80 | op, 127, 0, 0, 0, 0]),
            Buffer.from([len >>> 24, (len >> 16) & 255, (len >> 8) & 255, len & 255]),
          ]);
  return Buffer.concat([head, payload]);
}

describe('bench frame reader', () => {
  it('finds every frame and its stamp whatever the chunk boundaries, for 7-bit, 16-bit and 64-bit lengths', () => {
    const sizes = [64, 200, 70_000];
    const wire = Buffer.concat(
      sizes.map((size, i) => serverFrame(Buffer.from(makePayload(i + 1, size, 123456789012345n)))),
    );
    for (const step of [1, 3, 7, 100, 4096, wire.length]) {
      const reader = new FrameReader();
      const seen: { seq: number; ts: number; length: number }[] = [];
      for (let at = 0; at < wire.length; at += step) {
        reader.feed(wire.subarray(at, at + step), (op, buf, start, available, length) => {
          expect(op).toBe(1);
          const k = findStamp(buf, start, available);
          expect(k).toBe(start);
          seen.push({
            seq: readDigits(buf, k + 1, 10),
            ts: readDigits(buf, k + 12, 10) * 1e10 + readDigits(buf, k + 22, 10),
            length,
          });
        });
      }
      expect(seen).toEqual(sizes.map((size, i) => ({ seq: i + 1, ts: 123456789012345, length: size })));
    }
  });
});

describe('bench statistics and verdicts', () => {
  it('reports percentiles within the histogram precision', () => {
    const h = createHistogram();
    for (let us = 1; us <= 100_000; us++) record(h, us);
    const p = percentiles(h);
    expect(p.count).toBe(100_000);
    expect(p.p50).toBeGreaterThan(50 * 0.98);
    expect(p.p50).toBeLessThan(50 * 1.02);
    expect(p.p99).toBeGreaterThan(99 * 0.98);
    expect(p.p99).toBeLessThan(99 * 1.02);
  });

  it('marks a run with loss, reorder or a saturated load generator invalid', () => {
    const base = mergeResults(1, []);
    const run = (over: Partial<typeof base>): Measured =>
      judge(10, 10, 5, 64, {
        load: {
          ...base,
          received: 50,
          complete: 10,
          clients: 10,
          firstRecvNs: 2e9,
          lastRecvNs: 3e9,
          wallNs: 1e9,
          ...over,
        },
        server: {
          op: 'published',
          id: 1,
          count: 5,
          firstNs: 1_000_000_000n,
          lastNs: 1_500_000_000n,
          lagNs: 0n,
          cpuUs: 0,
          rss: 0,
        },
        timedOut: false,
        cpu: { wallUs: 2e6, serverUs: 1e6, machineUs: 2e6, runnerUs: 0 },
      });
    const ok = run({});
    expect(ok.valid).toBe(true);
    expect(ok.deliveriesPerSec).toBeCloseTo(25, 5); // 50 deliveries in 2 s
    expect(run({ received: 49 }).problems).toEqual(['lost 1 of 50 deliveries']);
    expect(run({ disordered: 2 }).valid).toBe(false);
    expect(run({ maxElu: 0.97 }).problems[0]).toMatch(/saturated/);
    expect(run({ maxElu: 0.97, lastRecvNs: 2.05e9, wallNs: 0.05e9 }).valid).toBe(true); // too short to judge
  });

  it('reports the best valid repeat, but never hides a loss in any repeat', () => {
    const base = mergeResults(1, []);
    const run = (received: number, lastRecvNs: number, maxElu = 0): Measured =>
      judge(10, 10, 5, 64, {
        load: {
          ...base,
          received,
          complete: 10,
          clients: 10,
          firstRecvNs: 1.5e9,
          lastRecvNs,
          wallNs: 1e9,
          maxElu,
        },
        server: {
          op: 'published',
          id: 1,
          count: 5,
          firstNs: 1_000_000_000n,
          lastNs: 1_500_000_000n,
          lagNs: 0n,
          cpuUs: 0,
          rss: 0,
        },
        timedOut: false,
        cpu: { wallUs: 2e6, serverUs: 1e6, machineUs: 2e6, runnerUs: 0 },
      });
    const slow = run(50, 3e9);
    const fast = run(50, 2e9);
    const saturatedFaster = run(50, 1.9e9, 0.99);
    expect(bestOf([slow, fast, saturatedFaster])).toBe(fast);
    const lossy = bestOf([fast, run(49, 2e9)]);
    expect(lossy.valid).toBe(false);
    expect(lossy.problems).toEqual(['lost 1 of 50 deliveries']);
    expect(bestOf([saturatedFaster]).valid).toBe(false);
  });
});

describe('bench harness over loopback', () => {
  async function tiny(target: Target): Promise<Measured[]> {
    const server = new Server(target);
    const clients = new Clients(20, 1);
    try {
      await server.start({ limit: 1024 * 1024, policy: 'close' });
      await clients.connect(server, 20_000);
      return [
        await burst(server, clients, 10, 64, 'turn1'),
        await burst(server, clients, 10, 1024, 'turn10'),
      ];
    } finally {
      await clients.stop();
      await server.stop();
    }
  }

  it('counts exactly N x M deliveries through both fanout transports and through Socket.IO', async () => {
    // ws-stream: the stamp is found after a stream channel's header too.
    for (const target of ['ws', 'uws', 'socketio', 'ws-stream'] as const) {
      for (const m of await tiny(target)) {
        expect(m.problems).toEqual([]);
        expect(m.received).toBe(20 * 10);
        expect(m.expected).toBe(20 * 10);
        expect(m.latency.count).toBe(20 * 10);
        expect(m.deliveriesPerSec).toBeGreaterThan(0);
      }
    }
    expect(liveChildren()).toBe(0);
  }, 120_000);
});
