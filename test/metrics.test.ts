// fanout/metrics/prometheus against a real prom-client Registry. The registry's sessions are in-memory (this
// tests the exporter); the demo's /metrics test scrapes the same metrics over real sockets.
import fc from 'fast-check';
import { Histogram, Registry, type Metric } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SessionRegistry } from '../src/index.js';
import { DurationHistogram } from '../metrics/duration.js';
import { DEFAULT_FANOUT_BUCKETS, bindPrometheus, closeCodeClass } from '../metrics/prometheus.js';
import { MemoryTransport } from './support/memory.js';

async function values(register: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of await register.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const labels = Object.entries(v.labels)
        .map(([k, l]) => `${k}="${String(l)}"`)
        .join(',');
      const name = (v as { metricName?: string }).metricName ?? metric.name;
      out.set(labels === '' ? name : `${name}{${labels}}`, v.value);
    }
  }
  return out;
}

describe('fanout/metrics/prometheus', () => {
  it('exports the slow-consumer counters and the fan-out histogram; unbind removes everything', async () => {
    const registry = new SessionRegistry({ backpressure: { limit: 1000, softLimit: 100 } });
    const transport = new MemoryTransport(registry);
    const register = new Registry();
    const binding = bindPrometheus(registry, { register });
    expect(binding.names.every((n) => n.startsWith('fanout_'))).toBe(true);
    const slow = transport.open(['x']);
    transport.open(['x']);
    slow.buffered = 500;
    registry.publish('x', 'k1', { key: 'k' });
    registry.publish('x', 'k2', { key: 'k' });
    registry.publish('x', 'v', { volatile: true });
    let m = await values(register);
    expect(m.get('fanout_sessions{transport="memory"}')).toBe(2);
    expect(m.get('fanout_published_total')).toBe(3);
    expect(m.get('fanout_delivered_total')).toBe(3);
    expect(m.get('fanout_conflated_total')).toBe(1);
    expect(m.get('fanout_held_messages')).toBe(1);
    expect(m.get('fanout_skipped_total')).toBe(1);
    expect(m.get('fanout_publish_duration_seconds_count')).toBe(3);

    slow.buffered = 0;
    slow.drained();
    slow.close(4000, 'bye');
    await new Promise<void>((resolve) => registry.once('close', () => resolve()));
    m = await values(register);
    expect(m.get('fanout_held_messages')).toBe(0);
    expect(m.get('fanout_delivered_total')).toBe(4);
    expect(m.get('fanout_sessions{transport="memory"}')).toBe(1);
    expect(m.get('fanout_closes_total{code="4xxx"}')).toBe(1);

    binding.unbind();
    binding.unbind();
    expect(await register.getMetricsAsJSON()).toEqual([]);
    registry.publish('x', 'after');
    // Bound again after unbind: a fresh set, no collision.
    bindPrometheus(registry, { register });
    expect((await values(register)).get('fanout_publish_duration_seconds_count')).toBe(0);
    await registry.close();
  });

  it('exports the publishes held for a busy channel (coalesceWindow) until they are fanned out', async () => {
    const registry = new SessionRegistry();
    // A transport that declares a window: the registry holds what is published to its busy channels.
    const transport = Object.assign(new MemoryTransport(registry), { coalesceWindow: 1000 });
    const register = new Registry();
    bindPrometheus(registry, { register });
    const session = transport.open(['x']);
    registry.publish('x', 'first');
    await new Promise((resolve) => setImmediate(resolve));
    registry.publish('x', 'second');
    expect((await values(register)).get('fanout_coalescing_publishes')).toBe(1);
    expect(session.texts()).toEqual(['first']);
    // Released by a direct send, which must come after it.
    session.send('direct');
    expect(session.texts()).toEqual(['first', 'second', 'direct']);
    expect((await values(register)).get('fanout_coalescing_publishes')).toBe(0);
    await registry.close();
  });

  it('validates its arguments, naming them, and refuses a second registry on one Registry', () => {
    const registry = new SessionRegistry();
    const register = new Registry();
    expect(() => bindPrometheus({} as SessionRegistry)).toThrow(/"registry"/);
    expect(() => bindPrometheus(registry, { register: {} as Registry })).toThrow(/"register"/);
    expect(() => bindPrometheus(registry, { register, buckets: [0.1, 0.05] })).toThrow(/"buckets"/);
    expect(() => bindPrometheus(registry, { register, bucket: [1] } as never)).toThrow(/"bucket"/);
    bindPrometheus(registry, { register });
    expect(() => bindPrometheus(new SessionRegistry(), { register })).toThrow(/already has fanout metrics/);
  });

  it('labels close codes by bounded classes', () => {
    expect([1000, 1006, 1013, 3001, 4999, 2000].map(closeCodeClass)).toEqual([
      '1000',
      '1006',
      '1013',
      '3xxx',
      '4xxx',
      'other',
    ]);
  });

  it("property: the allocation-free duration histogram scrapes exactly as prom-client's Histogram, merged too", async () => {
    const seconds = fc.oneof(
      fc.double({ min: 0, max: 2, noNaN: true }),
      fc.constantFrom(...DEFAULT_FANOUT_BUCKETS), // on a bound: `le` includes it
    );
    await fc.assert(
      fc.asyncProperty(fc.array(seconds, { maxLength: 200 }), async (observations) => {
        const mine = new Registry();
        const theirs = new Registry();
        const help = 'How long.';
        const ours = new DurationHistogram('d_seconds', help, DEFAULT_FANOUT_BUCKETS);
        mine.registerMetric(ours as unknown as Metric);
        const reference = new Histogram({
          name: 'd_seconds',
          help,
          buckets: [...DEFAULT_FANOUT_BUCKETS],
          registers: [theirs],
        });
        for (const s of observations) {
          ours.observe(s);
          reference.observe(s);
        }
        expect(await mine.metrics()).toBe(await theirs.metrics());
        const merged = Registry.merge([mine, new Registry()]);
        expect(await merged.metrics()).toBe(await theirs.metrics());
        ours.reset();
        reference.reset();
        reference.zero({});
        expect(await mine.metrics()).toBe(await theirs.metrics());
      }),
      { numRuns: 200 },
    );
  });
});
