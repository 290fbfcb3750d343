import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { HttpError, SessionRegistry, type DropReason, type Session } from '../src/index.js';
import { wsTransport } from '../transports/ws.js';
import { Leftovers, connect, once, startWs, upgradeStatus } from './support/ws-server.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

describe('ws transport: lifecycle and routing', () => {
  it('emits open once and close once, after the session left its channels', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/alarms/:channel' });
    const events: string[] = [];
    registry.on('open', (s) => events.push(`open:${[...s.channels].join(',')}`));
    registry.on('close', (s, code, reason) => {
      events.push(`close:${code}:${reason}:${s.channels.size}:${registry.count('zone-3')}`);
    });
    const closed = once(registry, 'close');
    const client = await connect(leftovers, `${url}/alarms/zone-3`);
    expect(registry.count('zone-3')).toBe(1);
    client.ws.close(4000, 'bye');
    await closed;
    expect(events).toEqual(['open:zone-3', 'close:4000:bye:0:0']);
    expect(registry.stats()).toMatchObject({ sessions: 0, channels: 0, opened: 1 });
  });

  it('routes by path parameters; the path itself is the channel without :channel; 404 elsewhere', async () => {
    const { registry, url } = await startWs(leftovers, { path: ['/alarms/:channel', '/dashboard'] });
    const opened: Session[] = [];
    registry.on('open', (s) => opened.push(s));
    await connect(leftovers, `${url}/alarms/a%20b?x=1`);
    await connect(leftovers, `${url}/dashboard`);
    expect(opened.map((s) => [...s.channels])).toEqual([['a b'], ['/dashboard']]);
    expect(opened[0]?.params).toEqual({ channel: 'a b' });
    expect(await upgradeStatus(`${url}/alarms`)).toBe(404);
    expect(await upgradeStatus(`${url}/alarms/x/y`)).toBe(404);
    expect(registry.count()).toBe(2);
    expect(registry.stats().rejected).toBe(2);
  });

  it('refuses before the 101: 401 for false, the HttpError status, 500 for a throwing hook; nothing registered', async () => {
    const errors: Error[] = [];
    const { registry, url } = await startWs<{ user: string }>(leftovers, {
      path: '/alarms/:channel',
      authenticate: async (req) => {
        const token = req.query.get('token');
        if (token === 'boom') throw new Error('hook failed');
        if (token === 'banned') throw new HttpError(403, 'banned');
        if (token !== 'good') return false;
        return { data: { user: 'u1' }, channels: ['a', 'b'] };
      },
    });
    registry.on('error', (e) => errors.push(e));
    const rejects: number[] = [];
    registry.on('reject', (_req, status) => rejects.push(status));
    expect(await upgradeStatus(`${url}/alarms/x`)).toBe(401);
    expect(await upgradeStatus(`${url}/alarms/x?token=banned`)).toBe(403);
    expect(await upgradeStatus(`${url}/alarms/x?token=boom`)).toBe(500);
    expect(registry.stats()).toMatchObject({ sessions: 0, opened: 0, rejected: 3 });
    expect(rejects).toEqual([401, 403, 500]);
    expect(errors.map((e) => e.message)).toEqual(['hook failed']);
    const opened = once<[Session<{ user: string }>]>(registry, 'open');
    await connect(leftovers, `${url}/alarms/x?token=good`);
    const [session] = await opened;
    expect(session.data).toEqual({ user: 'u1' });
    expect([...session.channels]).toEqual(['a', 'b']);
  });

  it('a client that goes away while authenticate runs registers nothing', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const hookStarted = new Promise<void>((r) => (started = r));
    const { registry, server, url } = await startWs(leftovers, {
      authenticate: async () => {
        started();
        await gate;
        return true;
      },
    });
    let serverSideClosed!: Promise<void>;
    server.prependOnceListener('upgrade', (_req, socket) => {
      serverSideClosed = new Promise((r) => socket.once('close', () => r()));
    });
    const ws = new WebSocket(`${url}/x`);
    ws.on('error', () => {});
    await hookStarted;
    ws.terminate();
    await serverSideClosed;
    release();
    expect(await upgradeStatus(`${url}/y`)).toBe(101);
    expect(registry.stats().opened).toBe(1);
    expect(registry.stats().rejected).toBe(0);
  });

  it('shares one server between transports and works in noServer mode through handleUpgrade', async () => {
    const registry = new SessionRegistry();
    const server = http.createServer();
    wsTransport(registry, { server, path: '/a/:channel' });
    wsTransport(registry, { server, path: '/b/:channel' });
    const wss = new WebSocketServer({ noServer: true });
    const manual = wsTransport(registry, { wss, path: '/c/:channel' });
    server.on('request', (_req, res) => res.end());
    const other = http.createServer();
    other.on('upgrade', (req, socket, head) => {
      void manual.handleUpgrade(req, socket, head).then((handled) => {
        if (!handled) socket.destroy();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    leftovers.add(async () => {
      await registry.close();
      await new Promise((r) => server.close(r));
      await new Promise((r) => other.close(r));
      wss.close();
    });
    const base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const otherBase = `ws://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const a = await connect(leftovers, `${base}/a/x`);
    const b = await connect(leftovers, `${base}/b/x`);
    const c = await connect(leftovers, `${otherBase}/c/x`);
    expect(await upgradeStatus(`${base}/c/x`)).toBe(404);
    registry.publish('x', 'hello');
    for (const client of [a, b, c]) expect(await client.received(1)).toEqual(['hello']);
  });
});

describe('ws transport: publish', () => {
  it('reaches every session of a channel and no other; except; a session in two channels gets it once', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const opened: Session[] = [];
    registry.on('open', (s) => opened.push(s));
    const a1 = await connect(leftovers, `${url}/a`);
    const a2 = await connect(leftovers, `${url}/a`);
    const b = await connect(leftovers, `${url}/b`);
    const both = await connect(leftovers, `${url}/b`);
    registry.subscribe(opened[3] as Session, 'a');
    registry.publish('a', { n: 1 }, { except: opened[0] as Session });
    registry.publish(['a', 'b'], 'to-both');
    registry.publish('b', new Uint8Array([1, 2, 255]));
    expect(await a1.received(1)).toEqual(['to-both']);
    expect(await a2.received(2)).toEqual(['{"n":1}', 'to-both']);
    expect(await b.received(2)).toEqual(['to-both', 'bin:0102ff']);
    expect(await both.received(3)).toEqual(['{"n":1}', 'to-both', 'bin:0102ff']);
    // Nothing else arrives: a marker published to everyone comes next on every socket.
    registry.publish(['a', 'b'], 'end');
    expect((await a1.received(2)).at(-1)).toBe('end');
    expect(a1.messages).toHaveLength(2);
    expect(both.messages).toHaveLength(4);
    const stats = registry.stats();
    expect(stats).toMatchObject({ published: 4, delivered: 2 + 4 + 2 + 4, dropped: 0 });
  });

  it('1,000 sessions each receive 100 messages in order, nothing lost', { timeout: 60_000 }, async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const clients = [];
    for (let i = 0; i < 1000; i += 50) {
      clients.push(
        ...(await Promise.all(Array.from({ length: 50 }, () => connect(leftovers, `${url}/feed`)))),
      );
    }
    expect(registry.count('feed')).toBe(1000);
    for (let i = 0; i < 100; i++) {
      registry.publish('feed', { seq: i });
      if (i % 10 === 9) await new Promise((r) => setImmediate(r));
    }
    const expected = Array.from({ length: 100 }, (_, i) => JSON.stringify({ seq: i }));
    for (const client of clients) expect(await client.received(100)).toEqual(expected);
    expect(registry.stats()).toMatchObject({ delivered: 100_000, dropped: 0 });
  });

  it('a burst in one turn costs one socket write per session', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const opened = once<[Session]>(registry, 'open');
    const client = await connect(leftovers, `${url}/x`);
    const [session] = await opened;
    const socket = (session as unknown as { ws: { _socket: net.Socket } }).ws._socket;
    let writes = 0;
    const write = socket.write.bind(socket);
    socket.write = ((...args: Parameters<typeof write>) => {
      writes++;
      return write(...args);
    }) as typeof socket.write;
    for (let i = 0; i < 10; i++) registry.publish('x', `m${i}`);
    expect(await client.received(10)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(writes).toBe(1);
  });

  it('with permessage-deflate on, sends go through ws (compressed per socket) and still arrive in order', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel', perMessageDeflate: true });
    const client = await connect(leftovers, `${url}/x`, { perMessageDeflate: true });
    expect(client.ws.extensions).toMatch(/permessage-deflate/);
    const big = 'alarm '.repeat(2000);
    for (let i = 0; i < 5; i++) registry.publish('x', `${i}:${big}`);
    registry.publish('x', Buffer.from([1, 2, 3]));
    const got = await client.received(6);
    expect(got.slice(0, 5).map((m) => m.split(':')[0])).toEqual(['0', '1', '2', '3', '4']);
    expect(got[0]).toBe(`0:${big}`);
    expect(got[5]).toBe('bin:010203');
    expect(registry.stats()).toMatchObject({ delivered: 6, dropped: 0 });
  });

  it('a throwing listener or a failing socket does not stop delivery to the others', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const errors: Error[] = [];
    registry.on('error', (e) => errors.push(e));
    registry.on('open', () => {
      throw new Error('listener bug');
    });
    const opened: Session[] = [];
    registry.on('open', (s) => opened.push(s));
    const clients = [await connect(leftovers, `${url}/x`), await connect(leftovers, `${url}/x`)];
    const c3 = await connect(leftovers, `${url}/x`);
    expect(errors.map((e) => e.message)).toEqual(['listener bug', 'listener bug', 'listener bug']);
    // The first listener threw, so the second never saw the opens; the registry still has every session.
    expect(opened).toHaveLength(0);
    const broken = registry.sessions('x')[1] as Session;
    (broken as unknown as { ws: { _socket: net.Socket } }).ws._socket.write = () => {
      throw new Error('socket exploded');
    };
    const drops: DropReason[] = [];
    registry.on('drop', (_s, reason) => drops.push(reason));
    registry.publish('x', 'still delivered');
    expect(await clients[0]?.received(1)).toEqual(['still delivered']);
    expect(await c3.received(1)).toEqual(['still delivered']);
    expect(drops).toEqual(['error']);
    expect(errors.at(-1)?.message).toBe('socket exploded');
    expect(registry.stats()).toMatchObject({ delivered: 2, dropped: 1, droppedBy: { error: 1 } });
  });
});

describe('ws transport: dead peers and limits', () => {
  it('removes a client that vanishes without a close frame', async () => {
    const { registry, url } = await startWs(leftovers);
    const client = await connect(leftovers, `${url}/x`);
    const closed = once<[Session, number, string]>(registry, 'close');
    (client.ws as unknown as { _socket: net.Socket })._socket.destroy();
    const [, code] = await closed;
    expect(code).toBe(1006);
    expect(registry.count()).toBe(0);
  });

  it('terminates a client that stops answering pings within interval + timeout', async () => {
    const { registry, url } = await startWs(leftovers, { heartbeat: { interval: 100, timeout: 100 } });
    const silent = await connect(leftovers, `${url}/x`, { autoPong: false });
    const healthy = await connect(leftovers, `${url}/x`);
    const [session, code] = await once<[Session, number, string]>(registry, 'close');
    expect(code).toBe(1006);
    expect((await silent.closed).code).toBe(1006);
    expect(registry.count()).toBe(1);
    expect(session.id).not.toBe(registry.sessions()[0]?.id);
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('closes with 1009 on an oversized frame and 1007 on invalid UTF-8', async () => {
    const { registry, url } = await startWs(leftovers, { maxPayload: 1024 });
    const big = await connect(leftovers, `${url}/x`);
    big.ws.send(Buffer.alloc(2048));
    expect((await big.closed).code).toBe(1009);
    const bad = await connect(leftovers, `${url}/x`);
    bad.ws.send(Buffer.from([0xff, 0xfe, 0xfd]), { binary: false });
    expect((await bad.closed).code).toBe(1007);
    const ok = await connect(leftovers, `${url}/x`);
    const message = once<[Session, string | Buffer, boolean]>(registry, 'message');
    ok.ws.send('fine');
    expect((await message).slice(1)).toEqual(['fine', false]);
  });

  for (const policy of ['drop', 'close'] as const) {
    it(`a stalled client under the "${policy}" policy is handled, counted, and memory stays bounded`, async () => {
      const limit = 256 * 1024;
      const { registry, url } = await startWs(leftovers, {
        path: '/:channel',
        backpressure: { limit, policy },
      });
      const opened: Session[] = [];
      registry.on('open', (s) => opened.push(s));
      const stalled = await connect(leftovers, `${url}/feed`);
      const healthy = await connect(leftovers, `${url}/feed`);
      (stalled.ws as unknown as { _socket: net.Socket })._socket.pause();
      const drops: string[] = [];
      registry.on('drop', (s, reason) =>
        drops.push(`${s.id === opened[0]?.id ? 'stalled' : 'healthy'}:${reason}`),
      );
      const payload = 'x'.repeat(16 * 1024);
      let maxBuffered = 0;
      let published = 0;
      // Bounded: at most 4,000 messages (64 MB), stopping once the policy acted.
      while (published < 4000 && drops.length === 0) {
        registry.publish('feed', payload);
        published++;
        maxBuffered = Math.max(maxBuffered, opened[0]?.bufferedAmount ?? 0);
        await new Promise((r) => setImmediate(r));
      }
      // A short burst in one turn, well under the limit for a session that reads.
      for (let i = 0; i < 5; i++) registry.publish('feed', payload);
      published += 5;
      await healthy.received(published);
      expect(healthy.messages).toHaveLength(published);
      const stats = registry.stats();
      expect(drops.every((d) => d.startsWith('stalled:'))).toBe(true);
      expect(stats.dropped).toBe(drops.length);
      expect(stats.delivered + stats.dropped).toBe(published * 2);
      // Never more than the limit plus the one message that crossed it (plus the turn's pending frames).
      expect(maxBuffered).toBeLessThanOrEqual(limit + payload.length + 16);
      if (policy === 'drop') {
        expect(drops[0]).toBe('stalled:backpressure');
        expect(drops).toHaveLength(stats.droppedBy.backpressure);
        expect(opened[0]?.state).toBe('open');
        expect(stats.closedForBackpressure).toBe(0);
      } else {
        expect(stats.closedForBackpressure).toBe(1);
        expect(stats.droppedBy.backpressure).toBe(1);
        expect(stats.droppedBy.closed).toBe(drops.length - 1);
        (stalled.ws as unknown as { _socket: net.Socket })._socket.resume();
        expect((await stalled.closed).code).toBe(1013);
      }
    });
  }
});

describe('ws transport: options and shutdown', () => {
  it('throws TypeError/RangeError naming the option', () => {
    const registry = new SessionRegistry();
    expect(() => wsTransport(registry, { path: 'alarms' })).toThrow(/"path"/);
    expect(() => wsTransport(registry, { maxPayload: 0 })).toThrow(RangeError);
    expect(() => wsTransport(registry, { maxPayload: 0 })).toThrow(/"maxPayload"/);
    expect(() => wsTransport(registry, { heartbeat: { interval: -1 } })).toThrow(/"heartbeat.interval"/);
    expect(() => wsTransport(registry, { backpressure: { policy: 'slow' as 'drop' } })).toThrow(TypeError);
    expect(() => wsTransport(registry, { authenticate: 'yes' as never })).toThrow(/"authenticate"/);
    expect(() => wsTransport(registry, { server: {} as http.Server })).toThrow(/"server"/);
    expect(() => wsTransport(registry, { wss: new WebSocketServer({ noServer: false, port: 0 }) })).toThrow(
      /noServer/,
    );
    expect(() => wsTransport(registry, { pth: '/x' } as never)).toThrow(/Unknown option "pth"/);
  });

  it('registry.close() closes every session with 1001 and the server can close', async () => {
    const { registry, server, url } = await startWs(leftovers);
    const clients = await Promise.all([connect(leftovers, `${url}/a`), connect(leftovers, `${url}/b`)]);
    const closeEvents: number[] = [];
    registry.on('close', (_s, code) => closeEvents.push(code));
    await registry.close();
    expect(closeEvents).toEqual([1001, 1001]);
    for (const c of clients) expect(await c.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(registry.close()).toBe(registry.close());
    expect(() => registry.publish('a', 'late')).toThrow(/closed/);
    expect(await upgradeStatus(`${url}/a`)).toBe(404);
    await new Promise<void>((r) => server.close(() => r()));
    expect(server.listening).toBe(false);
  });

  it('nothing a client sends crashes the server: garbage instead of a handshake', async () => {
    const { registry, url } = await startWs(leftovers);
    const port = Number(new URL(url).port);
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => {});
    sock.write('GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const answer = await new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
    expect(answer).toMatch(/^HTTP\/1.1 400/);
    sock.destroy();
    const client = await connect(leftovers, `${url}/x`);
    (client.ws as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x81, 0x05, 1, 2, 3]));
    expect((await client.closed).code).toBe(1002);
    expect(registry.count()).toBe(0);
  });
});
