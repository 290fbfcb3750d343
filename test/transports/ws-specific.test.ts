/**
 * What only the ws transport does, over real sockets: write coalescing and its early hand-off, backpressure
 * closes of peers that do not read, permessage-deflate, the noServer and shared-server modes. What every
 * transport must do is in the conformance suite (suite.ts), run for ws by ws.test.ts.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  encode,
  SessionRegistry,
  type Broker,
  type BrokerContext,
  type DropReason,
  type Session,
} from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';
import { countWrites, startWs } from '../support/ws-server.js';
import { connect, Leftovers, next, upgradeStatus, type Client } from './clients.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** 1,024 bytes: a sequence number, then padding. */
const kilobyte = (i: number): string => String(i).padStart(6, '0') + 'x'.repeat(1018);

/** Every one of `n` messages, or an error as soon as the client is closed. */
function all(client: Client, n: number): Promise<string[]> {
  const cut = client.closed.then(({ code }) => {
    throw new Error(`closed with ${code} after ${client.messages.length} messages`);
  });
  return Promise.race([client.received(n, 30_000), cut]);
}

/**
 * A broker that hands over what it holds in one turn, as a Redis or NATS connection does with its backlog when
 * the broker resumes. No engine: the registry's broker contract only.
 */
class BacklogBroker implements Broker {
  context: BrokerContext | null = null;
  start(context: BrokerContext): void {
    this.context = context;
  }
  async subscribe(): Promise<void> {}
  async unsubscribe(): Promise<void> {}
  async publish(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('ws transport: servers', () => {
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

  it('after registry.close() the transport leaves the server: later upgrades get 404, the server closes', async () => {
    const { registry, server, url } = await startWs(leftovers);
    await connect(leftovers, `${url}/a`);
    await registry.close();
    expect(await upgradeStatus(`${url}/a`)).toBe(404);
    await new Promise<void>((r) => server.close(() => r()));
    expect(server.listening).toBe(false);
  });

  it('nothing a client sends crashes the server: garbage instead of a handshake, an unmasked frame', async () => {
    const { registry, url } = await startWs(leftovers);
    const port = Number(new URL(url).port);
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => {});
    sock.write('GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const answer = await new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
    expect(answer).toMatch(/^HTTP\/1.1 400/);
    sock.destroy();
    const client = await connect(leftovers, `${url}/x`);
    client.socket.write(Buffer.from([0x81, 0x05, 1, 2, 3]));
    expect((await client.closed).code).toBe(1002);
    expect(registry.count()).toBe(0);
  });
});

describe('ws transport: what an idle session holds', () => {
  it("an open socket keeps no listener of the upgrade: its 'error' listeners are ws's own", async () => {
    const { registry, server, url } = await startWs(leftovers);
    const sockets: net.Socket[] = [];
    // Listeners run in order: the transport's first, then this one sees the same socket.
    server.on('upgrade', (_req, socket: net.Socket) => void sockets.push(socket));
    const opened = new Promise((r) => registry.once('open', r));
    await connect(leftovers, `${url}/x`);
    await opened;
    expect(sockets).toHaveLength(1);
    // A plain ws server leaves exactly one (ws's); a listener left by the upgrade would cost every session.
    expect((sockets[0] as net.Socket).listenerCount('error')).toBe(1);
  });

  it('has no listeners on its WebSocket and no per-session copies of what its transport knows', async () => {
    const { registry, url } = await startWs(leftovers);
    const opened = new Promise<Session>((r) => registry.once('open', r));
    const client = await connect(leftovers, `${url}/x`);
    const session = await opened;
    const ws = (session as unknown as { ws: WebSocket }).ws;
    // The transport's sockets hand their events to their session (nothing per socket in ws's listener table).
    expect(['message', 'pong', 'error', 'close'].map((e) => ws.listenerCount(e))).toEqual([0, 0, 0, 0]);
    const own = Object.getOwnPropertyNames(session);
    for (const name of ['transport', 'owner', 'host', 'backpressure', 'sentCode', 'watchingDrain'])
      expect(own).not.toContain(name);
    expect(session.transport).toBe('ws');
    // Events still reach the session and anyone else listening.
    const seen: string[] = [];
    ws.on('message', (data) => seen.push(String(data)));
    const heard = new Promise((r) => registry.once('message', r));
    client.ws.send('hello');
    await heard;
    expect(seen).toEqual(['hello']);
  });
});

describe('ws transport: bursts', () => {
  const count = 1100;
  const expected = Array.from({ length: count }, (_, i) => kilobyte(i));

  it('a burst of 1,100 x 1 KB in one turn reaches a client that reads, under the default backpressure', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const opened = next(registry, 'open');
    const client = await connect(leftovers, `${url}/feed`);
    const [session] = await opened;
    for (let i = 0; i < count; i++) registry.publish('feed', kilobyte(i));
    expect(await all(client, count)).toEqual(expected);
    expect(session.state).toBe('open');
    expect(registry.stats()).toMatchObject({ delivered: count, dropped: 0, closedForBackpressure: 0 });
  }, 60_000);

  it('the same burst delivered by a broker in one turn (a backlog on resume) reaches the client too', async () => {
    const broker = new BacklogBroker();
    const { registry, url } = await startWs(leftovers, { path: '/:channel' }, { broker });
    const opened = next(registry, 'open');
    const client = await connect(leftovers, `${url}/feed`);
    const [session] = await opened;
    const context = broker.context as BrokerContext;
    for (let i = 0; i < count; i++) context.deliver(`backlog.${i}`, ['feed'], 'feed', encode(kilobyte(i)));
    expect(await all(client, count)).toEqual(expected);
    expect(session.state).toBe('open');
    expect(registry.stats()).toMatchObject({ delivered: count, dropped: 0, closedForBackpressure: 0 });
  }, 60_000);

  it('a burst in one turn below the hand-off size costs one socket write per session', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const opened = next(registry, 'open');
    const client = await connect(leftovers, `${url}/x`);
    const [session] = await opened;
    const writes = countWrites(session as Session);
    for (let i = 0; i < 10; i++) registry.publish('x', kilobyte(i));
    expect(await client.received(10)).toEqual(expected.slice(0, 10));
    expect(writes()).toBe(1);
  });
});

describe('ws transport: sends', () => {
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

  it('a socket whose write throws is reported and its messages counted dropped; the others still get them', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' });
    const errors: Error[] = [];
    registry.on('error', (e) => errors.push(e));
    const first = await connect(leftovers, `${url}/x`);
    const opened = next(registry, 'open');
    await connect(leftovers, `${url}/x`);
    const [broken] = await opened;
    const third = await connect(leftovers, `${url}/x`);
    (broken as unknown as { ws: { _socket: net.Socket } }).ws._socket.write = () => {
      throw new Error('socket exploded');
    };
    const drops: DropReason[] = [];
    registry.on('drop', (_s, reason) => drops.push(reason));
    registry.publish('x', 'still delivered');
    registry.publish('x', 'and again');
    expect(await first.received(2)).toEqual(['still delivered', 'and again']);
    expect(await third.received(2)).toEqual(['still delivered', 'and again']);
    expect(drops).toEqual(['error', 'error']);
    expect(errors.map((e) => e.message)).toEqual(['socket exploded']);
    expect(registry.stats()).toMatchObject({ delivered: 4, dropped: 2, droppedBy: { error: 2 } });
  });
});

describe('ws transport: peers that do not read', () => {
  it('a session closed for backpressure is terminated about a second later, wherever its bytes sit', async () => {
    const limit = 256 * 1024;
    const { registry, url } = await startWs(leftovers, {
      path: '/:channel',
      backpressure: { limit, policy: 'close' },
    });
    const opened = next(registry, 'open');
    const stalled = await connect(leftovers, `${url}/feed`);
    const [session] = await opened;
    stalled.socket.pause();
    const closed = next(registry, 'close', (s: Session) => s.id === session.id, 10_000);
    const payload = 'x'.repeat(16 * 1024);
    // One turn, bounded (at most 32 MB): the bytes pass the limit held, handed off, or in the kernel's buffers.
    let published = 0;
    while (session.state === 'open' && published < 2000) {
      registry.publish('feed', payload);
      published++;
    }
    expect(session.state).toBe('closing');
    expect(registry.stats().closedForBackpressure).toBe(1);
    // ws's own close timeout is 30 s: the session must be gone well before.
    // The peer never echoes the close frame: the registry reports the code that was sent.
    const [, code] = await closed;
    expect(code).toBe(1013);
    expect(registry.stats()).toMatchObject({ sessions: 0 });
    const stats = registry.stats();
    expect(stats.delivered + stats.dropped).toBe(published);
  }, 30_000);
});

describe('ws transport: a close the peer never answers', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it("terminates the session after closeTimeout instead of holding it for ws's 30 s; the code sent is reported", async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel' }, { closeTimeout: 300 });
    const opened = next(registry, 'open');
    // A client that reads but never answers a close frame (its socket's data is taken off before ws sees it).
    const client = await connect(leftovers, `${url}/feed`);
    const [session] = await opened;
    client.socket.removeAllListeners('data');
    client.socket.on('data', () => {});
    // Bounded well below ws's own 30 s close timeout.
    const closed = next(registry, 'close', (s: Session) => s.id === session.id, 10_000);
    session.close(4000, 'bye');
    expect(session.state).toBe('closing');
    // The peer never echoed the close frame: the code that was sent is reported.
    const [, code] = await closed;
    expect(code).toBe(4000);
    expect(registry.stats()).toMatchObject({ sessions: 0 });
  });
});

describe('ws transport: options', () => {
  it('rejects ws-only options with the option named', () => {
    const registry = new SessionRegistry();
    expect(() => wsTransport(registry, { perMessageDeflate: 'yes' as never })).toThrow(/"perMessageDeflate"/);
    expect(() => wsTransport(registry, { server: {} as http.Server })).toThrow(/"server"/);
    expect(() => wsTransport(registry, { wss: {} as WebSocketServer })).toThrow(/"wss"/);
    const listening = new WebSocketServer({ noServer: false, port: 0, host: '127.0.0.1' });
    leftovers.add(() => new Promise((r) => listening.close(r)));
    expect(() => wsTransport(registry, { wss: listening })).toThrow(/noServer/);
  });
});
