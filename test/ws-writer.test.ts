/**
 * The ws transport's writer (transports/ws-writer.ts) under random interleavings of publishes, turn boundaries,
 * window timers, closes, terminates and failing sockets, with fake timers and in-memory sockets: the clock and
 * every turn are the test's. After every step and at the end: each message sent to a session is written xor
 * retracted (counted dropped), at most once, in order; what is held is exactly what the session's buffered
 * bytes count; nothing is held longer than the window; a quiet session is written at the end of its turn.
 *
 * Replay a failure with the seed and path it prints: FANOUT_SEED=<seed> FANOUT_PATH=<path> npx vitest run
 * test/ws-writer.test.ts (FANOUT_RUNS=<n> for more runs).
 */
import fc from 'fast-check';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { encode, type Message } from '../src/index.js';
import { Stamp, WsWriter, type Run, type WriterTarget } from '../transports/ws-writer.js';

const WINDOW = 5;
const HAND_OFF = 64;
/** Every message is written as `size` copies of its 4-byte id, so hand-offs happen mid-sequence. */
const FRAME = 4;

/** An in-memory session: its socket records every write; it can vanish (terminated) or fail. */
class Target implements WriterTarget {
  held: Run | Stamp | null = null;
  /** Ids written to the socket, one per 4-byte frame. */
  readonly frames: number[] = [];
  /** Ids retracted: counted delivered, never written, moved to dropped. */
  readonly dropped: number[] = [];
  writes = 0;
  state: 'open' | 'gone' | 'failing' = 'open';
  readonly #socket = {
    destroyed: false,
    write: (chunk: Buffer): boolean => {
      if (this.state === 'failing') throw new Error('socket exploded');
      this.writes++;
      for (let i = 0; i < chunk.length; i += FRAME) this.frames.push(chunk.readUInt32BE(i));
      return true;
    },
  };
  socket(): never {
    return (this.state === 'gone' ? null : this.#socket) as never;
  }
  retracted(message: Message): void {
    this.dropped.push(Number(String(message.data).slice(1)));
  }
  failed(): void {}
}

type Op =
  | { op: 'publish'; to: number[]; size: number }
  | { op: 'turn' }
  | { op: 'wait'; ms: number }
  | { op: 'close'; k: number }
  | { op: 'terminate'; k: number }
  | { op: 'fail'; k: number };

const SESSIONS = 4;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('publish' as const),
      to: fc.uniqueArray(fc.nat(SESSIONS - 1), { minLength: 1, maxLength: SESSIONS }),
      size: fc.integer({ min: 1, max: 24 }),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ op: 'turn' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 12 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), k: fc.nat(SESSIONS - 1) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('terminate' as const), k: fc.nat(SESSIONS - 1) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fail' as const), k: fc.nat(SESSIONS - 1) }) },
);

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

interface Sent {
  id: number;
  bytes: number;
  at: number;
}

function run(ops: Op[], window: number): void {
  const writer = new WsWriter(HAND_OFF, window);
  const targets: Target[] = [];
  const sent: Sent[][] = [];
  /** Sessions closed by the transport (close or terminate): nothing more is sent to them. */
  const closed = new Set<number>();
  for (let k = 0; k < SESSIONS; k++) {
    targets.push(new Target());
    sent.push([]);
  }
  /** Sessions that were quiet when sent something in this turn: written by the end of it. */
  const quiet = new Set<Target>();
  let next = 0;
  const frameOf = (id: number, size: number) => {
    const frame = Buffer.alloc(FRAME * size);
    for (let i = 0; i < size; i++) frame.writeUInt32BE(id, i * FRAME);
    return { message: encode(`m${id}`), frame };
  };

  const check = (where: string): void => {
    const now = performance.now();
    for (let k = 0; k < SESSIONS; k++) {
      const t = targets[k]!;
      const ids = sent[k]!.map((s) => s.id);
      // Written: in order, at most once (each message written as `size` repeated ids, collapsed here).
      const written = t.frames.filter((id, i) => i === 0 || t.frames[i - 1] !== id);
      const done = new Set<number>();
      let last = -1;
      for (const id of written) {
        expect(ids, `${where}: #${k} wrote ${id}, never sent`).toContain(id);
        expect(id, `${where}: #${k} wrote ${id} out of order`).toBeGreaterThan(last);
        last = id;
        done.add(id);
      }
      for (const id of t.dropped) {
        expect(done.has(id), `${where}: #${k} ${id} both written and retracted`).toBe(false);
        done.add(id);
      }
      expect(done.size, `${where}: #${k} a message written or retracted twice`).toBe(
        written.length + t.dropped.length,
      );
      // Held: exactly the sent messages neither written nor retracted, a suffix of what was sent.
      const pending = sent[k]!.filter((s) => !done.has(s.id));
      const heldBytes = pending.reduce((a, s) => a + s.bytes, 0);
      expect(writer.held(t), `${where}: #${k} held bytes`).toBe(heldBytes);
      for (const s of pending) {
        expect(s.id, `${where}: #${k} holds ${s.id} behind a later one`).toBeGreaterThan(last);
        // Bounded: nothing waits past the window (the timer runs at exactly `window` on the fake clock).
        expect(now - s.at, `${where}: #${k} held ${s.id} past the window`).toBeLessThanOrEqual(window);
      }
    }
  };

  for (const [i, o] of ops.entries()) {
    const where = `step ${i} ${JSON.stringify(o)}`;
    switch (o.op) {
      case 'publish': {
        const id = next++;
        const { message, frame } = frameOf(id, o.size);
        for (const k of o.to) {
          if (closed.has(k)) continue;
          const t = targets[k]!;
          // Quiet: in no list, and not written within the window.
          const stamp = t.held;
          if (stamp === null || (stamp instanceof Stamp && performance.now() - stamp.at >= window))
            quiet.add(t);
          sent[k]!.push({ id, bytes: frame.length, at: performance.now() });
          writer.hold(t, message, frame);
        }
        break;
      }
      case 'turn':
        vi.advanceTimersByTime(0);
        // The end of the turn writes (or retracts) everything a quiet session was sent in it: no added delay.
        for (const t of quiet) expect(writer.held(t), `${where}: a quiet session waits`).toBe(0);
        quiet.clear();
        break;
      case 'wait':
        vi.advanceTimersByTime(o.ms);
        quiet.clear();
        break;
      case 'close': {
        if (closed.has(o.k)) break;
        const t = targets[o.k]!;
        // As WsSession.doClose: held frames go to the socket before the close frame; then no more sends.
        writer.flush(t);
        closed.add(o.k);
        expect(writer.held(t), `${where}: close left bytes held`).toBe(0);
        break;
      }
      case 'terminate': {
        if (closed.has(o.k)) break;
        const t = targets[o.k]!;
        // As WsSession.detach after the socket closed.
        t.state = 'gone';
        writer.discard(t, 'closed');
        closed.add(o.k);
        break;
      }
      case 'fail': {
        const t = targets[o.k]!;
        if (t.state === 'open') t.state = 'failing';
        break;
      }
    }
    check(where);
  }
  // Whatever is left goes out (or is retracted) within one window, with no further publish.
  vi.advanceTimersByTime(window + 1);
  check('end');
  for (let k = 0; k < SESSIONS; k++) expect(writer.held(targets[k]!)).toBe(0);
  expect(writer.waiting).toBe(0);
}

const seed = process.env['FANOUT_SEED'] === undefined ? undefined : Number(process.env['FANOUT_SEED']);
const path = process.env['FANOUT_PATH'];
const numRuns = Number(process.env['FANOUT_RUNS'] ?? 300);

for (const window of [0, WINDOW]) {
  it(`writer, window ${window}: written xor retracted, once, in order, held = buffered, bounded by the window`, () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        vi.clearAllTimers();
        run(ops, window);
      }),
      { numRuns, ...(seed === undefined ? {} : { seed }), ...(path === undefined ? {} : { path }) },
    );
  });
}
