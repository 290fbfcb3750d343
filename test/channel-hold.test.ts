/**
 * The registry's hold of busy channels (src/channel-hold.ts, `coalesceWindow` of the transports) under random
 * interleavings of publishes (one channel or several, with `except`, keyed), direct sends, joins, leaves,
 * closes, turn boundaries and waits, with fake timers and an in-memory transport that takes batches: the clock
 * and every turn are the test's. After every step: what each session received is, in order and once each, a
 * prefix of what the reference says it is owed (every message published while it was in one of the channels,
 * minus `except`, and its direct sends), the registry counted exactly what was received, and nothing published
 * is held longer than the window. At the end, after one window with no publish, every session received all it
 * is owed.
 *
 * Replay a failure with the seed and path it prints: FANOUT_SEED=<seed> FANOUT_PATH=<path> npx vitest run
 * test/channel-hold.test.ts (FANOUT_RUNS=<n> for more runs).
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  BaseSession,
  fanoutBatchLoop,
  SessionRegistry,
  type Message,
  type MessageBatch,
  type SendResult,
} from '../src/index.js';
import { MemoryTransport } from './support/memory.js';

const WINDOW = 5;
const SESSIONS = 4;
const CHANNELS = ['a', 'b'] as const;

/** Records every message it is written, one by one or as a batch. */
class BatchSession extends BaseSession<unknown> {
  readonly transport = 'memory';
  readonly received: string[] = [];
  batches = 0;
  get bufferedAmount(): number {
    return 0;
  }
  protected write(message: Message): SendResult {
    this.received.push(String(message.data));
    return 'sent';
  }
  protected override writeBatch(batch: MessageBatch): SendResult {
    this.batches++;
    for (const message of batch.messages) this.received.push(String(message.data));
    return 'sent';
  }
  protected doClose(code: number, reason: string): void {
    this.host.closed(this, code, reason);
  }
  terminate(): void {
    this.host.closed(this, 1006, '');
  }
}

/** A transport whose channels the registry holds while busy, and that takes held messages as batches. */
class HoldingTransport extends MemoryTransport {
  readonly coalesceWindow: number;
  batchFanouts = 0;
  constructor(registry: SessionRegistry, window: number) {
    super(registry);
    this.coalesceWindow = window;
  }
  fanoutMany(messages: readonly Message[], sessions: ReadonlySet<BaseSession<never>>): void {
    this.batchFanouts++;
    fanoutBatchLoop(messages, sessions);
  }
  openBatch(channels: string[]): BatchSession {
    const session = new BatchSession({
      host: this.host,
      data: undefined,
      params: {},
      remoteAddress: '127.0.0.1',
      backpressure: this.host.options.backpressure,
    });
    this.host.open(session, channels);
    return session;
  }
}

type Op =
  | { op: 'publish'; to: readonly string[]; except: number | null; keyed: boolean }
  | { op: 'send'; k: number }
  | { op: 'join'; k: number; channel: string }
  | { op: 'leave'; k: number; channel: string }
  | { op: 'close'; k: number }
  | { op: 'turn' }
  | { op: 'wait'; ms: number };

const channelArb = fc.constantFrom(...CHANNELS);
const sessionArb = fc.nat(SESSIONS - 1);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      op: fc.constant('publish' as const),
      to: fc.oneof(
        { weight: 6, arbitrary: channelArb.map((c) => [c]) },
        { weight: 1, arbitrary: fc.constant<readonly string[]>(CHANNELS) },
      ),
      except: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: sessionArb }),
      keyed: fc.nat(7).map((n) => n === 0),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('send' as const), k: sessionArb }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('join' as const), k: sessionArb, channel: channelArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('leave' as const), k: sessionArb, channel: channelArb }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), k: sessionArb }) },
  { weight: 10, arbitrary: fc.constant({ op: 'turn' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 6 }) }),
  },
);

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

function run(ops: Op[], window: number): { batches: number; held: number } {
  const registry = new SessionRegistry();
  const transport = new HoldingTransport(registry, window);
  const sessions: BatchSession[] = [];
  /** What each session is owed, in order, with the time it was published. */
  const owed: { text: string; at: number }[][] = [];
  const members: Set<string>[] = [];
  const closed = new Set<number>();
  for (let k = 0; k < SESSIONS; k++) {
    const channels = [CHANNELS[k % CHANNELS.length] as string];
    sessions.push(transport.openBatch(channels));
    owed.push([]);
    members.push(new Set(channels));
  }
  let next = 0;
  /** Publishes held (not received at once by a session owed them). */
  let held = 0;

  const check = (where: string): void => {
    const now = performance.now();
    let received = 0;
    for (let k = 0; k < SESSIONS; k++) {
      const got = sessions[k]!.received;
      const want = owed[k]!;
      received += got.length;
      expect(got, `${where}: #${k} got what it is not owed, or out of order`).toEqual(
        want.slice(0, got.length).map((m) => m.text),
      );
      // Nothing waits past the window (the timer fires at exactly `window` on the fake clock).
      for (const m of want.slice(got.length)) {
        if (closed.has(k)) break;
        expect(now - m.at, `${where}: #${k} still waits for ${m.text}`).toBeLessThanOrEqual(window);
      }
    }
    expect(registry.stats().delivered, `${where}: delivered count`).toBe(received);
    // What is owed and not received yet is exactly what the registry says it holds (publishes, not deliveries).
    const waiting = new Set(
      owed.flatMap((list, k) => list.slice(sessions[k]!.received.length).map((m) => m.text)),
    );
    expect(registry.stats().coalescing, `${where}: coalescing count`).toBe(waiting.size);
    expect(registry.stats().dropped, `${where}: dropped count`).toBe(0);
  };

  for (const [i, o] of ops.entries()) {
    const where = `step ${i} ${JSON.stringify(o)}`;
    const now = performance.now();
    switch (o.op) {
      case 'publish': {
        const text = `p${next++}`;
        const except = o.except === null || closed.has(o.except) ? null : sessions[o.except]!;
        for (let k = 0; k < SESSIONS; k++) {
          if (closed.has(k) || sessions[k] === except) continue;
          if (o.to.some((c) => members[k]!.has(c))) owed[k]!.push({ text, at: now });
        }
        registry.publish(o.to, text, {
          ...(except === null ? {} : { except }),
          ...(o.keyed ? { key: 'k' } : {}),
        });
        if (owed.some((list, k) => list.at(-1)?.text === text && sessions[k]!.received.at(-1) !== text))
          held++;
        break;
      }
      case 'send': {
        if (closed.has(o.k)) break;
        const text = `d${next++}`;
        owed[o.k]!.push({ text, at: now });
        // A direct send follows everything published before it: what was held goes first, synchronously.
        sessions[o.k]!.send(text);
        expect(sessions[o.k]!.received.at(-1), `${where}: the direct send is last`).toBe(text);
        break;
      }
      case 'join':
        if (closed.has(o.k)) break;
        registry.subscribe(sessions[o.k]!, o.channel);
        members[o.k]!.add(o.channel);
        break;
      case 'leave':
        if (closed.has(o.k)) break;
        registry.unsubscribe(sessions[o.k]!, o.channel);
        members[o.k]!.delete(o.channel);
        break;
      case 'close':
        if (closed.has(o.k)) break;
        // A close follows everything published before it too.
        sessions[o.k]!.close(4000, 'bye');
        closed.add(o.k);
        expect(sessions[o.k]!.received.length, `${where}: closed with messages held`).toBe(owed[o.k]!.length);
        break;
      case 'turn':
        vi.advanceTimersByTime(0);
        break;
      case 'wait':
        vi.advanceTimersByTime(o.ms);
        break;
    }
    check(where);
  }
  vi.advanceTimersByTime(window + 1);
  check('end');
  for (let k = 0; k < SESSIONS; k++) expect(sessions[k]!.received.length).toBe(owed[k]!.length);
  return { batches: sessions.reduce((n, s) => n + s.batches, 0), held };
}

const seed = process.env.FANOUT_SEED === undefined ? undefined : Number(process.env.FANOUT_SEED);
const path = process.env.FANOUT_PATH;
const numRuns = Number(process.env.FANOUT_RUNS ?? 300);

describe('registry: holding busy channels (coalesceWindow)', () => {
  it('every message reaches every session owed it once, in order, within the window; the counts agree', () => {
    let batches = 0;
    let held = 0;
    const property = fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (ops) => {
      const result = run(ops, WINDOW);
      batches += result.batches;
      held += result.held;
    });
    const result = fc.check(property, { numRuns, seed, path });
    if (result.failed) {
      throw new Error(
        `${fc.defaultReportMessage(result)}\nReplay: FANOUT_SEED=${result.seed} FANOUT_PATH=${result.counterexamplePath}`,
      );
    }
    console.log(
      `channel hold: ${numRuns} runs (seed ${result.seed}), ${held} publishes held, ${batches} batches`,
    );
    // The property ran where holding happens, not only on quiet channels.
    expect(held).toBeGreaterThan(0);
    expect(batches).toBeGreaterThan(0);
  });

  it('with coalesceWindow 0 nothing is held: every publish is fanned out at once', () => {
    const property = fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      expect(run(ops, 0)).toEqual({ batches: 0, held: 0 });
    });
    fc.assert(property, { numRuns: 100, seed, path });
  });
});
