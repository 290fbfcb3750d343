/**
 * Slow consumers across nodes: `key` and `volatile` published on node A travel in the broker envelope and apply
 * to a slow session on node B (this transport), over the real Redis and the real NATS on this machine.
 */
import { connect as natsConnect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { natsBroker } from '../../brokers/nats.js';
import { redisBroker } from '../../brokers/redis.js';
import { bindPrometheus } from '../../metrics/prometheus.js';
import { SessionRegistry, type Broker, type Session } from '../../src/index.js';
import { connect, type Leftovers } from './clients.js';
import {
  KEYS,
  ROUNDS,
  FILLER,
  LIMIT,
  fallBehind,
  publishRotatingKeys,
  publishVolatile,
  resumeAndDrain,
  slowOptions,
} from './suite-slow.js';
import type { SuiteContext } from './suite.js';

const run = `${process.pid}-${Date.now().toString(36)}`;
let tests = 0;

interface Engine {
  name: string;
  /** A broker on its own new connection, in a namespace of its own for this test. */
  broker(leftovers: Leftovers, space: string): Promise<{ broker: Broker; idle(): Promise<void> }>;
}

const ENGINES: Engine[] = [
  {
    name: 'redis',
    async broker(leftovers, space) {
      const client = new Redis({ host: '127.0.0.1', port: 6379 });
      client.on('error', () => {});
      leftovers.add(() => client.disconnect());
      const broker = redisBroker({ client, prefix: `fanout-test:${space}:` });
      return { broker, idle: () => broker.idle() };
    },
  },
  {
    name: 'nats',
    async broker(leftovers, space) {
      const connection = await natsConnect({ servers: '127.0.0.1:4222' });
      leftovers.add(() => (connection.isClosed() ? undefined : connection.close()));
      const broker = natsBroker({ connection, prefix: `fanout-test.${space}.` });
      return { broker, idle: () => broker.idle() };
    },
  },
];

/** Node B (this transport, a healthy and a stalled client in `slow`) and node A (no sessions), one broker each. */
async function twoNodes({ start, join, leftovers }: SuiteContext, engine: Engine) {
  const space = `${run}-slow-${++tests}`;
  const onB = await engine.broker(leftovers, space);
  const b = await start({ registry: { ...slowOptions.registry, broker: onB.broker, nodeId: `B-${space}` } });
  const onA = await engine.broker(leftovers, space);
  const a = new SessionRegistry({ broker: onA.broker, nodeId: `A-${space}` });
  const errors: Error[] = [];
  a.on('error', (err) => errors.push(err));
  b.registry.on('error', (err) => errors.push(err));
  leftovers.add(() => a.close());
  const healthy = await connect(leftovers, `${b.url}/slow`);
  const stalled = await join(b, '/slow');
  await Promise.all([onA.idle(), onB.idle()]);
  // Bound through a real prom-client Registry: what B counts for remote publishes is what it exports.
  const metrics = bindPrometheus(b.registry, { register: new Registry() });
  const scrape = async (name: string) =>
    (await metrics.register.getSingleMetric(name)?.get())?.values.reduce((sum, v) => sum + v.value, 0);
  return { a, b, healthy, stalled, errors, scrape };
}

export function defineCrossNodeSlowTests(ctx: SuiteContext): void {
  for (const engine of ENGINES) {
    it(`across nodes (${engine.name}): a stalled-then-resumed client on B ends with exactly the latest value of each key published on A`, async () => {
      const { a, b, healthy, stalled, errors, scrape } = await twoNodes(ctx, engine);
      const drops: string[] = [];
      b.registry.on('drop', (session: Session, reason) => drops.push(`${session.id}:${reason}`));
      const fillers = await fallBehind(b, stalled);
      // The healthy client has every filler: nothing is on its way to it, so nothing is held for it from here.
      await healthy.received(fillers - 1, 30_000);
      const before = b.registry.stats();

      const published = await publishRotatingKeys(a);
      // The healthy client on B got every update: B has handled every remote publish.
      await healthy.received(fillers - 1 + published.length, 30_000);
      expect(healthy.messages.slice(fillers - 1)).toEqual(published);
      const held = b.registry.stats();
      expect(held.broker.received - before.broker.received).toBe(published.length);
      expect(held.held).toBe(KEYS.length);
      expect(held.conflated - before.conflated).toBe(KEYS.length * (ROUNDS - 1));
      expect(await scrape('fanout_conflated_total')).toBe(held.conflated);
      expect(await scrape('fanout_held_messages')).toBe(KEYS.length);
      expect(await scrape('fanout_broker_received_total')).toBe(held.broker.received);
      expect(await scrape('fanout_broker_malformed_total')).toBe(0);
      expect(stalled.session.state).toBe('open');
      // Node A has no session: nothing held or conflated there.
      expect(a.stats().conflated).toBe(0);

      stalled.client.socket.resume();
      await stalled.client.received(fillers + KEYS.length, 30_000);
      expect(stalled.client.messages.slice(fillers)).toEqual(published.slice(-KEYS.length));
      const after = b.registry.stats();
      expect(after.held).toBe(0);
      expect(after.conflated - before.conflated).toBe(KEYS.length * (ROUNDS - 1));
      expect(after.delivered - before.delivered).toBe(published.length + KEYS.length);
      expect(after.dropped).toBe(0);
      expect(drops).toEqual([]);
      expect(errors).toEqual([]);
    }, 90_000);

    it(`across nodes (${engine.name}): volatile publishes from A are skipped for a behind session on B, counted, never a close`, async () => {
      const { a, b, healthy, stalled, errors, scrape } = await twoNodes(ctx, engine);
      let closes = 0;
      b.registry.on('close', () => closes++);
      const fillers = await fallBehind(b, stalled);
      // The healthy client has every filler: nothing is on its way to it, so nothing is skipped for it from here.
      await healthy.received(fillers - 1, 30_000);
      const before = b.registry.stats();

      // Far more volatile bytes than the limit: skipped on B, so the session stays within it and open.
      const volatile = Math.ceil((2 * LIMIT) / FILLER);
      await publishVolatile(a, healthy, fillers - 1, volatile);
      const mid = b.registry.stats();
      expect(mid.broker.received - before.broker.received).toBe(volatile);
      expect(mid.skipped - before.skipped).toBe(volatile);
      expect(mid.dropped).toBe(0);
      expect(mid.closedForBackpressure).toBe(0);
      expect(mid.delivered - before.delivered).toBe(volatile); // the healthy client's copies
      expect(await scrape('fanout_skipped_total')).toBe(mid.skipped);
      expect(await scrape('fanout_dropped_total')).toBe(0);
      expect(stalled.session.state).toBe('open');

      await resumeAndDrain(stalled, fillers);
      // Caught up: a volatile publish from A reaches it again; nothing of the skipped ones ever arrives.
      a.publish('slow', 'tick after', { volatile: true });
      await stalled.client.received(fillers + 1, 10_000);
      expect(stalled.client.messages.slice(fillers)).toEqual(['tick after']);
      expect(b.registry.stats().skipped - before.skipped).toBe(volatile);
      expect(closes).toBe(0);
      expect(errors).toEqual([]);
    }, 90_000);
  }
}
