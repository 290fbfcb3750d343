/**
 * Slow consumers, the conformance part: conflation (`key`) and volatile messages to a client that stops reading
 * (its socket is paused, so the server's buffer for it grows past the soft limit) while a healthy client reads.
 */
import { expect, it } from 'vitest';
import type { Session, SessionRegistry } from '../../src/index.js';
import { connect, within, type Client } from './clients.js';
import type { Joined, SuiteContext } from './suite.js';
import type { Started } from './harness.js';

const SOFT_LIMIT = 128 * 1024;
export const LIMIT = 4 * 1024 * 1024;
export const FILLER = 16 * 1024;
const MAX_BYTES = 128 * 1024 * 1024; // far beyond any loopback socket buffer
export const KEYS = ['a', 'b', 'c', 'd', 'e'];
export const ROUNDS = 20;

export const slowOptions = {
  registry: { backpressure: { limit: LIMIT, softLimit: SOFT_LIMIT, policy: 'close' as const } },
};

export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Publishes plain 16 KiB messages, a few per turn, until the paused client's session is past the soft limit,
 * then sends it one more message directly: a transport that learns a session's buffered bytes lazily (uWS)
 * reads them on a direct send, so from here on every message reaches the session's policy. Returns how many
 * messages were published and sent.
 */
export async function fallBehind(s: Started, stalled: Joined<unknown>): Promise<number> {
  stalled.client.socket.pause();
  const payload = 'f'.repeat(FILLER);
  let seq = 0;
  for (let i = 0; i < MAX_BYTES / (FILLER * 4); i++) {
    for (let k = 0; k < 4; k++) s.registry.publish('slow', `filler ${seq++} ${payload}`);
    await turn();
    if (stalled.session.bufferedAmount > SOFT_LIMIT) break;
  }
  expect(stalled.session.bufferedAmount, 'the paused session must be behind').toBeGreaterThan(SOFT_LIMIT);
  expect(stalled.session.bufferedAmount, 'and within its limit').toBeLessThanOrEqual(LIMIT);
  expect(s.registry.send(stalled.session, `filler ${seq++} direct`)).toBe('queued');
  return seq;
}

/**
 * Publishes `count` volatile 16 KiB messages (`tick <i> vvv...`) on `slow` from `registry`, four at a time, and
 * waits after each four until `healthy` has them (`base` is what it had before). So the healthy session never
 * has more than 64 KiB on its way, half its soft limit, and no volatile message is skipped for it however slow
 * the machine; the stalled session stays behind and skips every one.
 */
export async function publishVolatile(
  registry: SessionRegistry,
  healthy: Client,
  base: number,
  count: number,
): Promise<void> {
  const tick = 'v'.repeat(FILLER);
  for (let i = 0; i < count; i += 4) {
    const end = Math.min(i + 4, count);
    for (let k = i; k < end; k++) registry.publish('slow', `tick ${k} ${tick}`, { volatile: true });
    await healthy.received(base + end, 30_000);
  }
  // All of them, in order, none skipped for the healthy session.
  expect(healthy.messages.slice(base).map((m) => m.slice(0, m.indexOf(' v')))).toEqual(
    Array.from({ length: count }, (_, i) => `tick ${i}`),
  );
}

/**
 * The paused client reads again: resolves once it has the `fillers` messages it was sent and its session is back
 * within the soft limit, so that a volatile message reaches it again.
 */
export async function resumeAndDrain(stalled: Joined<unknown>, fillers: number): Promise<void> {
  stalled.client.socket.resume();
  await stalled.client.received(fillers, 30_000);
  await within(
    (async () => {
      while (stalled.session.bufferedAmount > SOFT_LIMIT) await new Promise((r) => setTimeout(r, 5));
    })(),
    30_000,
    'the stalled session to drain',
  );
}

/**
 * Publishes `key=round` on `slow` from `registry` for every key, ROUNDS times, in a rotating order, one round per
 * turn; returns the texts in publish order.
 */
export async function publishRotatingKeys(registry: SessionRegistry): Promise<string[]> {
  const published: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < KEYS.length; i++) {
      const key = KEYS[(round + i) % KEYS.length] as string;
      const text = `${key}=${round}`;
      published.push(text);
      expect(registry.publish('slow', text, { key })).toBeUndefined();
    }
    await turn();
  }
  return published;
}

export function defineSlowConsumerTests({ start, join, leftovers }: SuiteContext): void {
  const options = slowOptions;

  it('conflation: a stalled-then-resumed client ends with exactly the latest value of each key, in order of last update', async () => {
    const s = await start(options);
    const healthy = await connect(leftovers, `${s.url}/slow`);
    const stalled = await join(s, '/slow');
    const drops: string[] = [];
    s.registry.on('drop', (session: Session, reason) => drops.push(`${session.id}:${reason}`));
    const fillers = await fallBehind(s, stalled);
    // The healthy client has every filler: nothing is on its way to it, so nothing is held for it from here.
    await healthy.received(fillers - 1, 30_000);
    const before = s.registry.stats();

    const published = await publishRotatingKeys(s.registry);
    const held = s.registry.stats();
    expect(held.held).toBe(KEYS.length);
    expect(held.conflated - before.conflated).toBe(KEYS.length * (ROUNDS - 1));
    expect(stalled.session.state).toBe('open');

    // The healthy client got every update.
    await healthy.received(fillers - 1 + published.length, 30_000);
    expect(healthy.messages.slice(fillers - 1)).toEqual(published);

    // Resumed: it reads its backlog, then the latest value of each key, in the order of the last round.
    stalled.client.socket.resume();
    await stalled.client.received(fillers + KEYS.length, 30_000);
    const last = published.slice(-KEYS.length);
    expect(stalled.client.messages.slice(fillers)).toEqual(last);
    expect(stalled.client.messages.slice(0, fillers).every((m) => m.startsWith('filler '))).toBe(true);

    const after = s.registry.stats();
    expect(after.held).toBe(0);
    expect(after.conflated - before.conflated).toBe(KEYS.length * (ROUNDS - 1));
    // Two recipients: the healthy one got every update, the stalled one one per key.
    expect(after.delivered - before.delivered).toBe(published.length + KEYS.length);
    expect(after.dropped).toBe(0);
    expect(drops).toEqual([]);

    // Caught up: a keyed message goes straight out again.
    s.registry.publish('slow', 'a=final', { key: 'a' });
    await stalled.client.received(fillers + KEYS.length + 1, 10_000);
    expect(stalled.client.messages.at(-1)).toBe('a=final');
    expect(s.registry.stats().conflated).toBe(after.conflated);
  }, 90_000);

  it('volatile: messages to a stalled client are skipped and counted, never dropped, never a close', async () => {
    const s = await start(options);
    const healthy = await connect(leftovers, `${s.url}/slow`);
    const stalled = await join(s, '/slow');
    let closes = 0;
    s.registry.on('close', () => closes++);
    const fillers = await fallBehind(s, stalled);
    // The healthy client has every filler: nothing is on its way to it, so nothing is skipped for it from here.
    await healthy.received(fillers - 1, 30_000);
    const before = s.registry.stats();

    // Far more volatile bytes than the limit: skipped, so the session stays within it and open.
    const volatile = Math.ceil((2 * LIMIT) / FILLER);
    await publishVolatile(s.registry, healthy, fillers - 1, volatile);
    const mid = s.registry.stats();
    expect(mid.skipped - before.skipped).toBe(volatile);
    expect(mid.dropped).toBe(0);
    expect(mid.closedForBackpressure).toBe(0);
    expect(mid.delivered - before.delivered).toBe(volatile); // the healthy client's copies
    expect(stalled.session.state).toBe('open');

    // Caught up: a volatile message reaches it again. Nothing of the skipped ones ever arrives.
    await resumeAndDrain(stalled, fillers);
    s.registry.publish('slow', 'tick after', { volatile: true });
    await stalled.client.received(fillers + 1, 10_000);
    expect(stalled.client.messages.slice(fillers)).toEqual(['tick after']);
    expect(stalled.client.messages.some((m) => m.startsWith('tick ') && m !== 'tick after')).toBe(false);
    expect(s.registry.stats().skipped - before.skipped).toBe(volatile);
    expect(closes).toBe(0);
  }, 90_000);
}
