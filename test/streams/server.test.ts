/**
 * Stream channels over real sockets on both transports: positions, the envelope, recovery with no gap and no
 * duplicate at the seam, bad positions, authorization.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { memoryHistory, SessionRegistry, type History, type HistoryRead } from '../../src/index.js';
import { connect, Leftovers, next, within } from '../transports/clients.js';
import type { StartOptions, TransportUnderTest } from '../transports/harness.js';
import { uwsHarness } from '../transports/uws-harness.js';
import { wsHarness } from '../transports/ws-harness.js';
import { parse, short, type Frame } from './frames.js';

const STREAMS = { channels: [/^alarms/, 'feed'] };

describe.each([wsHarness, uwsHarness])('streams over $name', (t: TransportUnderTest) => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());
  async function start(options: StartOptions = {}) {
    const started = await t.start(options);
    leftovers.add(() => started.close());
    return started;
  }
  /** Waits until the client recorded `n` messages, then returns them in short form. */
  async function shorts(client: { received(n: number): Promise<string[]> }, n: number) {
    return (await client.received(n)).map(short);
  }

  it('stream channels carry positions in an envelope; raw channels stay plain payloads', async () => {
    const s = await start({ registry: { streams: STREAMS } });
    const a = await connect(leftovers, `${s.url}/alarms`);
    const r = await connect(leftovers, `${s.url}/raw`);
    s.registry.publish('alarms', { level: 'critical' });
    s.registry.publish('alarms', 'text as is');
    s.registry.publish('raw', { level: 'info' });
    s.registry.publish(['alarms', 'raw'], 'both');
    const got = (await a.received(4)).map((m) => parse(m) as Frame);
    expect(got.map((f) => [f.type, f.offset, f.body])).toEqual([
      ['sub', 0, undefined],
      ['m', 1, '{"level":"critical"}'],
      ['m', 2, 'text as is'],
      ['m', 3, 'both'],
    ]);
    expect(new Set(got.map((f) => f.epoch)).size).toBe(1);
    expect(got.every((f) => f.channel === 'alarms')).toBe(true);
    expect(await r.received(2)).toEqual(['{"level":"info"}', 'both']);
    // A binary payload: a binary frame, the header then the bytes.
    s.registry.publish('alarms', Buffer.from([0, 1, 2, 255]));
    const [bin] = (await a.received(5)).slice(4);
    expect(bin?.startsWith('bin:1e5b312c226d222c22616c61726d73222c')).toBe(true);
    expect(bin?.endsWith('345d0a000102ff')).toBe(true); // ...,4]\n then the payload bytes
    expect(s.registry.stats().streams).toMatchObject({ published: 4, subscribed: 1, failed: 0 });
  });

  it('a client that reconnects with its last position gets exactly what it missed, then live', async () => {
    const s = await start({ registry: { streams: STREAMS } });
    const a = await connect(leftovers, `${s.url}/alarms`);
    for (let i = 1; i <= 3; i++) s.registry.publish('alarms', `a${i}`);
    const before = (await a.received(4)).map((m) => parse(m) as Frame);
    const last = before[3] as Frame;
    const gone = next(s.registry, 'close');
    a.socket.destroy(); // a dropped connection: no close handshake
    await gone;
    for (let i = 4; i <= 8; i++) s.registry.publish('alarms', `a${i}`);
    const b = await connect(leftovers, `${s.url}/alarms?since=${last.epoch}:${last.offset}:alarms`);
    s.registry.publish('alarms', 'a9');
    expect(await shorts(b, 7)).toEqual([
      'm:4:a4',
      'm:5:a5',
      'm:6:a6',
      'm:7:a7',
      'm:8:a8',
      'rec:8:5',
      'm:9:a9',
    ]);
    // Offset 0 ("nothing seen yet") matches any epoch: the whole history is new to it.
    const fresh = await connect(leftovers, `${s.url}/alarms?since=anyEpoch:0:alarms`);
    expect((await shorts(fresh, 10)).slice(8)).toEqual(['m:9:a9', 'rec:9:9']);
    // Nothing missed: recovered with none.
    const c = await connect(leftovers, `${s.url}/alarms?since=${last.epoch}:9:alarms`);
    s.registry.publish('alarms', 'a10');
    expect(await shorts(c, 2)).toEqual(['rec:9:0', 'm:10:a10']);
    expect(s.registry.stats().streams).toMatchObject({ recovered: 3, replayed: 14, unrecoverable: 0 });
  });

  it('history too short, wrong epoch, future and garbage positions get unrec with the reason, then live', async () => {
    const s = await start({ registry: { streams: { ...STREAMS, history: memoryHistory({ size: 3 }) } } });
    const a = await connect(leftovers, `${s.url}/alarms`);
    const sub = parse((await a.received(1))[0] as string) as Frame;
    const epoch = sub.epoch as string;
    for (let i = 1; i <= 6; i++) s.registry.publish('alarms', `a${i}`);
    await a.received(7);
    const cases: [string, string][] = [
      [`since=${epoch}:2:alarms`, 'too-old'], // needs 3..6, history holds 4..6
      [`since=someOtherEpoch:2:alarms`, 'epoch'],
      [`since=${epoch}:99:alarms`, 'future'],
      [`since=${epoch}:-1:alarms`, 'invalid'],
      [`since=${epoch}:1e3:alarms`, 'invalid'],
      [`since=${encodeURIComponent('{x}')}:3:alarms`, 'invalid'],
      [`since=${epoch}:99999999999999999999:alarms`, 'invalid'],
      [`since=${epoch}:3:alarms&since=${epoch}:4:alarms`, 'invalid'],
    ];
    for (const [query, reason] of cases) {
      const c = await connect(leftovers, `${s.url}/alarms?${query}`);
      const [first] = (await c.received(1)).map((m) => parse(m) as Frame);
      expect([query, first?.type, first?.extra, first?.offset, first?.epoch]).toEqual([
        query,
        'unrec',
        reason,
        6,
        epoch,
      ]);
    }
    // Still exact at the edge: 3..6 is all there.
    const d = await connect(leftovers, `${s.url}/alarms?since=${epoch}:3:alarms`);
    s.registry.publish('alarms', 'a7');
    expect(await shorts(d, 5)).toEqual(['m:4:a4', 'm:5:a5', 'm:6:a6', 'rec:6:3', 'm:7:a7']);
    // Garbage that names no channel, and junk of every kind, neither crashes nor replays anything.
    const junk = ['since=', 'since=:::', 'since=%FF%FE', `since=${'x'.repeat(4000)}`, 'since=a:b'];
    for (const q of junk) {
      const c = await connect(leftovers, `${s.url}/alarms?${q}`);
      s.registry.publish('alarms', 'ping');
      const got = (await c.received(2)).map(short);
      expect(got[0]).toBe(`sub:${(s.registry.stats().streams?.published ?? 0) - 1}`);
    }
  });

  it('recovery never returns messages of a channel the session may not join', async () => {
    const s = await start({
      registry: { streams: STREAMS },
      transport: { authenticate: () => ({ channels: ['alarms-public'] }) },
    });
    const spy = await connect(leftovers, `${s.url}/x`);
    for (let i = 1; i <= 3; i++) s.registry.publish('alarms-secret', `secret${i}`);
    s.registry.publish('alarms-public', 'pub1');
    await spy.received(2);
    // Ask for the secret channel's history with a position of its own epoch: it is not its channel.
    const spyFrames = spy.messages.map((m) => parse(m) as Frame);
    const publicEpoch = spyFrames[0]?.epoch as string;
    const c = await connect(
      leftovers,
      `${s.url}/x?since=${publicEpoch}:0:alarms-secret&since=${publicEpoch}:0:alarms-public`,
    );
    s.registry.publish('alarms-public', 'pub2');
    expect(await shorts(c, 3)).toEqual(['m:1:pub1', 'rec:1:1', 'm:2:pub2']);
    expect(c.messages.some((m) => m.includes('secret'))).toBe(false);
  });

  it('history size 0: positions still let a client see what it missed (gap detection without history)', async () => {
    const s = await start({ registry: { streams: { ...STREAMS, history: memoryHistory({ size: 0 }) } } });
    const a = await connect(leftovers, `${s.url}/feed`);
    s.registry.publish('feed', 'f1');
    const [sub, f1] = (await a.received(2)).map((m) => parse(m) as Frame);
    expect([sub?.offset, f1?.offset]).toEqual([0, 1]);
    // Caught up: nothing to replay, recovered with none.
    const b = await connect(leftovers, `${s.url}/feed?since=${f1?.epoch}:1:feed`);
    expect(await shorts(b, 1)).toEqual(['rec:1:0']);
    s.registry.publish('feed', 'f2');
    s.registry.publish('feed', 'f3');
    await b.received(3);
    // Missed two: told so, never handed a partial replay.
    const c = await connect(leftovers, `${s.url}/feed?since=${f1?.epoch}:1:feed`);
    expect(await shorts(c, 1)).toEqual(['unrec:too-old']);
  });

  it('publishes racing an async history read fall neither between nor twice (the seam)', async () => {
    // The in-memory engine, with a read that completes only after more publishes were made and delivered.
    const memory = memoryHistory();
    let release: (() => void) | null = null;
    const slow: History = {
      fleet: false,
      start: (c) => memory.start(c),
      publish: (c, p) => memory.publish(c, p),
      subscribe: () => {},
      unsubscribe: () => {},
      read(channel, since): Promise<HistoryRead> {
        const result = memory.read(channel, since); // the snapshot at the start of the read
        return new Promise((resolve) => (release = () => resolve(result)));
      },
      close: () => memory.close(),
    };
    const s = await start({ registry: { streams: { ...STREAMS, history: slow } } });
    const readStarted = () =>
      within(
        new Promise<void>((resolve) => {
          const poll = () => (release !== null ? resolve() : setImmediate(poll));
          poll();
        }),
        5000,
        'the read',
      );
    const a = await connect(leftovers, `${s.url}/alarms`);
    await readStarted();
    (release as unknown as () => void)();
    release = null;
    for (let i = 1; i <= 3; i++) s.registry.publish('alarms', `a${i}`);
    const frames = (await a.received(4)).map((m) => parse(m) as Frame);
    const epoch = frames[0]?.epoch as string;
    const b = await connect(leftovers, `${s.url}/alarms?since=${epoch}:1:alarms`);
    await readStarted();
    // Published while the read is in flight: after its snapshot, so only the held live copies carry them.
    for (let i = 4; i <= 6; i++) s.registry.publish('alarms', `a${i}`);
    await a.received(7); // delivered live to the other session meanwhile
    expect(b.messages).toEqual([]);
    (release as unknown as () => void)();
    s.registry.publish('alarms', 'a7');
    expect(await shorts(b, 7)).toEqual([
      'm:2:a2',
      'm:3:a3',
      'rec:3:2',
      'm:4:a4',
      'm:5:a5',
      'm:6:a6',
      'm:7:a7',
    ]);
  });

  it('a restarted server (new in-memory history) answers the old epoch with unrec epoch', async () => {
    const s1 = await start({ registry: { streams: STREAMS } });
    const a = await connect(leftovers, `${s1.url}/alarms`);
    s1.registry.publish('alarms', 'x');
    const [, m] = (await a.received(2)).map((x) => parse(x) as Frame);
    await s1.close();
    const s2 = await start({ registry: { streams: STREAMS } });
    const b = await connect(leftovers, `${s2.url}/alarms?since=${m?.epoch}:${m?.offset}:alarms`);
    const [u] = (await b.received(1)).map((x) => parse(x) as Frame);
    expect([u?.type, u?.extra, u?.offset]).toEqual(['unrec', 'epoch', 0]);
    expect(u?.epoch).not.toBe(m?.epoch);
  });

  it('many clients recovering at once each get exactly their missed messages', async () => {
    const s = await start({ registry: { streams: STREAMS } });
    const first = await connect(leftovers, `${s.url}/alarms`);
    const epoch = (parse((await first.received(1))[0] as string) as Frame).epoch as string;
    for (let i = 1; i <= 50; i++) s.registry.publish('alarms', `a${i}`);
    const n = 200;
    // Each client last saw a different offset: 0..49.
    const clients = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        connect(leftovers, `${s.url}/alarms?since=${epoch}:${i % 50}:alarms`),
      ),
    );
    s.registry.publish('alarms', 'a51');
    for (let i = 0; i < n; i++) {
      const from = i % 50;
      const want = [
        ...Array.from({ length: 50 - from }, (_, k) => `m:${from + k + 1}:a${from + k + 1}`),
        `rec:50:${50 - from}`,
        'm:51:a51',
      ];
      expect(await shorts(clients[i] as never, want.length)).toEqual(want);
    }
    expect(s.registry.stats().streams).toMatchObject({ recovered: n });
  });

  it('registry.subscribe with since recovers a stream channel joined after the upgrade', async () => {
    const s = await start({
      registry: { streams: STREAMS },
      transport: { authenticate: () => ({ channels: [] }) },
    });
    const a = await connect(leftovers, `${s.url}/x`);
    const session = s.registry.sessions()[0];
    if (session === undefined) throw new Error('no session');
    s.registry.subscribe(session, 'alarms');
    s.registry.publish('alarms', 'a1');
    s.registry.publish('alarms', 'a2');
    const epoch = (parse((await a.received(3))[0] as string) as Frame).epoch as string;
    s.registry.unsubscribe(session, 'alarms');
    s.registry.publish('alarms', 'a3');
    s.registry.subscribe(session, 'alarms', { since: { alarms: { epoch, offset: 2 } } });
    expect((await a.received(5)).slice(3).map(short)).toEqual(['m:3:a3', 'rec:3:1']);
    expect(() => s.registry.subscribe(session, 'alarms', { since: 'x' as never })).toThrow(TypeError);
  });
});

describe('streams options and misuse', () => {
  it('throws naming the option', () => {
    expect(() => new SessionRegistry({ streams: {} as never })).toThrow(/"streams.channels"/);
    expect(() => new SessionRegistry({ streams: { channels: [] } })).toThrow(/"streams.channels"/);
    expect(() => new SessionRegistry({ streams: { channels: [5] as never } })).toThrow(/"streams.channels"/);
    expect(() => new SessionRegistry({ streams: { channels: 'a', nope: 1 } as never })).toThrow(/"nope"/);
    expect(() => new SessionRegistry({ streams: { channels: 'a', history: {} as never } })).toThrow(
      /"streams.history"/,
    );
    expect(() => new SessionRegistry({ streams: { channels: 'a', recoveryTimeout: 0 } })).toThrow(RangeError);
    expect(() => memoryHistory({ size: -1 })).toThrow(/"size"/);
    expect(() => memoryHistory({ ttl: 0 })).toThrow(/"ttl"/);
    const broker = {
      start() {},
      subscribe: async () => {},
      unsubscribe: async () => {},
      publish: async () => {},
      close: async () => {},
    };
    expect(() => new SessionRegistry({ broker, streams: { channels: 'a' } })).toThrow(/fleet history/);
  });

  it('except, local, key and volatile are refused on stream channels; raw channels are untouched', async () => {
    const registry = new SessionRegistry({ streams: { channels: 'alarms' } });
    expect(() => registry.publish('alarms', 'x', { local: true })).toThrow(TypeError);
    expect(() => registry.publish(['raw', 'alarms'], 'x', { except: 'id' })).toThrow(/"except", "local"/);
    expect(() => registry.publish('alarms', 'x', { key: 'sensor-1' })).toThrow(/"key" and "volatile"/);
    expect(() => registry.publish(['alarms', 'raw'], 'x', { volatile: true })).toThrow(
      /stream channel "alarms"/,
    );
    registry.publish('raw', 'x', { local: true });
    registry.publish('raw', 'x', { key: 'sensor-1' });
    registry.publish('raw', 'x', { volatile: true });
    expect(registry.stats().streams?.published).toBe(0);
    await registry.close();
  });
});
