/**
 * Publishes spread over event-loop turns, for every transport: one publish per turn (as from a timer or one
 * broker message per read) reaches every client complete and in order, mixed with direct sends and a quiet
 * channel; a session closed or terminated among them loses nothing it held unaccounted. (The registry holds a
 * busy channel's publishes across turns for the transports' `coalesceWindow`, on by default on both.)
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { expect, it } from 'vitest';
import type { Message } from '../../src/index.js';
import { connect, next } from './clients.js';
import type { SuiteContext } from './suite.js';

export function defineTurnTests({ start, join, leftovers }: SuiteContext): void {
  it('one publish per turn, with direct sends and a quiet channel between: all delivered, in order', async () => {
    const s = await start();
    const a = await join(s, '/busy');
    const b = await connect(leftovers, `${s.url}/busy`);
    const quiet = await connect(leftovers, `${s.url}/alarms`);
    const count = 300;
    const expectedA: string[] = [];
    const expectedB: string[] = [];
    let held = 0;
    for (let i = 0; i < count; i++) {
      s.registry.publish('busy', `p${i}`);
      held = Math.max(held, s.registry.stats().coalescing);
      expectedA.push(`p${i}`);
      expectedB.push(`p${i}`);
      if (i % 25 === 0) {
        a.session.send(`direct${i}`);
        expectedA.push(`direct${i}`);
      }
      if (i % 100 === 50) s.registry.publish('alarms', `alarm${i}`);
      await nextTurn();
    }
    expect(await a.client.received(expectedA.length, 20_000)).toEqual(expectedA);
    expect(await b.received(expectedB.length, 20_000)).toEqual(expectedB);
    expect(await quiet.received(3)).toEqual(['alarm50', 'alarm150', 'alarm250']);
    expect(s.registry.stats()).toMatchObject({
      delivered: expectedA.length + count + 3,
      dropped: 0,
      coalescing: 0,
    });
    // The busy channel was held across turns (coalesceWindow, on by default), not only written turn by turn.
    expect(held).toBeGreaterThan(0);
  });

  for (const end of ['close', 'terminate'] as const) {
    it(`${end} among one-per-turn publishes: what the client got plus what was counted dropped is all, in order`, async () => {
      const s = await start();
      const a = await join(s, '/busy');
      const drops: string[] = [];
      s.registry.on('drop', (session, _reason, message: Message) => {
        if (session === a.session) drops.push(String(message.data));
      });
      const gone = next(s.registry, 'close', (session) => session === a.session, 10_000);
      const sent: string[] = [];
      for (let i = 0; i < 40; i++) {
        s.registry.publish('busy', `p${i}`);
        sent.push(`p${i}`);
        await nextTurn();
      }
      s.registry.publish('busy', 'last');
      sent.push('last');
      if (end === 'close') a.session.close(4000, 'bye');
      else a.session.terminate();
      await gone;
      await a.client.closed;
      const got = a.client.messages;
      const stats = s.registry.stats();
      const seen = JSON.stringify({
        got: got.length,
        drops,
        stats: { d: stats.delivered, x: stats.dropped },
      });
      // Counted delivered: a prefix of what was sent, in order; the rest counted dropped; nothing twice. The
      // client got what was delivered, except on terminate what the socket still buffered (ws: its buffer, uWS:
      // its per-socket queue), lost with the socket as with any connection destroyed.
      const index = (m: string): number => sent.indexOf(m);
      expect(
        [...drops].sort((x, y) => index(x) - index(y)),
        seen,
      ).toEqual(sent.slice(stats.delivered));
      expect(stats.dropped, seen).toBe(drops.length);
      expect(got, seen).toEqual(sent.slice(0, got.length));
      expect(got.length, seen).toBeLessThanOrEqual(stats.delivered);
      // A close writes everything sent before it, then the close frame.
      if (end === 'close') expect(got, seen).toEqual(sent);
    });
  }
}
