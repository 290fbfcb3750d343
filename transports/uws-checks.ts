/**
 * When to look at a uWS session's buffered bytes.
 *
 * A session can only pass the backpressure limit after at least `limit - buffered` more bytes were published to
 * it. The transport counts every byte it hands to native publish (`published`, all channels together, so the
 * bound is conservative for a session that is not in every channel); a session checked when the count was `p`
 * and found with `b` buffered bytes cannot be past the limit before the count reaches `p + limit - b`. This
 * min-heap orders sessions by that point, so after a publish only the sessions that could have crossed the limit
 * are read, instead of every recipient: with a 1 MiB limit and 1 KiB messages, a healthy session is read about
 * once per thousand publishes.
 *
 * Entries are never removed in place: an entry whose key no longer matches its session's `checkAt` (rescheduled,
 * congested, closed) is skipped when it surfaces.
 */
export interface Checked {
  checkAt: number;
}

export class CheckQueue<T extends Checked> {
  #keys: number[] = [];
  #items: T[] = [];

  get size(): number {
    return this.#keys.length;
  }

  /** Schedules `item` at `at` (its `checkAt` must already be `at`). */
  push(item: T, at: number): void {
    const keys = this.#keys;
    const items = this.#items;
    let i = keys.length;
    keys.push(at);
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pk = keys[parent] as number;
      if (pk <= at) break;
      keys[i] = pk;
      items[i] = items[parent] as T;
      i = parent;
    }
    keys[i] = at;
    items[i] = item;
  }

  /** Removes and returns every live item due at `now` (stale entries are dropped on the way). */
  due(now: number, visit: (item: T) => void): void {
    const keys = this.#keys;
    while (keys.length > 0 && (keys[0] as number) <= now) {
      const at = keys[0] as number;
      const item = this.#items[0] as T;
      this.#pop();
      if (item.checkAt === at) visit(item);
    }
  }

  #pop(): void {
    const keys = this.#keys;
    const items = this.#items;
    const lastKey = keys.pop() as number;
    const lastItem = items.pop() as T;
    const n = keys.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && (keys[child + 1] as number) < (keys[child] as number)) child++;
      if ((keys[child] as number) >= lastKey) break;
      keys[i] = keys[child] as number;
      items[i] = items[child] as T;
      i = child;
    }
    keys[i] = lastKey;
    items[i] = lastItem;
  }
}
