/**
 * fanout/client against real servers, with the real `ws` WebSocket class (Node 20 has no global one):
 * reconnects, resumes with its last positions, and reports what it could not recover.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { FanoutClient, type WebSocketClass } from '../../client/index.js';
import { memoryHistory, SessionRegistry, type RegistryOptions } from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';
import { Leftovers, next, within } from '../transports/clients.js';
import { watchClient } from '../support/fanout-client.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());
const WS = WebSocket as unknown as WebSocketClass;
const FAST = { initial: 20, max: 200, factor: 2, jitter: 0.5 };

interface Server {
  registry: SessionRegistry;
  port: number;
  url: string;
  close(): Promise<void>;
}

async function serve(
  port = 0,
  options: RegistryOptions = { streams: { channels: /^alarms/ } },
): Promise<Server> {
  const registry = new SessionRegistry(options);
  registry.on('error', () => {});
  const server = http.createServer();
  wsTransport(registry, { server, path: '/:channel' });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  let closed: Promise<void> | null = null;
  const close = () =>
    (closed ??= (async () => {
      await registry.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })());
  leftovers.add(close);
  return { registry, port: actual, url: `ws://127.0.0.1:${actual}`, close };
}

/** A client that records everything it emits. */
function client(url: string, options: ConstructorParameters<typeof FanoutClient>[1] = {}) {
  const c = new FanoutClient(url, { WebSocket: WS, reconnect: FAST, ...options });
  leftovers.add(() => c.close());
  return watchClient(c);
}

function opened(c: FanoutClient): Promise<void> {
  return new Promise((resolve) => {
    if (c.state === 'open') return resolve();
    const off = c.on('state', (s) => {
      if (s === 'open') {
        off();
        resolve();
      }
    });
  });
}

describe('fanout/client', () => {
  it('reads stream messages with positions and raw messages as they are; typed events', async () => {
    const s = await serve();
    const a = client(`${s.url}/alarms`);
    const r = client(`${s.url}/raw`);
    await a.until('subscribed', () => a.events.length === 1);
    await opened(r.c);
    s.registry.publish('alarms', { n: 1 });
    s.registry.publish('alarms', Buffer.from([1, 2, 3]));
    s.registry.publish('raw', 'plain');
    s.registry.publish('raw', Buffer.from([9]));
    await a.until('2 messages', () => a.messages.length === 2);
    await r.until('2 raw', () => r.messages.length === 2);
    expect(a.events).toEqual(['sub:0']);
    expect(a.messages[0]).toMatchObject({ channel: 'alarms', data: '{"n":1}', replayed: false });
    expect(a.messages[0]?.position?.offset).toBe(1);
    expect([...(a.messages[1]?.data as Uint8Array)]).toEqual([1, 2, 3]);
    expect(r.messages.map((m) => [m.channel, m.position])).toEqual([
      [null, null],
      [null, null],
    ]);
    expect(r.messages[0]?.data).toBe('plain');
    expect([...(r.messages[1]?.data as Uint8Array)]).toEqual([9]);
    expect(a.c.positions()).toEqual({ alarms: a.messages[1]?.position });
  });

  it('reconnects after a dropped connection and recovers exactly what it missed, in order', async () => {
    const s = await serve();
    const a = client(`${s.url}/alarms`);
    await a.until('subscribed', () => a.events.length === 1);
    for (let i = 1; i <= 3; i++) s.registry.publish('alarms', `a${i}`);
    await a.until('3', () => a.messages.length === 3);
    const gone = next(s.registry, 'close');
    for (const session of s.registry.sessions()) session.terminate();
    await gone;
    for (let i = 4; i <= 10; i++) s.registry.publish('alarms', `a${i}`);
    await a.until('recovered', () => a.events.includes('rec:10:7'));
    s.registry.publish('alarms', 'a11');
    await a.until('11', () => a.messages.length === 11);
    expect(a.streamTexts()).toEqual(Array.from({ length: 11 }, (_, i) => `a${i + 1}`));
    expect(a.messages.map((m) => m.replayed)).toEqual([
      ...Array(3).fill(false),
      ...Array(7).fill(true),
      false,
    ]);
    expect(a.events).toEqual(['sub:0', 'rec:10:7']);
  });

  it('after a server restart with in-memory history it reports unrecoverable (epoch), then goes on', async () => {
    const s1 = await serve();
    const a = client(`${s1.url}/alarms`);
    await a.until('subscribed', () => a.events.length === 1);
    s1.registry.publish('alarms', 'before');
    await a.until('1', () => a.messages.length === 1);
    await s1.close();
    const s2 = await serve(s1.port); // the same address, a new process state
    await a.until('unrec', () => a.events.includes('unrec:epoch'));
    s2.registry.publish('alarms', 'after');
    await a.until('2', () => a.messages.length === 2);
    expect(a.streamTexts()).toEqual(['before', 'after']);
    expect(a.messages[1]?.position?.offset).toBe(1);
    expect(a.messages[1]?.position?.epoch).not.toBe(a.messages[0]?.position?.epoch);
  });

  it('publishes racing the reconnects: every offset once, no gap', async () => {
    const s = await serve(0, { streams: { channels: /^alarms/, history: memoryHistory({ size: 100_000 }) } });
    const a = client(`${s.url}/alarms`);
    await a.until('subscribed', () => a.events.length === 1);
    let n = 0;
    // Publish continuously while the connection is dropped three times.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 20; i++) s.registry.publish('alarms', `m${++n}`);
      const gone = next(s.registry, 'close');
      for (const session of s.registry.sessions()) session.terminate();
      await gone;
      for (let i = 0; i < 20; i++) s.registry.publish('alarms', `m${++n}`);
      const back = next(s.registry, 'open');
      // Keep publishing until the client is back: some land in its replay, some arrive live.
      let pumped = 0;
      const pump = setInterval(() => {
        if (++pumped <= 2000) s.registry.publish('alarms', `m${++n}`);
      }, 1);
      await back.finally(() => clearInterval(pump));
      for (let i = 0; i < 20; i++) s.registry.publish('alarms', `m${++n}`);
    }
    await a.until(`${n} messages`, () => a.messages.length >= n);
    expect(a.streamTexts()).toEqual(Array.from({ length: n }, (_, i) => `m${i + 1}`));
    expect(a.events.filter((e) => !e.startsWith('rec:'))).toEqual(['sub:0']);
  });

  it('history too short, wrong epoch and garbage positions: reported, never a partial replay', async () => {
    const s = await serve(0, { streams: { channels: /^alarms/, history: memoryHistory({ size: 2 }) } });
    const a = client(`${s.url}/alarms`);
    await a.until('subscribed', () => a.events.length === 1);
    for (let i = 1; i <= 5; i++) s.registry.publish('alarms', `a${i}`);
    await a.until('5', () => a.messages.length === 5);
    const epoch = a.c.positions()['alarms']?.epoch as string;
    const old = client(`${s.url}/alarms`, { positions: { alarms: { epoch, offset: 1 } } });
    await old.until('unrec', () => old.events.length === 1);
    expect(old.events).toEqual(['unrec:too-old']);
    expect(old.messages).toEqual([]);
    expect(old.c.positions()['alarms']).toEqual({ epoch, offset: 5 });
    const wrong = client(`${s.url}/alarms`, { positions: { alarms: { epoch: 'nope', offset: 1 } } });
    await wrong.until('unrec', () => wrong.events.length === 1);
    expect(wrong.events).toEqual(['unrec:epoch']);
    const future = client(`${s.url}/alarms`, { positions: { alarms: { epoch, offset: 50 } } });
    await future.until('unrec', () => future.events.length === 1);
    expect(future.events).toEqual(['unrec:future']);
    const bad = client(`${s.url}/alarms`, { positions: { alarms: { epoch: 'a b', offset: 1 } } });
    await bad.until('unrec', () => bad.events.length === 1);
    expect(bad.events).toEqual(['unrec:invalid']);
    expect(() => new FanoutClient(s.url, { WebSocket: WS, positions: { x: { epoch: 1 } as never } })).toThrow(
      /"positions.x"/,
    );
    expect(() => new FanoutClient(s.url, { WebSocket: WS, reconnect: { jitter: 2 } })).toThrow(
      /"reconnect.jitter"/,
    );
    expect(() => new FanoutClient('not a url', { WebSocket: WS })).toThrow(TypeError);
    expect(() => new FanoutClient(s.url)).toThrow(/"WebSocket"/); // Node 20: no global WebSocket
  });

  it('reconnect delays grow exponentially with jitter, bounded by max', async () => {
    const s = await serve();
    await s.close(); // nothing listens there any more
    const c = new FanoutClient(`${s.url}/alarms`, {
      WebSocket: WS,
      reconnect: { initial: 10, max: 80, factor: 2, jitter: 0.5 },
    });
    leftovers.add(() => c.close());
    const delays: number[] = [];
    await within(
      new Promise<void>((resolve) =>
        c.on('state', (state, info) => {
          if (state !== 'reconnecting') return;
          delays.push(info.delay);
          if (delays.length === 7) resolve();
        }),
      ),
      20_000,
      '7 attempts',
    );
    c.close();
    expect(c.state).toBe('closed');
    delays.forEach((d, i) => {
      const base = Math.min(80, 10 * 2 ** i);
      expect(d, `attempt ${i}`).toBeGreaterThanOrEqual(Math.floor(base / 2));
      expect(d, `attempt ${i}`).toBeLessThanOrEqual(base);
    });
  });

  it('many clients recovering at once (a deploy): each gets every missed message once', async () => {
    const s = await serve();
    const n = 200;
    const clients = Array.from({ length: n }, () =>
      client(`${s.url}/alarms`, { reconnect: { ...FAST, max: 500 } }),
    );
    await within(
      Promise.all(clients.map((x) => x.until('subscribed', () => x.events.length === 1))),
      30_000,
      'all subscribed',
    );
    for (let i = 1; i <= 20; i++) s.registry.publish('alarms', `a${i}`);
    await Promise.all(clients.map((x) => x.until('20', () => x.messages.length === 20)));
    for (const session of s.registry.sessions()) session.close(1012, 'service restart');
    for (let i = 21; i <= 120; i++) s.registry.publish('alarms', `a${i}`);
    await within(
      Promise.all(clients.map((x) => x.until('recovered', () => x.events.includes('rec:120:100'), 30_000))),
      40_000,
      'all recovered',
    );
    s.registry.publish('alarms', 'a121');
    await Promise.all(clients.map((x) => x.until('121', () => x.messages.length === 121)));
    const want = Array.from({ length: 121 }, (_, i) => `a${i + 1}`);
    for (const x of clients) expect(x.streamTexts()).toEqual(want);
    expect(s.registry.stats().streams).toMatchObject({ recovered: n, replayed: n * 100 });
  });
});
