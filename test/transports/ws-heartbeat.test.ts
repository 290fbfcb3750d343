/**
 * The ws heartbeat over real sockets, for every relation of timeout to interval the options accept (issue 14:
 * with timeout >= interval, the check of one round used to read the "awaiting pong" state a later round had set
 * again, and terminated clients that answered every ping).
 */
import type { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { Session } from '../../src/index.js';
import { startWs } from '../support/ws-server.js';
import { connect, Leftovers, next, within, type Client } from './clients.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/**
 * Holds the event loop for `ms`: a turn that runs longer than the heartbeat timeout (a long synchronous burst, a
 * GC pause), after which a ping round and an earlier round's check are both due in the same turn.
 */
function busyTurn(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

/** Resolves after the client received `n` pings; rejects at once if it is closed first. */
function pings(client: Client, n: number, ms: number): Promise<void> {
  let got = 0;
  const counted = new Promise<void>((resolve, reject) => {
    (client.ws as WebSocket).on('ping', () => {
      if (++got === n) resolve();
    });
    void client.closed.then(({ code }) => reject(new Error(`closed with ${code} after ${got} pings`)));
  });
  return within(counted, ms, `${n} pings (got ${got})`);
}

describe('ws transport: heartbeat', () => {
  const cases = [
    { interval: 400, timeout: 200 },
    { interval: 400, timeout: 400 },
    { interval: 400, timeout: 800 },
  ];
  // The long turn follows the first pong, so the second round already meets the first round's check.
  const rounds = 3;

  it('keeps an idle client that answers pings for timeout <, = and > interval, even across a long turn; a silent one is terminated', async () => {
    // One after the other: a long turn in one case must not hold another case's unread pongs.
    for (const { interval, timeout } of cases) {
      const { registry, url } = await startWs(leftovers, { heartbeat: { interval, timeout } });
      let opened = next(registry, 'open');
      const live = await connect(leftovers, `${url}/hb`);
      const [liveSession] = (await opened) as [Session];
      opened = next(registry, 'open');
      const silent = await connect(leftovers, `${url}/hb`, { autoPong: false });
      const [silentSession] = (await opened) as [Session];
      const silentClosed = next(
        registry,
        'close',
        (s) => s.id === silentSession.id,
        interval + timeout + 5000,
      );
      // Right after the server read a pong, that round is answered; the turn then outlasts both the next ping
      // round and this round's check, so both run in the same turn (the order that used to condemn the client).
      (liveSession as unknown as { ws: WebSocket }).ws.once('pong', () =>
        busyTurn(Math.max(interval, timeout) + 50),
      );
      // Round k is checked at k x interval + timeout: by the last ping, the checks of the earlier rounds ran.
      await pings(live, rounds, rounds * interval + timeout + 10_000);
      const [, code] = await silentClosed;
      expect(code).toBe(1006);
      expect((await silent.closed).code).toBe(1006);
      expect(registry.sessions('hb')).toEqual([liveSession]);
      expect(live.ws.readyState).toBe(live.ws.OPEN);
    }
  }, 60_000);
});
