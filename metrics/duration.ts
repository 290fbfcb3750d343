/**
 * @internal `fanout_publish_duration_seconds`, observed once per publish. prom-client's `Histogram.observe`
 * allocates per call (a closure, a labels object, a label hash string); this one only counts: one scan of the
 * bounds and three additions into arrays made once. prom-client reads it at scrape time through `get()`, which
 * returns what its own `Histogram` returns (cumulative `_bucket` series with `le`, then `_sum` and `_count`), so
 * the text format and `Registry.merge` treat it as a histogram (test/metrics.test.ts checks both).
 */

/** One series as prom-client's `get()` returns it (its typings say `type` is a numeric enum; it is a string). */
export interface SeriesValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

export class DurationHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly labelNames: readonly string[] = [];
  readonly #bounds: Float64Array;
  /** Observations per bucket (not cumulative); the last one is past every bound (`+Inf`). */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = Float64Array.from(bounds);
    this.#counts = new Float64Array(bounds.length + 1);
  }

  /** Counts one observation, in seconds. Allocates nothing. */
  observe(seconds: number): void {
    const bounds = this.#bounds;
    let i = 0;
    // `le`: a value equal to a bound belongs to that bound's bucket, as in prom-client.
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    (this.#counts[i] as number)++;
    this.#sum += seconds;
    this.#count++;
  }

  /** The series as prom-client's `Histogram.get()` returns them. */
  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: SeriesValue[];
  }> {
    const values: SeriesValue[] = [];
    let cumulative = 0;
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i++) {
      cumulative += this.#counts[i] as number;
      values.push({
        value: cumulative,
        labels: { le: bounds[i] as number },
        metricName: `${this.name}_bucket`,
      });
    }
    values.push({ value: this.#count, labels: { le: '+Inf' }, metricName: `${this.name}_bucket` });
    values.push({ value: this.#sum, labels: {}, metricName: `${this.name}_sum` });
    values.push({ value: this.#count, labels: {}, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}
