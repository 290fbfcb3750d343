/**
 * Coalescing across turns on the ws transport (`coalesceWindow`), over real sockets: a quiet session is written
 * at the end of the turn, a busy one once per window; the window ends by itself; a close in a window loses
 * nothing that was counted delivered. Every assertion is on write counts, order and counters, never on time.
 */
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry, type Session } from '../../src/index.js';
import { MAX_COALESCE_WINDOW, wsTransport } from '../../transports/ws.js';
import type { WsWriter } from '../../transports/ws-writer.js';
import { countWrites, startWs } from '../support/ws-server.js';
import { connect, Leftovers, next, type Client } from './clients.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** The largest window: what a test sees then cannot be the window ending early on a slow machine. */
const WINDOW = MAX_COALESCE_WINDOW;

interface Watched {
  client: Client;
  session: Session;
  /** `socket.write` calls on the server side of this session so far. */
  writes(): number;
  writer: WsWriter;
}

async function watched(coalesceWindow: number): Promise<Watched & { registry: SessionRegistry }> {
  const { registry, url } = await startWs(leftovers, { path: '/:channel', coalesceWindow });
  const opened = next(registry, 'open');
  const client = await connect(leftovers, `${url}/feed`);
  const [session] = await opened;
  const writes = countWrites(session);
  const { writer } = (session as unknown as { owner: { writer: WsWriter } }).owner;
  return { registry, client, session, writes, writer };
}

describe('ws transport: coalescing across turns', () => {
  it('a quiet session is written at the end of the turn, with or without a window', async () => {
    for (const window of [0, WINDOW]) {
      const { registry, client, writes } = await watched(window);
      registry.publish('feed', 'first');
      await nextTurn();
      expect(writes()).toBe(1);
      expect(await client.received(1)).toEqual(['first']);
      // Quiet: nothing written for longer than the window.
      await sleep(window + 20);
      registry.publish('feed', 'alarm');
      await nextTurn();
      expect(writes()).toBe(2);
      expect(await client.received(2)).toEqual(['first', 'alarm']);
    }
  });

  it('one publish per turn to a busy session costs fewer writes than messages, all delivered in order', async () => {
    const { registry, client, writes, writer } = await watched(WINDOW);
    const count = 200;
    const expected = Array.from({ length: count }, (_, i) => `m${i}`);
    for (let i = 0; i < count; i++) {
      registry.publish('feed', `m${i}`);
      await nextTurn();
    }
    // The first went out at the end of its turn; the rest wait for the window (nothing is lost meanwhile).
    expect(writes()).toBeLessThan(count);
    expect(await client.received(count)).toEqual(expected);
    expect(writer.waiting).toBe(0);
    expect(registry.stats()).toMatchObject({ delivered: count, dropped: 0 });
  });

  it('without a window, one publish per turn costs one write per message', async () => {
    const { registry, client, writes } = await watched(0);
    for (let i = 0; i < 20; i++) {
      registry.publish('feed', `m${i}`);
      await nextTurn();
    }
    expect(writes()).toBe(20);
    expect(await client.received(20)).toHaveLength(20);
  });

  it('the window ends by itself: held messages go out with no later publish to push them', async () => {
    const { registry, client, session, writes, writer } = await watched(WINDOW);
    registry.publish('feed', 'a');
    await nextTurn();
    registry.publish('feed', 'b');
    registry.publish('feed', 'c');
    await nextTurn();
    // Busy: the registry holds the channel's publishes for the window; counted once fanned out, not before.
    expect(writes()).toBe(1);
    expect(registry.stats()).toMatchObject({ delivered: 1, coalescing: 2 });
    expect(await client.received(3)).toEqual(['a', 'b', 'c']);
    // Both in one write, to a session visited once for both.
    expect(writes()).toBe(2);
    expect(writer.waiting).toBe(0);
    expect(session.bufferedAmount).toBe(0);
    expect(registry.stats()).toMatchObject({ delivered: 3, dropped: 0, coalescing: 0 });
  });

  it('a direct send to a busy session is held by its writer, counted in its buffered bytes', async () => {
    const { client, session, writes, writer } = await watched(WINDOW);
    session.send('a');
    await nextTurn();
    session.send('b');
    session.send('c');
    await nextTurn();
    expect(writes()).toBe(1);
    expect(writer.waiting).toBe(1);
    expect(session.bufferedAmount).toBeGreaterThan(0);
    expect(await client.received(3)).toEqual(['a', 'b', 'c']);
    expect(writes()).toBe(2);
    expect(writer.waiting).toBe(0);
  });

  it('close during a window writes the held messages before the close frame', async () => {
    const { registry, client, session } = await watched(WINDOW);
    registry.publish('feed', 'a');
    await nextTurn();
    registry.publish('feed', 'b');
    await nextTurn();
    expect(registry.stats().delivered).toBe(1);
    session.close(4000, 'bye');
    const closed = await client.closed;
    expect(closed).toEqual({ code: 4000, reason: 'bye' });
    expect(client.messages).toEqual(['a', 'b']);
    expect(registry.stats()).toMatchObject({ delivered: 2, dropped: 0 });
  });

  it('terminate during a window moves the held messages from delivered to dropped (closed)', async () => {
    const { registry, client, session } = await watched(WINDOW);
    const drops: string[] = [];
    registry.on('drop', (_s, reason, message) => drops.push(`${reason}:${String(message.data)}`));
    const gone = next(registry, 'close');
    registry.publish('feed', 'a');
    await nextTurn();
    expect(await client.received(1)).toEqual(['a']);
    registry.publish('feed', 'b');
    registry.publish('feed', 'c');
    // Held by the registry for the busy channel: not counted yet.
    expect(registry.stats()).toMatchObject({ delivered: 1, dropped: 0 });
    session.terminate();
    await gone;
    await client.closed;
    expect(client.messages).toEqual(['a']);
    expect(drops).toEqual(['closed:b', 'closed:c']);
    expect(registry.stats()).toMatchObject({ delivered: 1, dropped: 2, droppedBy: { closed: 2 } });
  });

  it('a quiet channel is written at once while a busy one on the same transport waits for the window', async () => {
    const { registry, url } = await startWs(leftovers, { path: '/:channel', coalesceWindow: WINDOW });
    const busy = await connect(leftovers, `${url}/busy`);
    const opened = next(registry, 'open');
    const quiet = await connect(leftovers, `${url}/alarms`);
    const [alarmSession] = await opened;
    const alarmWrites = countWrites(alarmSession as Session);
    for (let i = 0; i < 20; i++) {
      registry.publish('busy', `b${i}`);
      if (i === 10) registry.publish('alarms', 'fire');
      await nextTurn();
      if (i === 10) expect(alarmWrites()).toBe(1);
    }
    expect(await quiet.received(1)).toEqual(['fire']);
    expect(await busy.received(20)).toHaveLength(20);
  });

  it('rejects a bad coalesceWindow with the option named', () => {
    const registry = new SessionRegistry();
    const noServer = true;
    expect(() => wsTransport(registry, { noServer, coalesceWindow: '5' as never })).toThrow(TypeError);
    expect(() => wsTransport(registry, { noServer, coalesceWindow: Number.NaN })).toThrow(/"coalesceWindow"/);
    expect(() => wsTransport(registry, { noServer, coalesceWindow: -1 })).toThrow(RangeError);
    expect(() => wsTransport(registry, { noServer, coalesceWindow: WINDOW + 1 })).toThrow(/"coalesceWindow"/);
  });
});
