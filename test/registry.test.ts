import { describe, expect, it } from 'vitest';
import { Message, SessionRegistry, encode, type DropReason, type Session } from '../src/index.js';
import { MemoryTransport } from './support/memory.js';

function setup(options?: ConstructorParameters<typeof SessionRegistry>[0]) {
  const registry = new SessionRegistry(options);
  const errors: Error[] = [];
  registry.on('error', (e) => errors.push(e));
  return { registry, transport: new MemoryTransport(registry), errors };
}

describe('SessionRegistry options', () => {
  it('throws TypeError/RangeError naming the option', () => {
    expect(() => new SessionRegistry({ backpressure: { limit: 0 } })).toThrow(RangeError);
    expect(() => new SessionRegistry({ backpressure: { limit: 0 } })).toThrow(/"backpressure.limit"/);
    expect(() => new SessionRegistry({ backpressure: { limit: 1.5 } })).toThrow(TypeError);
    expect(() => new SessionRegistry({ backpressure: { policy: 'wait' as 'drop' } })).toThrow(
      /"backpressure.policy"/,
    );
    expect(() => new SessionRegistry({ backpressure: { closeCode: 1005 } })).toThrow(
      /"backpressure.closeCode"/,
    );
    expect(() => new SessionRegistry({ closeTimeout: -1 })).toThrow(/"closeTimeout"/);
    expect(() => new SessionRegistry({ nodeId: '' })).toThrow(/"nodeId"/);
    expect(() => new SessionRegistry({ broker: {} as never })).toThrow(/"broker"/);
    expect(() => new SessionRegistry({ limit: 5 } as never)).toThrow(/Unknown option "limit"/);
    expect(() => new SessionRegistry('x' as never)).toThrow(TypeError);
  });

  it('has documented defaults', () => {
    const registry = new SessionRegistry();
    expect(registry.options.backpressure).toEqual({
      limit: 1024 * 1024,
      policy: 'close',
      closeCode: 1013,
      softLimit: 512 * 1024,
      maxKeys: 1024,
    });
    expect(registry.options.closeTimeout).toBe(3000);
    expect(registry.nodeId).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('SessionRegistry index', () => {
  it('keeps a two-way index, deletes empty channels, and emits subscribe/unsubscribe', () => {
    const { registry, transport } = setup();
    const log: string[] = [];
    registry.on('subscribe', (_s, c) => log.push(`+${c}`));
    registry.on('unsubscribe', (_s, c) => log.push(`-${c}`));
    const a = transport.open(['x', 'y']);
    const b = transport.open(['y']);
    expect(registry.channels().sort()).toEqual(['x', 'y']);
    expect(registry.count('y')).toBe(2);
    expect(registry.sessions('x')).toEqual([a]);
    registry.subscribe(b, ['z', 'z']);
    registry.unsubscribe(a, 'x');
    expect(registry.has('x')).toBe(false);
    expect([...a.channels]).toEqual(['y']);
    registry.unsubscribe(b);
    expect([...b.channels]).toEqual([]);
    expect(registry.channels()).toEqual(['y']);
    expect(log).toEqual(['+x', '+y', '+y', '+z', '-x', '-y', '-z']);
    expect(registry.stats()).toMatchObject({ sessions: 2, channels: 1 });
    expect(() => registry.subscribe(a, '')).toThrow(TypeError);
    expect(() => registry.subscribe('nope', 'x')).toThrow(/not open/);
  });

  it('close fires exactly once, after the session left every channel', async () => {
    const { registry, transport } = setup();
    const a = transport.open(['x', 'y']);
    const seen: string[] = [];
    registry.on('close', (s, code) => seen.push(`${code}:${s.channels.size}:${registry.count()}`));
    a.close(4001, 'done');
    a.close(4002, 'again');
    a.terminate();
    await Promise.resolve();
    expect(seen).toEqual(['1006:0:0']);
    expect(a.state).toBe('closed');
    expect(a.send('late')).toBe('closed');
    expect(registry.stats().droppedBy.closed).toBe(1);
  });
});

describe('SessionRegistry: a session closed while it opens', () => {
  it('a subscribe listener that closes the session leaves no ghost: open then close, no channel, no delivery', () => {
    const { registry, transport } = setup();
    const events: string[] = [];
    registry.on('subscribe', (s, channel) => {
      events.push(`subscribe:${channel}`);
      // The memory session reports a terminate at once, as uWS reports end() from inside the call.
      if (channel === 'a') s.terminate();
    });
    registry.on('open', () => events.push('open'));
    registry.on('close', (s, code) => events.push(`close:${code}:${s.channels.size}`));
    const session = transport.open(['a', 'b', 'c']);
    expect(events).toEqual(['subscribe:a', 'open', 'close:1006:0']);
    expect(session.state).toBe('closed');
    expect(registry.channels()).toEqual([]);
    expect(registry.count()).toBe(0);
    registry.publish(['a', 'b', 'c'], 'late');
    expect(session.received).toEqual([]);
    expect(registry.stats()).toMatchObject({ sessions: 0, channels: 0, delivered: 0 });
  });

  it('an open listener that closes the session: close follows open once, nothing stays indexed', () => {
    const { registry, transport } = setup();
    const events: string[] = [];
    registry.on('open', (s) => {
      events.push('open');
      s.terminate();
      events.push(`after terminate: ${registry.count('x')}`);
    });
    registry.on('close', () => events.push('close'));
    transport.open(['x']);
    expect(events).toEqual(['open', 'after terminate: 1', 'close']);
    expect(registry.channels()).toEqual([]);
  });
});

describe('SessionRegistry publish', () => {
  it('encodes once and hands the same Message to every session', () => {
    const { registry, transport } = setup();
    const sessions = [transport.open(['x']), transport.open(['x']), transport.open(['y'])];
    registry.publish('x', { level: 'critical' });
    const [m1, m2] = [sessions[0]?.received[0], sessions[1]?.received[0]];
    expect(m1).toBeInstanceOf(Message);
    expect(m1).toBe(m2);
    expect(m1?.data).toBe('{"level":"critical"}');
    expect(sessions[2]?.received).toEqual([]);
    expect(transport.fanouts).toBe(1);
  });

  it('encodes strings as text, bytes as binary, and rejects what JSON cannot carry', () => {
    expect(encode('hi')).toMatchObject({ data: 'hi', binary: false });
    expect(encode(new Uint8Array([1, 2]))).toMatchObject({ binary: true });
    expect(encode(new Uint8Array([1, 2])).bytes).toEqual(Buffer.from([1, 2]));
    expect(encode(new ArrayBuffer(3)).byteLength).toBe(3);
    expect(encode(42).data).toBe('42');
    expect(() => encode(undefined as never)).toThrow(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => encode(cyclic)).toThrow(/JSON/);
    expect(() => encode({ n: 1n } as never)).toThrow(/JSON/);
  });

  it('delivers once per session across several channels, honours except, validates arguments', () => {
    const { registry, transport } = setup();
    const a = transport.open(['x', 'y']);
    const b = transport.open(['y']);
    const c = transport.open(['x']);
    registry.publish(['x', 'y'], 'both');
    registry.publish('x', 'not-a', { except: a });
    registry.publish(['x', 'y'], 'not-b-or-c', { except: [b.id, c] });
    expect(a.texts()).toEqual(['both', 'not-b-or-c']);
    expect(b.texts()).toEqual(['both']);
    expect(c.texts()).toEqual(['both', 'not-a']);
    expect(() => registry.publish('', 'x')).toThrow(TypeError);
    expect(() => registry.publish([], 'x')).toThrow(TypeError);
    expect(() => registry.publish('x', undefined)).toThrow(TypeError);
    expect(registry.stats()).toMatchObject({ published: 3, delivered: 5, dropped: 0 });
  });

  it('a failing session is isolated: the loop goes on, error and drop are reported', () => {
    const { registry, transport, errors } = setup();
    const [a, b, c] = [transport.open(['x']), transport.open(['x']), transport.open(['x'])];
    b.failWith = new Error('EPIPE');
    const drops: [string, DropReason][] = [];
    registry.on('drop', (s, reason) => drops.push([s.id, reason]));
    registry.publish('x', 'm');
    expect(a.texts()).toEqual(['m']);
    expect(c.texts()).toEqual(['m']);
    expect(drops).toEqual([[b.id, 'error']]);
    expect(errors.map((e) => e.message)).toEqual(['EPIPE']);
    expect(registry.stats()).toMatchObject({ delivered: 2, dropped: 1, errors: 1 });
  });

  it('a transport whose fanout throws is reported; the other transports still deliver, on every publish path', () => {
    const { registry, transport: good, errors } = setup();
    class BrokenTransport extends MemoryTransport {
      override fanout(): void {
        throw new Error('broken transport');
      }
    }
    const broken = new BrokenTransport(registry);
    // The broken transport's sessions come first in each channel, so an unguarded loop would stop there.
    broken.open(['x', 'y']);
    const a = good.open(['x']);
    const b = good.open(['x', 'y']);
    registry.publish('x', 'plain');
    registry.publish('x', 'except', { except: a });
    registry.publish(['x', 'y'], 'union');
    registry.publish(['x', 'y'], 'union except', { except: b });
    expect(a.texts()).toEqual(['plain', 'union', 'union except']);
    expect(b.texts()).toEqual(['plain', 'except', 'union']);
    expect(errors.map((e) => e.message)).toEqual(Array(4).fill('broken transport'));
    expect(registry.stats()).toMatchObject({ published: 4, delivered: 6, errors: 4 });
  });

  it('applies the backpressure policy: drop keeps the session, close closes it with 1013', async () => {
    const { registry, transport } = setup({ backpressure: { limit: 100, policy: 'drop' } });
    const slow = transport.open(['x']);
    const fast = transport.open(['x']);
    slow.buffered = 101;
    registry.publish('x', 'a');
    registry.publish('x', 'b');
    expect(slow.texts()).toEqual([]);
    expect(fast.texts()).toEqual(['a', 'b']);
    expect(slow.state).toBe('open');
    expect(registry.stats()).toMatchObject({
      dropped: 2,
      droppedBy: { backpressure: 2 },
      closedForBackpressure: 0,
    });

    const closing = setup({ backpressure: { limit: 100, policy: 'close' } });
    const s = closing.transport.open(['x']);
    s.buffered = 101;
    const closed = new Promise<[Session, number]>((r) =>
      closing.registry.once('close', (ss, code) => r([ss, code])),
    );
    closing.registry.publish('x', 'a');
    closing.registry.publish('x', 'b');
    expect(s.closedWith).toEqual([1013, 'backpressure']);
    expect((await closed)[1]).toBe(1013);
    expect(closing.registry.stats()).toMatchObject({
      closedForBackpressure: 1,
      droppedBy: { backpressure: 1, closed: 1 },
    });
  });

  it('a throwing listener is reported as error and does not stop the registry', () => {
    const { registry, transport, errors } = setup();
    registry.on('subscribe', () => {
      throw new Error('bad listener');
    });
    const a = transport.open(['x']);
    registry.publish('x', 'm');
    expect(a.texts()).toEqual(['m']);
    expect(errors.map((e) => e.message)).toEqual(['bad listener']);
  });
});

describe('SessionRegistry close', () => {
  it('closes every session with 1001, resolves when all are gone, and is idempotent', async () => {
    const { registry, transport } = setup();
    const sessions = [transport.open(['x']), transport.open(['y'])];
    const first = registry.close();
    expect(registry.close()).toBe(first);
    await first;
    expect(sessions.map((s) => s.closedWith)).toEqual([
      [1001, 'server shutting down'],
      [1001, 'server shutting down'],
    ]);
    expect(registry.count()).toBe(0);
    expect(() => registry.publish('x', 'late')).toThrow(/closed/);
    expect(() => registry.close(999)).toThrow(RangeError);
  });
});
