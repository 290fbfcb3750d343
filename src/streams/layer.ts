import type { Message } from '../message.js';
import type { BaseSession } from '../session.js';
import type { History, HistoryRead } from './history.js';
import type { ResolvedStreamOptions } from './options.js';
import {
  recoveredFrame,
  subscribedFrame,
  unrecoverableFrame,
  type StreamPosition,
  type UnrecoverableReason,
} from './wire.js';

/** What the stream layer needs from its registry. */
export interface StreamHost {
  /** Local fan-out of one frame to the sessions of `channel`, skipping `except`. */
  fanout(channel: string, frame: Message, except: ReadonlySet<BaseSession<never>> | null): void;
  error(err: unknown, session?: BaseSession<never>): void;
}

/** Counters of `stats().streams`. */
export interface StreamStats {
  /** Publishes on stream channels handed to the history engine. */
  published: number;
  /** Of those, publishes the engine refused or could not store (not delivered anywhere). */
  failed: number;
  /** Sessions that joined a stream channel without a position (sent `sub`). */
  subscribed: number;
  /** Recoveries that succeeded (sent `rec`). */
  recovered: number;
  /** Recoveries answered `unrec`, all reasons. */
  unrecoverable: number;
  /** Messages replayed from history by those recoveries. */
  replayed: number;
  /**
   * Times a channel's sessions were all sent `unrec` because the engine could not deliver what was published
   * during its own outage (see `HistoryContext.lost`).
   */
  lost: number;
}

/**
 * One session kept out of a channel's fan-out: while its history read is in flight the live messages are held
 * for it (`floor` null); once it was answered up to `floor`, the live ones up to there are skipped for it
 * (`floor` set: it has them already).
 */
interface Hold {
  readonly entries: { readonly position: StreamPosition; readonly frame: Message }[];
  overflow: boolean;
  floor: StreamPosition | null;
}

interface Held {
  readonly sessions: Set<BaseSession<never>>;
  readonly holds: Map<BaseSession<never>, Hold>;
}

/** Most live messages held for one recovering session; past it the recovery ends `unavailable`. */
const MAX_HELD = 10_000;
const NOT_STREAM = 0;
const STREAM = 1;

/**
 * @internal The registry's side of stream channels: sends each publish through the history engine, fans out
 * what the engine delivers, and runs recoveries.
 *
 * The seam: a session that joins a stream channel is in the channel index at once, but while its history read
 * is in flight it is in `except` of every fan-out of that channel and the frames are held for it instead. When
 * the read completes, in one synchronous step, the session is sent the missed messages, the `rec`/`sub`/`unrec`
 * control frame, then the held frames newer than the position read. The engine's live subscription is
 * confirmed before the read starts, so a message is either in the read, or held, or both (then sent once, by
 * offset): none falls between. A fleet engine reads over one connection and delivers live messages over
 * another, so a message the read already returned may still be on its way live: the session stays in `except`
 * with the read's position as its floor, and live messages up to the floor are skipped for it, until the first
 * one past it (in offset order) lets it back into the plain fan-out. None is sent twice. With the in-memory
 * history the read is synchronous and nothing is held.
 */
export class StreamLayer {
  readonly history: History;
  readonly stats: StreamStats = {
    published: 0,
    failed: 0,
    subscribed: 0,
    recovered: 0,
    unrecoverable: 0,
    replayed: 0,
    lost: 0,
  };
  readonly #isStream: (channel: string) => boolean;
  readonly #timeout: number;
  readonly #host: StreamHost;
  readonly #kinds = new Map<string, number>();
  readonly #held = new Map<string, Held>();
  /** The engine's subscription of each channel this node has sessions in, while it may still be pending. */
  readonly #ready = new Map<string, Promise<void>>();

  constructor(options: ResolvedStreamOptions, host: StreamHost) {
    this.history = options.history;
    this.#isStream = options.isStream;
    this.#timeout = options.recoveryTimeout;
    this.#host = host;
    this.history.start({
      deliver: (channel, position, frame) => this.#deliver(channel, position, frame),
      error: (err) => host.error(err),
      lost: (channel, position, reason) => this.#lost(channel, position, reason),
    });
  }

  /** True when `channel` is a stream channel (the user's matcher, cached). */
  isStream(channel: string): boolean {
    let kind = this.#kinds.get(channel);
    if (kind === undefined) {
      let stream = false;
      try {
        stream = this.#isStream(channel);
      } catch (err) {
        this.#host.error(err);
      }
      kind = stream ? STREAM : NOT_STREAM;
      if (this.#kinds.size >= 10_000) this.#kinds.clear(); // bounded: channel names come from users
      this.#kinds.set(channel, kind);
    }
    return kind === STREAM;
  }

  /** One publish on a stream channel: the engine assigns its position and delivers it. Never throws. */
  publish(channel: string, payload: Message): void {
    this.stats.published++;
    let pending: void | Promise<void>;
    try {
      pending = this.history.publish(channel, payload);
    } catch (err) {
      this.#failed(err);
      return;
    }
    if (pending instanceof Promise) pending.catch((err: unknown) => this.#failed(err));
  }

  /**
   * `session` joined stream `channel` (`first`: the first session of this node there). Without `since` it is
   * sent the current position (`sub`); with one, what it missed (`rec`) or why it cannot have it (`unrec`).
   */
  joined(
    session: BaseSession<never>,
    channel: string,
    first: boolean,
    since: StreamPosition | 'invalid' | undefined,
  ): void {
    if (first) {
      try {
        const subscribed = this.history.subscribe(channel);
        if (subscribed instanceof Promise) {
          const ready = subscribed.finally(() => {
            if (this.#ready.get(channel) === ready) this.#ready.delete(channel);
          });
          ready.catch((err: unknown) => this.#host.error(err));
          this.#ready.set(channel, ready);
        }
      } catch (err) {
        this.#host.error(err);
      }
    }
    const position = since === undefined || since === 'invalid' ? null : since;
    const invalid = since === 'invalid';
    const ready = this.#ready.get(channel);
    if (ready === undefined) {
      let read: HistoryRead | Promise<HistoryRead>;
      try {
        read = this.history.read(channel, position);
      } catch (err) {
        this.#host.error(err);
        read = { ok: false, position: null, reason: 'unavailable' };
      }
      if (!(read instanceof Promise)) return this.#finish(session, channel, position, invalid, read, null);
      this.#await(session, channel, position, invalid, read);
      return;
    }
    this.#await(
      session,
      channel,
      position,
      invalid,
      ready.then(() => this.history.read(channel, position)),
    );
  }

  /** `session` left `channel` (`last`: no session of this node is left there). */
  left(session: BaseSession<never>, channel: string, last: boolean): void {
    const held = this.#held.get(channel);
    if (held !== undefined) this.#release(held, channel, session);
    if (!last) return;
    this.#ready.delete(channel);
    try {
      const done = this.history.unsubscribe(channel);
      if (done instanceof Promise) done.catch((err: unknown) => this.#host.error(err));
    } catch (err) {
      this.#host.error(err);
    }
  }

  close(): Promise<void> {
    return this.history.close();
  }

  #await(
    session: BaseSession<never>,
    channel: string,
    since: StreamPosition | null,
    invalid: boolean,
    read: Promise<HistoryRead>,
  ): void {
    let held = this.#held.get(channel);
    if (held === undefined) this.#held.set(channel, (held = { sessions: new Set(), holds: new Map() }));
    const hold: Hold = { entries: [], overflow: false, floor: null };
    held.sessions.add(session);
    held.holds.set(session, hold);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<HistoryRead>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, position: null, reason: 'unavailable' }), this.#timeout);
    });
    Promise.race([read, timeout])
      .catch((err: unknown): HistoryRead => {
        this.#host.error(err, session);
        return { ok: false, position: null, reason: 'unavailable' };
      })
      .then((result) => {
        clearTimeout(timer);
        this.#finish(session, channel, since, invalid, result, hold);
      })
      .catch((err: unknown) => this.#host.error(err, session));
  }

  /** Completes one join in a single synchronous step (see the class comment). */
  #finish(
    session: BaseSession<never>,
    channel: string,
    since: StreamPosition | null,
    invalid: boolean,
    result: HistoryRead,
    hold: Hold | null,
  ): void {
    let held: Held | undefined;
    if (hold !== null) {
      held = this.#held.get(channel);
      // The session left (and maybe joined again: then a newer hold is its own) while the read ran.
      if (held === undefined || held.holds.get(session) !== hold) return;
    }
    if (session._state !== 'open' || !session._channels.includes(channel)) {
      if (held !== undefined) this.#release(held, channel, session);
      return;
    }
    let reason: UnrecoverableReason | null = null;
    if (hold?.overflow === true) reason = 'unavailable';
    else if (invalid) reason = 'invalid';
    else if (!result.ok) reason = result.reason;
    const position = result.position;
    if (reason !== null) {
      this.stats.unrecoverable++;
      session.deliver(unrecoverableFrame(channel, position, reason));
    } else if (since === null) {
      this.stats.subscribed++;
      session.deliver(subscribedFrame(channel, position as StreamPosition));
    } else if (result.ok) {
      for (const entry of result.entries) session.deliver(entry.frame);
      this.stats.recovered++;
      this.stats.replayed += result.entries.length;
      session.deliver(recoveredFrame(channel, position as StreamPosition, result.entries.length));
    }
    if (hold === null || held === undefined) return;
    let last = position;
    for (const entry of hold.entries) {
      // Also in the read: already sent.
      if (last !== null && entry.position.epoch === last.epoch && entry.position.offset <= last.offset)
        continue;
      session.deliver(entry.frame);
      last = entry.position;
    }
    // Live messages up to `last` may still arrive (read and live delivery take different ways): skip them.
    if (last === null || last.offset === 0) this.#release(held, channel, session);
    else {
      hold.entries.length = 0;
      hold.floor = last;
    }
  }

  #release(held: Held, channel: string, session: BaseSession<never>): void {
    held.sessions.delete(session);
    held.holds.delete(session);
    if (held.sessions.size === 0) this.#held.delete(channel);
  }

  #deliver(channel: string, position: StreamPosition, frame: Message): void {
    const held = this.#held.get(channel);
    if (held === undefined) return this.#host.fanout(channel, frame, null);
    for (const [session, hold] of held.holds) {
      const floor = hold.floor;
      if (floor === null) {
        if (hold.entries.length < MAX_HELD) hold.entries.push({ position, frame });
        else hold.overflow = true;
      } else if (position.epoch !== floor.epoch || position.offset > floor.offset) {
        // Past what it has (or a new epoch): back in the plain fan-out, from this message on.
        this.#release(held, channel, session);
      }
    }
    this.#host.fanout(channel, frame, held.sessions.size === 0 ? null : held.sessions);
  }

  #lost(channel: string, position: StreamPosition | null, reason: UnrecoverableReason): void {
    this.stats.lost++;
    const held = this.#held.get(channel);
    let except: ReadonlySet<BaseSession<never>> | null = null;
    if (held !== undefined) {
      // Sessions answered up to a floor are owed this too; those still reading get their own answer.
      for (const [session, hold] of held.holds)
        if (hold.floor !== null) this.#release(held, channel, session);
      if (held.sessions.size > 0) except = held.sessions;
    }
    this.#host.fanout(channel, unrecoverableFrame(channel, position, reason), except);
  }

  #failed(err: unknown): void {
    this.stats.failed++;
    this.#host.error(err);
  }
}
