/**
 * The broker link's memory of which single-channel publishes arrived (src/arrivals.ts): against a reference that
 * remembers every sequence number in a Set, over random orders, repeats and jumps.
 * Replay a failure with the seed and path it prints: FANOUT_SEED=<seed> FANOUT_PATH=<path> npx vitest run
 * test/arrivals.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Arrivals } from '../src/arrivals.js';

const WINDOW = 4096;

/** The reference: exact memory of everything; a number older than the window below the maximum is never a repeat. */
class Reference {
  readonly #seen = new Map<string, { max: number; all: Set<number> }>();
  first(publisher: string, seq: number): boolean {
    let p = this.#seen.get(publisher);
    if (p === undefined) this.#seen.set(publisher, (p = { max: -1, all: new Set() }));
    const answer = seq > p.max || p.max - seq >= WINDOW || !p.all.has(seq);
    p.all.add(seq);
    p.max = Math.max(p.max, seq);
    return answer;
  }
}

const seed = process.env.FANOUT_SEED === undefined ? undefined : Number(process.env.FANOUT_SEED);
const path = process.env.FANOUT_PATH;

describe('Arrivals', () => {
  it('calls a copy a repeat exactly when that number of that publisher arrived before (within the window)', () => {
    // Steps: a publisher (3 streams of 2 nodes) and a move from its last number: small steps back and forth
    // (late copies and repeats), and jumps past the window.
    const step = fc.record({
      publisher: fc.constantFrom('7.|a', '7.|b', '9.|a'),
      move: fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: -40, max: 40 }) },
        { weight: 1, arbitrary: fc.integer({ min: -2 * WINDOW, max: 2 * WINDOW }) },
        { weight: 1, arbitrary: fc.constant(0) },
      ),
    });
    let repeats = 0;
    let checked = 0;
    const property = fc.property(fc.array(step, { minLength: 100, maxLength: 400 }), (steps) => {
      const arrivals = new Arrivals();
      const reference = new Reference();
      const last = new Map<string, number>();
      for (const { publisher, move } of steps) {
        const seq = Math.max(0, (last.get(publisher) ?? 100) + move);
        last.set(publisher, seq);
        const [stream, origin] = publisher.split('|') as [string, string];
        const expected = reference.first(publisher, seq);
        expect(arrivals.first(`${stream.slice(0, -1)}.${seq}.${origin}`)).toBe(expected);
        checked++;
        if (!expected) repeats++;
      }
    });
    const result = fc.check(property, { numRuns: 200, seed, path });
    if (result.failed) {
      throw new Error(
        `${fc.defaultReportMessage(result)}\nReplay: FANOUT_SEED=${result.seed} FANOUT_PATH=${result.counterexamplePath}`,
      );
    }
    console.log(`arrivals: ${checked} copies checked, ${repeats} repeats`);
    // The runs exercised both answers.
    expect(repeats).toBeGreaterThan(2000);
    expect(checked - repeats).toBeGreaterThan(10_000);
  });

  it('keeps publishers apart, lets ids of another form through, and forgets the oldest publisher past 1,024', () => {
    const arrivals = new Arrivals();
    expect(arrivals.first('1.5.a')).toBe(true);
    expect(arrivals.first('1.5.b')).toBe(true); // another node
    expect(arrivals.first('2.5.a')).toBe(true); // the same node restarted (another stream)
    expect(arrivals.first('1.5.a')).toBe(false);
    expect(arrivals.first('1.5.a.with.dots')).toBe(true); // the origin may hold dots
    expect(arrivals.first('1.5.a.with.dots')).toBe(false);
    for (const id of ['x', 'opaque-id', '.5.a', '1..a', '1.x5.a', '1.5']) {
      expect(arrivals.first(id)).toBe(true);
      expect(arrivals.first(id)).toBe(true);
    }
    for (let i = 0; i < 1024; i++) arrivals.first(`9.1.node${i}`);
    expect(arrivals.size).toBe(1024);
    expect(arrivals.first('1.5.a')).toBe(true); // forgotten
    expect(arrivals.first('9.1.node1023')).toBe(false); // remembered
  });
});
