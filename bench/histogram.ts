/**
 * A fixed-size log-linear latency histogram in microseconds: exact below 64 us, then 64 buckets per power of
 * two (at most 1.6% error). Cheap to record into (no allocation), and histograms from several workers merge by
 * adding their arrays.
 */
export const BUCKETS = 64 + 64 * 32;

export function createHistogram(): Float64Array {
  return new Float64Array(BUCKETS);
}

export function bucketOf(us: number): number {
  if (us < 64) return us < 0 ? 0 : Math.floor(us);
  const v = us >= 2 ** 37 ? 2 ** 37 - 1 : Math.floor(us);
  const e = 31 - Math.clz32(v / 64) + 6; // floor(log2(v)) for v < 2^37
  const sub = Math.floor(v / 2 ** (e - 6)) - 64;
  return 64 + (e - 6) * 64 + sub;
}

/** The middle of a bucket, in microseconds. */
export function valueOf(bucket: number): number {
  if (bucket < 64) return bucket;
  const e = Math.floor((bucket - 64) / 64) + 6;
  const sub = (bucket - 64) % 64;
  const low = (64 + sub) * 2 ** (e - 6);
  return low + 2 ** (e - 6) / 2;
}

export function record(hist: Float64Array, us: number): void {
  hist[bucketOf(us)]! += 1;
}

export function merge(into: Float64Array | number[], from: ArrayLike<number>): void {
  for (let i = 0; i < from.length; i++) into[i]! += from[i]!;
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** p50, p99 and max in milliseconds (NaN when empty). */
export function percentiles(hist: ArrayLike<number>): Percentiles {
  let count = 0;
  for (let i = 0; i < hist.length; i++) count += hist[i]!;
  if (count === 0) return { count, p50: NaN, p99: NaN, max: NaN };
  const at = (q: number): number => {
    const rank = Math.ceil(q * count);
    let seen = 0;
    for (let i = 0; i < hist.length; i++) {
      seen += hist[i]!;
      if (seen >= rank) return valueOf(i) / 1000;
    }
    return NaN;
  };
  let max = NaN;
  for (let i = hist.length - 1; i >= 0; i--) {
    if (hist[i]! > 0) {
      max = valueOf(i) / 1000;
      break;
    }
  }
  return { count, p50: at(0.5), p99: at(0.99), max };
}
