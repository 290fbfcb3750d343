/**
 * Inbound limits over real sockets, on both transports (issue 8, defect 8): a flooding client is closed with
 * 1008 and counted, a client under the limit is not touched, and other sessions keep receiving pushes while
 * the flood lasts.
 */
import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_INBOUND_LIMIT, type Session } from '../../src/index.js';
import { connect, connectMany, Leftovers, next, within, type Client } from './clients.js';
import type { TransportUnderTest } from './harness.js';
import { uwsHarness } from './uws-harness.js';
import { wsHarness } from './ws-harness.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** `count` masked text frames of `payload` (mask key 0, so the payload bytes stay as they are). */
function frames(payload: string, count: number): Buffer {
  const body = Buffer.from(payload);
  if (body.length > 125) throw new Error('short frames only');
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | body.length, 0, 0, 0, 0]), body]);
  return Buffer.concat(Array.from({ length: count }, () => frame));
}

/**
 * Writes `total` small messages on the client's TCP socket as fast as it accepts them (waiting for `drain`
 * when it does not), until all are written or the connection ends.
 */
async function flood(client: Client, total: number): Promise<void> {
  const batch = 1000;
  const chunk = frames('flood', batch);
  let written = 0;
  const socket = client.socket;
  let ended = false;
  void client.closed.then(() => (ended = true));
  while (written < total && !ended && !socket.destroyed) {
    written += batch;
    if (!socket.write(chunk)) {
      await within(
        new Promise<void>((resolve) => {
          const done = () => {
            socket.off('drain', done);
            socket.off('close', done);
            resolve();
          };
          socket.on('drain', done);
          socket.on('close', done);
        }),
        20_000,
        'the flooding socket to drain or close',
      );
    }
  }
}

function defineInboundTests(t: TransportUnderTest): void {
  describe(`inbound limit: ${t.name}`, () => {
    it('closes a client flooding 100,000 messages with 1008 and counts it; 20 other sessions get every push meanwhile', async () => {
      const server = await t.start();
      leftovers.add(server.close);
      const { registry } = server;
      const fromFlooder: number[] = [];
      const readers = await connectMany(leftovers, `${server.url}/feed`, 20);
      const flooderOpened = next(registry, 'open');
      const flooder = await connect(leftovers, `${server.url}/chat`);
      const [flooderSession] = (await flooderOpened) as [Session];
      registry.on('message', (s) => {
        if (s === flooderSession) fromFlooder.push(1);
      });
      const removed = next(registry, 'close', (s) => s === flooderSession);
      const flooding = flood(flooder, 100_000);
      // Pushes while the flood lasts: one per event-loop turn, so they interleave with the flood's reads.
      const pushes = 200;
      for (let i = 0; i < pushes; i++) {
        registry.publish('feed', `push ${i}`);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const closed = await within(flooder.closed, 10_000, 'the flooder to be closed');
      // The registry removes it once the handshake ends, or terminates it a second after the close frame.
      expect((await removed)[1]).toBe(1008);
      await flooding;
      expect(closed.code).toBe(1008);
      expect(registry.stats().inboundLimited).toBe(1);
      // The burst, plus what the rate refilled while the flood lasted (a few seconds at most on a busy machine).
      expect(fromFlooder.length).toBeGreaterThanOrEqual(DEFAULT_INBOUND_LIMIT.messageBurst);
      expect(fromFlooder.length).toBeLessThan(DEFAULT_INBOUND_LIMIT.messageBurst + 20 * 100);
      const expected = Array.from({ length: pushes }, (_, i) => `push ${i}`);
      for (const reader of readers) expect(await reader.received(pushes)).toEqual(expected);
      expect(registry.stats()).toMatchObject({ dropped: 0, sessions: 20 });
      expect(registry.count('chat')).toBe(0);
    });

    it('leaves a client under the limit alone: a burst of 150 messages all arrive, the session stays open', async () => {
      const server = await t.start();
      leftovers.add(server.close);
      const { registry } = server;
      const received: string[] = [];
      registry.on('message', (_s, data) => received.push(String(data)));
      const client = await connect(leftovers, `${server.url}/chat`);
      for (let i = 0; i < 150; i++) client.ws.send(`m${i}`);
      await within(
        new Promise<void>((resolve) => {
          const check = () => (received.length >= 150 ? resolve() : setImmediate(check));
          check();
        }),
        10_000,
        '150 messages at the server',
      );
      expect(received).toEqual(Array.from({ length: 150 }, (_, i) => `m${i}`));
      registry.publish('chat', 'still here');
      expect(await client.received(1)).toEqual(['still here']);
      expect(registry.stats().inboundLimited).toBe(0);
      expect(registry.count('chat')).toBe(1);
    });

    it('limits bytes too (byteBurst 2,048, maxPayload 1,024): the third 1,000-byte message closes with 1008', async () => {
      const server = await t.start({
        transport: { maxPayload: 1024, inboundLimit: { bytesPerSecond: 1, byteBurst: 2048 } },
      });
      leftovers.add(server.close);
      const { registry } = server;
      const received: string[] = [];
      registry.on('message', (_s, data) => received.push(String(data)));
      const client = await connect(leftovers, `${server.url}/chat`);
      for (const c of ['a', 'b', 'c']) client.ws.send(c.repeat(1000));
      const closed = await within(client.closed, 10_000, 'the close');
      expect(closed.code).toBe(1008);
      expect(received.map((m) => m[0])).toEqual(['a', 'b']);
      expect(registry.stats().inboundLimited).toBe(1);
    });

    it('inboundLimit: false turns it off: 1,000 messages in one burst all arrive', async () => {
      const server = await t.start({ transport: { inboundLimit: false } });
      leftovers.add(server.close);
      const { registry } = server;
      let count = 0;
      registry.on('message', () => count++);
      const client = await connect(leftovers, `${server.url}/chat`);
      client.socket.write(frames('x', 1000));
      await within(
        new Promise<void>((resolve) => {
          const check = () => (count >= 1000 ? resolve() : setImmediate(check));
          check();
        }),
        10_000,
        '1,000 messages at the server',
      );
      expect(registry.stats().inboundLimited).toBe(0);
      expect(registry.count('chat')).toBe(1);
    });

    it('rejects a bad inboundLimit with an error naming the option', async () => {
      await expect(t.start({ transport: { inboundLimit: true } })).rejects.toThrow(
        expect.objectContaining({ name: 'TypeError', message: expect.stringContaining('"inboundLimit"') }),
      );
      await expect(t.start({ transport: { inboundLimit: { messagesPerSecond: 0 } } })).rejects.toThrow(
        expect.objectContaining({
          name: 'RangeError',
          message: expect.stringContaining('"inboundLimit.messagesPerSecond"'),
        }),
      );
      await expect(t.start({ transport: { inboundLimit: { messageBurst: 1.5 } } })).rejects.toThrow(
        expect.objectContaining({
          name: 'TypeError',
          message: expect.stringContaining('"inboundLimit.messageBurst"'),
        }),
      );
      await expect(
        t.start({ transport: { maxPayload: 4096, inboundLimit: { byteBurst: 4095 } } }),
      ).rejects.toThrow(
        expect.objectContaining({
          name: 'RangeError',
          message: expect.stringContaining('"inboundLimit.byteBurst"'),
        }),
      );
      await expect(t.start({ transport: { inboundLimit: { perSecond: 1 } } })).rejects.toThrow(
        expect.objectContaining({ name: 'TypeError', message: expect.stringContaining('perSecond') }),
      );
    });
  });
}

defineInboundTests(wsHarness);
defineInboundTests(uwsHarness);

describe('inbound work per turn: ws with a user-supplied wss (synchronous events)', () => {
  it('hands on one message per socket per turn: 1,000 messages in one chunk arrive over many turns, in order', async () => {
    const wss = new WebSocketServer({ noServer: true });
    leftovers.add(() => new Promise((resolve) => wss.close(resolve)));
    const server = await wsHarness.start({ transport: { wss, inboundLimit: false } });
    leftovers.add(server.close);
    const { registry } = server;
    const received: string[] = [];
    const turns = new Set<number>();
    let turn = 0;
    const tick = () => {
      turn++;
      if (received.length < 1000) setImmediate(tick);
    };
    registry.on('message', (_s, data) => {
      received.push(String(data));
      turns.add(turn);
    });
    const client = await connect(leftovers, `${server.url}/chat`);
    setImmediate(tick);
    client.socket.write(Buffer.concat(Array.from({ length: 1000 }, (_, i) => frames(`m${i}`, 1))));
    await within(
      new Promise<void>((resolve) => {
        const check = () => (received.length >= 1000 ? resolve() : setImmediate(check));
        check();
      }),
      10_000,
      '1,000 messages at the server',
    );
    expect(received).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
    expect(turns.size).toBeGreaterThan(100);
  });
});
