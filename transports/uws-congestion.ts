/**
 * The one owner of uWS congestion state: which sessions are past the backpressure limit (off their native
 * topics), when to look at each other session's buffered bytes, and the published-byte count those looks are
 * scheduled on. Sessions and the transport only report events to it (opened, published, sent, drained, closed).
 *
 * When to look: a session can only pass the limit (`buffered > limit`) after at least `limit - buffered + 1`
 * more bytes were published to it. The count covers every byte handed to native publish or sent directly
 * (all channels together, so the bound is conservative for a session that is not in every channel); a session
 * read when the count was `p` with `b` buffered bytes cannot be past the limit before the count reaches
 * `p + limit - b + 1`. A min-heap orders sessions by that point, so after a publish only the sessions that
 * could have crossed the limit are read, instead of every recipient: with a 1 MiB limit and 1 KiB messages, a
 * healthy session is read about once per thousand publishes.
 *
 * Why it cannot spin: a session read at count `p` is next due at `p + 1` at the earliest, so one publish reads
 * each scheduled session at most once, whatever its buffered bytes (at, under or over the limit).
 * Why it cannot leak: each session has at most one heap entry, updated in place, and removed when the session
 * closes, so a closed session is unreachable from here at once, whatever the traffic.
 */

/** `slot` of a session that is neither scheduled nor congested. */
export const UNSCHEDULED = -1;
/** `slot` of a congested session (never scheduled meanwhile). */
export const CONGESTED = -2;

/** What congestion needs from a session. `slot` is written by {@link Congestion} only. */
export interface Congestible {
  /**
   * Position in the check heap; UNSCHEDULED when not scheduled, CONGESTED when past the limit (off its native
   * topics until it drains). One number for both: every session pays for this field.
   */
  slot: number;
  /** `slot === CONGESTED`. */
  readonly congested: boolean;
  /** The socket's buffered bytes now. */
  readonly bufferedAmount: number;
  /** Takes the session off its native channel topics. */
  leaveTopics(): void;
  /** Puts the session back on its native channel topics. */
  joinTopics(): void;
}

export class Congestion<S extends Congestible> {
  readonly #limit: number;
  readonly #congested = new Set<S>();
  /** Bytes published so far, frame headers included. */
  #published = 0;
  // The heap: keys[i] is the count at which items[i] is due; items[i].slot === i.
  readonly #keys: number[] = [];
  readonly #items: S[] = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Sessions off their native topics, past the limit: native publish skips them. */
  get congested(): ReadonlySet<S> {
    return this.#congested;
  }

  /** How many sessions are scheduled for a look (for tests and diagnostics). */
  get scheduled(): number {
    return this.#keys.length;
  }

  /** A new session, nothing buffered yet. */
  opened(session: S): void {
    this.#schedule(session, 0);
  }

  /** A closed session: forgotten at once. */
  closed(session: S): void {
    if (session.slot >= 0) this.#removeAt(session.slot);
    if (session.congested) {
      session.slot = UNSCHEDULED;
      this.#congested.delete(session);
    }
  }

  /** `bytes` went to native publish: looks at every session that could have passed the limit by now. */
  published(bytes: number): void {
    const now = (this.#published += bytes);
    const keys = this.#keys;
    // Each session looked at is rescheduled past `now` or congested, so this loop ends.
    while (keys.length > 0 && (keys[0] as number) <= now) {
      const session = this.#items[0] as S;
      this.#removeAt(0);
      this.#look(session, session.bufferedAmount);
    }
  }

  /** `bytes` were sent to `session` alone, which now has `buffered` bytes buffered. */
  sent(session: S, bytes: number, buffered: number): void {
    if (buffered > this.#limit) this.#congest(session);
    else if (session.congested) this.#uncongest(session, buffered);
    // Advancing the shared count keeps every scheduled look early enough without a heap update per send.
    else this.#published += bytes;
  }

  /** The socket drained to `buffered` bytes. */
  drained(session: S, buffered: number): void {
    if (session.congested && buffered <= this.#limit) this.#uncongest(session, buffered);
  }

  #look(session: S, buffered: number): void {
    if (buffered > this.#limit) this.#congest(session);
    else this.#schedule(session, buffered);
  }

  #congest(session: S): void {
    if (session.congested) return;
    if (session.slot >= 0) this.#removeAt(session.slot);
    session.slot = CONGESTED;
    this.#congested.add(session);
    session.leaveTopics();
  }

  #uncongest(session: S, buffered: number): void {
    session.slot = UNSCHEDULED;
    this.#congested.delete(session);
    session.joinTopics();
    this.#schedule(session, buffered);
  }

  /** Schedules the next look: due once `limit - buffered + 1` more bytes were published, never sooner. */
  #schedule(session: S, buffered: number): void {
    const at = this.#published + Math.max(1, this.#limit - buffered + 1);
    const slot = session.slot;
    if (slot < 0) return this.#push(session, at);
    if ((this.#keys[slot] as number) <= at) return;
    this.#keys[slot] = at;
    this.#up(slot);
  }

  #push(session: S, at: number): void {
    const i = this.#keys.length;
    this.#keys.push(at);
    this.#items.push(session);
    session.slot = i;
    this.#up(i);
  }

  #removeAt(i: number): void {
    const keys = this.#keys;
    const items = this.#items;
    const removed = items[i] as S;
    removed.slot = UNSCHEDULED;
    const lastKey = keys.pop() as number;
    const last = items.pop() as S;
    if (i === keys.length) return;
    keys[i] = lastKey;
    items[i] = last;
    last.slot = i;
    this.#up(i);
    this.#down(last.slot);
  }

  #up(i: number): void {
    const keys = this.#keys;
    const items = this.#items;
    const key = keys[i] as number;
    const item = items[i] as S;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pk = keys[parent] as number;
      if (pk <= key) break;
      keys[i] = pk;
      const moved = items[parent] as S;
      items[i] = moved;
      moved.slot = i;
      i = parent;
    }
    keys[i] = key;
    items[i] = item;
    item.slot = i;
  }

  #down(i: number): void {
    const keys = this.#keys;
    const items = this.#items;
    const n = keys.length;
    const key = keys[i] as number;
    const item = items[i] as S;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && (keys[child + 1] as number) < (keys[child] as number)) child++;
      const ck = keys[child] as number;
      if (ck >= key) break;
      keys[i] = ck;
      const moved = items[child] as S;
      items[i] = moved;
      moved.slot = i;
      i = child;
    }
    keys[i] = key;
    items[i] = item;
    item.slot = i;
  }
}
