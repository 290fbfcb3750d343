/**
 * What an idle session holds, checked by what it shares and what it has not made yet (never by heap sizes or
 * timings): the bench's idle-memory scenario measures the bytes; these keep the structure that gives them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SessionRegistry } from '../src/index.js';
import { compileRoutes } from '../src/route.js';
import { MemoryTransport, type MemorySession } from './support/memory.js';

function setup() {
  const registry = new SessionRegistry();
  registry.on('error', () => {});
  return { registry, transport: new MemoryTransport(registry) };
}

describe('an idle session', () => {
  it('draws its id when it is first read; from then on the registry finds it by that id', () => {
    const { registry, transport } = setup();
    const a = transport.open(['x']);
    const b = transport.open(['x']);
    expect(a._idIfNamed).toBeNull();
    expect(registry.count()).toBe(2);
    expect(registry.sessions()).toEqual([a, b]);
    const id = a.id;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(a.id).toBe(id);
    expect(registry.get(id)).toBe(a);
    expect(b._idIfNamed).toBeNull();
    // Read while closed: never indexed. Read before: forgotten with the session.
    b.terminate();
    expect(registry.get(b.id)).toBeUndefined();
    a.terminate();
    expect(registry.get(id)).toBeUndefined();
    expect(registry.count()).toBe(0);
  });

  it('is found by its id when the id was read before it opened (by its transport, say)', () => {
    const { registry, transport } = setup();
    const s = new (transport.open([]).constructor as typeof MemorySession)({
      host: transport.host,
      data: undefined,
      params: {},
      remoteAddress: '127.0.0.1',
      backpressure: transport.host.options.backpressure,
    });
    const id = s.id;
    expect(registry.get(id)).toBeUndefined();
    transport.host.open(s, ['x']);
    expect(registry.get(id)).toBe(s);
    expect(registry.send(id, 'hi')).toBe('sent');
    registry.publish('x', 'all', { except: id });
    expect(s.texts()).toEqual(['hi']);
  });

  it('shares the options of its transport with every other session of it', () => {
    const { transport } = setup();
    const a = transport.open(['x']);
    const b = transport.open(['y']);
    // One object for the host and the options, not three fields per session.
    expect(Object.getOwnPropertyNames(a)).toEqual(Object.getOwnPropertyNames(b));
    expect(Object.getOwnPropertyNames(a)).not.toContain('backpressure');
    expect(Object.getOwnPropertyNames(a)).not.toContain('host');
  });

  it('in one channel alone shares one frozen channel list with every session alone in that channel', () => {
    const { registry, transport } = setup();
    const a = transport.open(['x']);
    const b = transport.open([['x'][0] as string]);
    expect(a._channels).toBe(b._channels);
    expect(Object.isFrozen(a._channels)).toBe(true);
    registry.subscribe(a, 'y');
    expect(a._channels).toEqual(['x', 'y']);
    registry.unsubscribe(a, 'x');
    expect(a._channels).toBe(transport.open(['y'])._channels);
    registry.unsubscribe(a);
    expect(a._channels).toEqual([]);
  });

  it('channel lists stay exact and shared under any joins and leaves (property)', () => {
    const channels = ['a', 'b', 'c'];
    const op = fc.record({
      session: fc.nat({ max: 3 }),
      channel: fc.constantFrom(...channels),
      join: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const { registry, transport } = setup();
        const sessions = [0, 1, 2, 3].map(() => transport.open([]));
        const model = sessions.map(() => [] as string[]);
        for (const { session, channel, join } of ops) {
          const list = model[session] as string[];
          if (join) {
            registry.subscribe(sessions[session] as MemorySession<unknown>, channel);
            if (!list.includes(channel)) list.push(channel);
          } else {
            registry.unsubscribe(sessions[session] as MemorySession<unknown>, channel);
            if (list.includes(channel)) list.splice(list.indexOf(channel), 1);
          }
        }
        sessions.forEach((s, i) => expect(s._channels).toEqual(model[i]));
        for (const c of channels) {
          const alone = sessions.filter((s) => s._channels.length === 1 && s._channels[0] === c);
          for (const s of alone) expect(s._channels).toBe(alone[0]?._channels);
          expect(registry.count(c)).toBe(model.filter((l) => l.includes(c)).length);
        }
      }),
    );
  });
});

describe('route params', () => {
  it('are one frozen object per path, shared by every match of it', () => {
    const match = compileRoutes(['/a/:channel', '/b/:x/:y']);
    const p = match('/a/alarms');
    expect(p).toEqual({ channel: 'alarms' });
    expect(match('/a/alarms')).toBe(p);
    expect(Object.isFrozen(p)).toBe(true);
    expect(match('/a/other')).toEqual({ channel: 'other' });
    expect(match('/b/1/2')).toEqual({ x: '1', y: '2' });
    expect(match('/c')).toBeNull();
  });
});
