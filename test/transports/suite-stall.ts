/**
 * The backpressure part of the conformance suite: one client stops reading (its socket is paused, so the
 * server's buffer for it grows) while healthy clients read. Every message is either delivered or counted as
 * dropped, exactly once, and the healthy clients miss nothing.
 */
import { expect, it } from 'vitest';
import type { Message, Session } from '../../src/index.js';
import { connect, next, within } from './clients.js';
import type { SuiteContext } from './suite.js';

const LIMIT = 256 * 1024;
// Large messages go to the socket at once everywhere; small ones are batched per socket by uWS pub/sub.
const SHAPES = [
  { name: '16 KiB messages', size: 16 * 1024, perTurn: 4 },
  { name: '1 KiB messages', size: 1024, perTurn: 64 },
] as const;
const MAX_BYTES = 128 * 1024 * 1024; // far beyond any loopback socket buffer
const CLOSE_CODE = 4000;

function seqOf(data: string | Message): number {
  const text = typeof data === 'string' ? data : String(data.data);
  return Number(text.slice(0, text.indexOf(':')));
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export function defineStallTests({ t, start, join, leftovers }: SuiteContext): void {
  for (const { name, size, perTurn } of SHAPES)
    for (const policy of ['drop', 'close'] as const) {
      it(`stalled client, ${name}, policy "${policy}": every message delivered or counted as dropped, healthy ones get all`, async () => {
        const payload = 'x'.repeat(size);
        // How far past the limit the buffer may be seen: the message that crossed it, or (documented
        // difference) the batch the library had queued for the socket before it showed in the buffer.
        const batch = t.differences['backpressure-batched'] !== undefined && size < 16 * 1024 ? 32 : 0;
        const slack = (batch + 1) * (size + 64);
        const s = await start({
          registry: { backpressure: { limit: LIMIT, policy, closeCode: CLOSE_CODE } },
        });
        const healthy = await Promise.all([1, 2, 3].map(() => connect(leftovers, `${s.url}/feed`)));
        const stalled = await join(s, '/feed');
        const stalledId = stalled.session.id;
        const dropped: number[] = [];
        const reasons: string[] = [];
        let otherDrops = 0;
        s.registry.on('drop', (session: Session, reason, message) => {
          if (session.id !== stalledId) return void otherDrops++;
          dropped.push(seqOf(message));
          reasons.push(reason);
        });
        let closedWith: [number, string] | null = null;
        const serverClosed = next(s.registry, 'close', (session) => session.id === stalledId, 30_000).then(
          ([, code, reason]) => (closedWith = [code, reason]),
        );
        if (policy === 'drop') void serverClosed.catch(() => {});

        stalled.client.socket.pause();
        let seq = 0;
        let turnsAfterDrop = 0;
        let maxBuffered = 0;
        // Publish a few messages per event-loop turn (so that the healthy clients read as they go) until the
        // stalled session has been past the limit for a while (drop) or was closed (close).
        for (let i = 0; i < MAX_BYTES / (size * perTurn); i++) {
          for (let k = 0; k < perTurn; k++) {
            s.registry.publish('feed', `${seq++}:${payload}`);
            maxBuffered = Math.max(maxBuffered, stalled.session.bufferedAmount);
          }
          await turn();
          if (closedWith !== null || (dropped.length > 0 && ++turnsAfterDrop >= 8)) break;
        }
        expect(dropped.length, 'the stalled session must have been past the limit').toBeGreaterThan(0);
        const firstDrop = dropped[0] as number;
        expect(otherDrops).toBe(0);
        // Memory stays bounded: the limit plus the message that crossed it (and its frame header).
        expect(maxBuffered).toBeLessThanOrEqual(LIMIT + slack);

        // Healthy clients get every message, in order.
        for (const h of healthy) {
          await h.received(seq, 30_000);
          expect(h.messages.map(seqOf)).toEqual(range(0, seq));
        }

        if (policy === 'drop') {
          // Once past the limit, a paused client misses everything after: the drops are exactly the tail.
          expect(dropped).toEqual(range(firstDrop, seq));
          expect(new Set(reasons)).toEqual(new Set(['backpressure']));
          expect(stalled.session.state).toBe('open');
          stalled.client.socket.resume();
          await stalled.client.received(firstDrop, 30_000);
          expect(stalled.client.messages.map(seqOf)).toEqual(range(0, firstDrop));
          // Drained: it receives again.
          s.registry.publish('feed', `${seq++}:after`);
          await stalled.client.received(firstDrop + 1, 30_000);
          expect(seqOf(stalled.client.messages[firstDrop] as string)).toBe(seq - 1);
          for (const h of healthy) await h.received(seq, 30_000);
          expect(s.registry.stats()).toMatchObject({
            dropped: seq - 1 - firstDrop,
            droppedBy: { backpressure: seq - 1 - firstDrop, closed: 0, error: 0 },
            delivered: 3 * seq + firstDrop + 1,
            closedForBackpressure: 0,
          });
        } else {
          // The first message past the limit is dropped and the session closed with the policy's code. A
          // transport that keeps the session in its channels during the closing handshake counts what it still
          // got meanwhile as `closed` drops: contiguous, right after the first.
          expect(reasons[0]).toBe('backpressure');
          expect(reasons.slice(1)).toEqual(reasons.slice(1).map(() => 'closed'));
          expect(dropped).toEqual(range(firstDrop, firstDrop + dropped.length));
          // The client comes back and reads: it finds the close frame, with the policy's code, after its data.
          stalled.client.socket.resume();
          const seen = await within(stalled.client.closed, 30_000, 'the stalled client to see the close');
          expect(seen.code).toBe(CLOSE_CODE);
          await serverClosed;
          expect(closedWith).toEqual([CLOSE_CODE, 'backpressure']);
          expect(s.registry.count('feed')).toBe(3);
          expect(stalled.client.messages.map(seqOf)).toEqual(range(0, firstDrop));
          expect(s.registry.stats()).toMatchObject({
            dropped: dropped.length,
            droppedBy: { backpressure: 1, closed: dropped.length - 1, error: 0 },
            delivered: 3 * seq + firstDrop,
            closedForBackpressure: 1,
          });
        }
      }, 90_000);
    }
}
