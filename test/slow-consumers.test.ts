// Unit tests of the slow-consumer policy in BaseSession.deliver (conflation, volatile) with in-memory sessions;
// the same behaviour over real sockets is in test/transports/suite-slow.ts.
import { describe, expect, it } from 'vitest';
import { SessionRegistry, encode, type DropReason } from '../src/index.js';
import { MemoryTransport } from './support/memory.js';

function setup(backpressure: Record<string, unknown> = {}) {
  const registry = new SessionRegistry({
    backpressure: { limit: 1000, softLimit: 100, policy: 'close', ...backpressure },
  });
  const errors: Error[] = [];
  const drops: DropReason[] = [];
  registry.on('error', (e) => errors.push(e));
  registry.on('drop', (_s, reason) => drops.push(reason));
  const transport = new MemoryTransport(registry);
  return { registry, transport, errors, drops };
}

describe('slow consumers: options', () => {
  it('validates softLimit and maxKeys, naming the option; softLimit follows limit', () => {
    expect(() => new SessionRegistry({ backpressure: { limit: 100, softLimit: 101 } })).toThrow(RangeError);
    expect(() => new SessionRegistry({ backpressure: { softLimit: -1 } })).toThrow(
      /"backpressure.softLimit"/,
    );
    expect(() => new SessionRegistry({ backpressure: { softLimit: 1.5 } })).toThrow(TypeError);
    expect(() => new SessionRegistry({ backpressure: { maxKeys: -1 } })).toThrow(/"backpressure.maxKeys"/);
    expect(new SessionRegistry({ backpressure: { limit: 1000 } }).options.backpressure.softLimit).toBe(500);
    expect(new SessionRegistry({ backpressure: { softLimit: 0 } }).options.backpressure.softLimit).toBe(0);
  });

  it('rejects bad key and volatile publish options, naming them', () => {
    const { registry, transport } = setup();
    transport.open(['x']);
    expect(() => registry.publish('x', 1, { key: '' })).toThrow(/"key"/);
    expect(() => registry.publish('x', 1, { key: 3 as unknown as string })).toThrow(TypeError);
    expect(() => registry.publish('x', 1, { volatile: 'yes' as unknown as boolean })).toThrow(/"volatile"/);
    expect(() => registry.publish('x', 1, { key: 'k', volatile: true })).toThrow(TypeError);
    // A key that UTF-8 would change, or too long for a broker envelope to carry, is refused up front.
    expect(() => registry.publish('x', 1, { key: 'a\uD800' })).toThrow(/"key"/);
    expect(() => registry.publish('x', 1, { key: '\uDC00b' })).toThrow(TypeError);
    expect(() => registry.publish('x', 1, { key: 'k'.repeat(1025) })).toThrow(RangeError);
    expect(registry.stats().published).toBe(0);
    registry.publish('x', 1, { key: 'k'.repeat(1024) });
    registry.publish('x', 1, { key: '\uD83D\uDE00' });
    expect(registry.stats().published).toBe(2);
  });
});

describe('slow consumers: conflation', () => {
  it('holds keyed messages for a session that is behind, latest per key, in order of last update', () => {
    const { registry, transport, drops } = setup();
    const slow = transport.open(['x']);
    const fast = transport.open(['x']);
    slow.buffered = 101;
    registry.publish('x', 'a1', { key: 'a' });
    registry.publish('x', 'b1', { key: 'b' });
    registry.publish('x', 'a2', { key: 'a' });
    registry.publish('x', 'plain');
    registry.publish('x', 'c1', { key: 'c' });
    registry.publish('x', 'b2', { key: 'b' });
    expect(fast.texts()).toEqual(['a1', 'b1', 'a2', 'plain', 'c1', 'b2']);
    // A plain message within the limit is written at once.
    expect(slow.texts()).toEqual(['plain']);
    expect(registry.stats()).toMatchObject({ held: 3, conflated: 2, dropped: 0, delivered: 7 });
    expect(slow.holding).toBe(true);

    slow.buffered = 100;
    slow.drained();
    expect(slow.texts()).toEqual(['plain', 'a2', 'c1', 'b2']);
    expect(registry.stats()).toMatchObject({ held: 0, conflated: 2, dropped: 0, delivered: 10 });
    expect(slow.holding).toBe(false);
    expect(drops).toEqual([]);
  });

  it('writes what is held before a later message once the session caught up, even without a drain call', () => {
    const { registry, transport } = setup();
    const slow = transport.open(['x']);
    slow.buffered = 500;
    registry.publish('x', 'a1', { key: 'a' });
    slow.buffered = 0;
    registry.publish('x', 'a2', { key: 'a' });
    registry.publish('x', 'next');
    expect(slow.texts()).toEqual(['a1', 'a2', 'next']);
    expect(registry.stats()).toMatchObject({ held: 0, conflated: 0, delivered: 3 });
  });

  it('keeps a held message past the limit instead of closing; a plain one still closes', async () => {
    const { registry, transport, drops } = setup();
    const slow = transport.open(['x']);
    slow.buffered = 5000;
    for (let i = 0; i < 100; i++) registry.publish('x', `v${i}`, { key: 'k' });
    expect(slow.state).toBe('open');
    expect(registry.stats()).toMatchObject({ held: 1, conflated: 99, closedForBackpressure: 0 });
    registry.publish('x', 'plain');
    expect(drops).toEqual(['backpressure']);
    expect(slow.closedWith).toEqual([1013, 'backpressure']);
    await new Promise<void>((resolve) => registry.once('close', () => resolve()));
    // The held message never left: counted as dropped, closed.
    expect(drops).toEqual(['backpressure', 'closed']);
    expect(registry.stats()).toMatchObject({
      held: 0,
      dropped: 2,
      droppedBy: { backpressure: 1, closed: 1 },
    });
  });

  it('bounds what one session holds by maxKeys: a further key goes the plain way', () => {
    const { registry, transport } = setup({ maxKeys: 2, policy: 'drop' });
    const slow = transport.open(['x']);
    slow.buffered = 500;
    registry.publish('x', 'a', { key: 'a' });
    registry.publish('x', 'b', { key: 'b' });
    registry.publish('x', 'c', { key: 'c' });
    expect(slow.texts()).toEqual(['c']);
    slow.buffered = 5000;
    registry.publish('x', 'd', { key: 'd' });
    expect(registry.stats()).toMatchObject({ held: 2, droppedBy: { backpressure: 1 } });
  });

  it('maxKeys 0 turns conflation off', () => {
    const { registry, transport } = setup({ maxKeys: 0 });
    const slow = transport.open(['x']);
    slow.buffered = 500;
    registry.publish('x', 'a', { key: 'a' });
    expect(slow.texts()).toEqual(['a']);
    expect(registry.stats().held).toBe(0);
  });
});

describe('slow consumers: volatile', () => {
  it('skips volatile messages for a session that is behind, even past the limit, and never closes it', () => {
    const { registry, transport, drops } = setup();
    const slow = transport.open(['x']);
    const fast = transport.open(['x']);
    slow.buffered = 101;
    registry.publish('x', 't1', { volatile: true });
    slow.buffered = 100_000;
    registry.publish('x', 't2', { volatile: true });
    expect(slow.texts()).toEqual([]);
    expect(fast.texts()).toEqual(['t1', 't2']);
    expect(slow.state).toBe('open');
    expect(drops).toEqual([]);
    expect(registry.stats()).toMatchObject({
      skipped: 2,
      dropped: 0,
      delivered: 2,
      closedForBackpressure: 0,
    });
    slow.buffered = 0;
    registry.publish('x', 't3', { volatile: true });
    expect(slow.texts()).toEqual(['t3']);
  });

  it('a publish with key or volatile does not change a Message passed in by the caller', () => {
    const { registry, transport } = setup();
    const s = transport.open(['x']);
    const message = encode('one');
    registry.publish('x', message, { key: 'k' });
    registry.publish('x', message, { volatile: true });
    registry.publish('x', message);
    expect(s.received.map((m) => [m.data, m.key, m.volatile])).toEqual([
      ['one', 'k', false],
      ['one', undefined, true],
      ['one', undefined, false],
    ]);
    expect(s.received[2]).toBe(message);
    expect(message.key).toBeUndefined();
  });
});
