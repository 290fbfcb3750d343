import type { Group } from './channel-index.js';
import type { Message } from './message.js';

/**
 * A channel's clock: when it was last fanned out (`performance.now()` at the end of that turn), `STAMPING` while
 * that turn runs, or -Infinity (never).
 */
interface Clock {
  at: number;
  /** Entries of this channel in the queue. */
  queued: number;
}

interface Entry {
  readonly group: Group;
  readonly clock: Clock;
  readonly channel: string;
  readonly message: Message;
}

/** What the hold needs from its registry. */
export interface HoldDeps {
  /** Fans `message` out to every session of `group` (the channel `channel`) now. */
  fanout(group: Group, message: Message, channel: string): void;
  /** Fans `messages` out, in order, to every session of `group` now (`Transport.fanoutMany` where there is one). */
  fanoutMany(group: Group, messages: readonly Message[], channel: string): void;
  /** The sessions of `channel`, if it has any. */
  group(channel: string): Group | undefined;
}

/** Fanned out in this turn; stamped with the clock at the end of it. */
const STAMPING = -1;

/**
 * @internal Coalescing across turns at the channel level: while a channel is busy (fanned out less than its
 * window ago), what is published to it is queued instead of fanned out, and the queue is fanned out once the
 * window ends (one timer for the registry), each run of one channel's messages as one batch: a transport with
 * `fanoutMany` visits each session once per window instead of once per publish. A channel not fanned out for
 * its window is fanned out at once, so a quiet channel never waits, even while others have queued messages
 * (those are fanned out first when a session is in both); "fanned out" is stamped at the end of the turn (after
 * the transports wrote), so a server that is behind keeps its channels busy.
 *
 * The window of a channel is the smallest `coalesceWindow` of the transports its sessions use (0, and no
 * holding, when one of them has none). Only plain publishes to everyone in the channel are queued; anything
 * else that reaches a session (a direct send, a close, a publish with `except`, `key` or `volatile`, a
 * multi-channel publish, a session joining or leaving a channel with queued messages) releases the queue first,
 * so every session still receives every message in the order it was published, and nothing published before a
 * session joined reaches it.
 */
export class ChannelHold {
  readonly #deps: HoldDeps;
  readonly #clocks = new WeakMap<Group, Clock>();
  #queue: Entry[] = [];
  /** The first entry of `#queue` not yet fanned out. */
  #next = 0;
  #releasing = false;
  #timer: NodeJS.Timeout | null = null;
  #deadline = 0;
  #stamping: Clock[] = [];

  /** Payload bytes queued past which the queue is fanned out at once. */
  readonly #maxBytes: number;
  #bytes = 0;

  /**
   * `maxBytes`: what may be queued, in payload bytes, before the queue is fanned out at once: a window's worth
   * of publishes must not reach a session as one burst that a client reading as fast as it can could not take.
   */
  constructor(deps: HoldDeps, maxBytes: number) {
    this.#deps = deps;
    this.#maxBytes = maxBytes;
  }

  /** Messages queued (published, not yet fanned out). */
  get queued(): number {
    return this.#queue.length - this.#next;
  }

  /** True when `group`'s channel has queued messages. */
  holds(group: Group): boolean {
    return (this.#clocks.get(group)?.queued ?? 0) > 0;
  }

  /**
   * Fans `message` out to the sessions of `channel` (`group`, all of them: no `except`), now or, when the
   * channel is busy, at the end of its window.
   */
  publish(group: Group, channel: string, message: Message): void {
    const window = message.key === undefined && !message.volatile ? windowOf(group) : 0;
    if (window === 0) {
      this.release();
      this.#deps.fanout(group, message, channel);
      return;
    }
    let clock = this.#clocks.get(group);
    if (clock === undefined) this.#clocks.set(group, (clock = { at: -Infinity, queued: 0 }));
    if (clock.queued > 0 || (clock.at !== STAMPING && performance.now() - clock.at < window)) {
      this.#enqueue(group, clock, channel, message, window);
      return;
    }
    // A quiet channel goes out now, even while others wait: first theirs, for a session that is in both.
    if (this.#next < this.#queue.length && this.#shares(group, channel)) this.release();
    this.#deps.fanout(group, message, channel);
    this.#stamp(clock);
  }

  /**
   * Fans out everything queued, in the order it was published. Reentrant: what a fan-out causes (a listener
   * that sends, closes or publishes) first fans out the rest of the queue, from where the outer call was.
   */
  release(): void {
    if (this.#next >= this.#queue.length) return;
    const outer = !this.#releasing;
    this.#releasing = true;
    try {
      while (this.#next < this.#queue.length) {
        const queue = this.#queue;
        const from = this.#next;
        const first = queue[from] as Entry;
        let to = from + 1;
        while (to < queue.length && (queue[to] as Entry).group === first.group) to++;
        this.#next = to;
        first.clock.queued -= to - from;
        if (to - from === 1) this.#deps.fanout(first.group, first.message, first.channel);
        else this.#fanoutMany(first.group, queue, from, to, first.channel);
        this.#stamp(first.clock);
      }
    } finally {
      if (outer) {
        this.#releasing = false;
        this.#queue = [];
        this.#next = 0;
        this.#bytes = 0;
        if (this.#timer !== null) {
          clearTimeout(this.#timer);
          this.#timer = null;
        }
      }
    }
  }

  #enqueue(group: Group, clock: Clock, channel: string, message: Message, window: number): void {
    this.#queue.push({ group, clock, channel, message });
    clock.queued++;
    if ((this.#bytes += message.byteLength) >= this.#maxBytes) return this.release();
    const now = performance.now();
    if (this.#timer !== null) {
      if (now + window >= this.#deadline) return;
      clearTimeout(this.#timer);
    }
    this.#deadline = now + window;
    this.#timer = setTimeout(this.#onTimer, window).unref();
  }

  /** True when a session of `group` is also in a channel with queued messages (one test per session in one). */
  #shares(group: Group, channel: string): boolean {
    for (const set of group.values()) {
      for (const session of set) {
        const channels = session._channels;
        if (channels.length === 1) continue;
        for (const other of channels) {
          if (other === channel) continue;
          const g = this.#deps.group(other);
          if (g !== undefined && this.holds(g)) return true;
        }
      }
    }
    return false;
  }

  #fanoutMany(group: Group, queue: readonly Entry[], from: number, to: number, channel: string): void {
    const messages: Message[] = [];
    for (let i = from; i < to; i++) messages.push((queue[i] as Entry).message);
    this.#deps.fanoutMany(group, messages, channel);
  }

  #stamp(clock: Clock): void {
    // STAMPING: already in the list.
    if (clock.at === STAMPING) return;
    clock.at = STAMPING;
    if (this.#stamping.push(clock) === 1) setImmediate(this.#onTurnEnd);
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.release();
  };

  // After the transports' own end-of-turn writes (scheduled during the fan-out, so they run first).
  readonly #onTurnEnd = (): void => {
    const now = performance.now();
    for (const clock of this.#stamping) clock.at = now;
    this.#stamping = [];
  };
}

/** The smallest `coalesceWindow` of the group's transports; 0 when one has none. */
function windowOf(group: Group): number {
  let window = Infinity;
  for (const transport of group.keys()) {
    const w = transport.coalesceWindow ?? 0;
    if (w < window) window = w;
  }
  return window === Infinity ? 0 : window;
}
