import { randomBytes } from 'node:crypto';
import { Message } from '../message.js';
import { assertInteger, assertKnownKeys, assertObject } from '../assert.js';
import { dataFrame, dataPrefix, type StreamPosition, type UnrecoverableReason } from './wire.js';

/** One stored publish: its offset and its complete wire frame (the bytes every session was sent). */
export interface HistoryEntry {
  readonly offset: number;
  readonly frame: Message;
}

/**
 * What a history read found. `ok`: `entries` are every message after the position asked for, in order, up to
 * `position` (the channel's current one). Otherwise `reason` says why the gap cannot be filled, and `position`
 * is the current one when it is known.
 */
export type HistoryRead =
  | { readonly ok: true; readonly position: StreamPosition; readonly entries: readonly HistoryEntry[] }
  | {
      readonly ok: false;
      readonly position: StreamPosition | null;
      readonly reason: Exclude<UnrecoverableReason, 'invalid'>;
    };

/** What the registry gives a history engine when it starts. */
export interface HistoryContext {
  /**
   * Hands one message of a stream channel to this node's sessions. An engine calls it for every publish of the
   * fleet on every channel this node subscribed to, this node's own publishes included, in offset order per
   * channel. `frame` is the complete wire frame (see `dataFrame`).
   */
  deliver(channel: string, position: StreamPosition, frame: Message): void;
  /** Reports an isolated failure (the registry's `error` event). */
  error(error: unknown): void;
  /**
   * Messages of `channel` this node should have delivered cannot be (a subscriber outage whose messages the
   * history no longer holds, or could not read): every session of the channel that is not in the middle of its
   * own recovery is sent `unrec` with `reason` and `position` (the channel's current one, null when unknown),
   * then the live messages after it.
   */
  lost(
    channel: string,
    position: StreamPosition | null,
    reason: Exclude<UnrecoverableReason, 'invalid'>,
  ): void;
}

/**
 * Where a stream channel's positions and history live. The registry calls `publish` for every publish on a
 * stream channel; the engine assigns the next position, stores the frame, and calls `deliver` on every node
 * that subscribed to the channel. `read` serves recoveries. In-memory by default ({@link memoryHistory}); the
 * Redis and NATS engines keep it fleet-wide.
 */
export interface History {
  /** True when every node sharing the engine sees the same positions (a broker's engine). */
  readonly fleet: boolean;
  start(context: HistoryContext): void;
  /** Assigns a position to one publish, stores it and delivers it. Rejects (never throws) when it failed. */
  publish(channel: string, payload: Message): void | Promise<void>;
  /** This node wants `channel`'s live messages; resolves once any later publish will reach `deliver`. */
  subscribe(channel: string): void | Promise<void>;
  unsubscribe(channel: string): void | Promise<void>;
  /**
   * The messages after `since` in `channel`, or, with `since` null, just its current position (offset 0 and a
   * fresh epoch for a channel never published to).
   */
  read(channel: string, since: StreamPosition | null): HistoryRead | Promise<HistoryRead>;
  close(): Promise<void>;
}

export interface MemoryHistoryOptions {
  /** Most messages kept per channel; 0 keeps none (positions only: clients still see gaps). Default 100. */
  size?: number;
  /** Longest a message is kept, in ms. Default 120000 (two minutes). */
  ttl?: number;
}

export const DEFAULT_HISTORY = Object.freeze({ size: 100, ttl: 120_000 });

/** A random epoch: 12 characters of base64url (72 bits). */
export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

interface ChannelLog {
  readonly epoch: string;
  /** `dataPrefix(channel, epoch)`: the constant start of every data header of this log. */
  readonly prefix: string;
  offset: number;
  /** A ring of the last `size` entries with their times. */
  readonly entries: (HistoryEntry & { at: number })[];
  head: number;
}

/**
 * History in this process: per channel an epoch (new each time the process starts), an offset and a ring of
 * the last `size` frames no older than `ttl`. Every node has its own, so it cannot serve a fleet: with a broker,
 * use the broker's engine. Each channel ever used keeps its epoch and offset (about 100 bytes) until the
 * registry closes; its frames go with `size` and `ttl`.
 */
export function memoryHistory(options: MemoryHistoryOptions = {}): History {
  assertObject(options, 'options');
  assertKnownKeys(options, ['size', 'ttl'], 'memoryHistory');
  const size =
    options.size === undefined ? DEFAULT_HISTORY.size : assertInteger(options.size, 'size', 0, 1_000_000);
  const ttl =
    options.ttl === undefined ? DEFAULT_HISTORY.ttl : assertInteger(options.ttl, 'ttl', 1, 2 ** 31 - 1);
  return new MemoryHistory(size, ttl);
}

class MemoryHistory implements History {
  readonly fleet = false;
  readonly #size: number;
  readonly #ttl: number;
  readonly #logs = new Map<string, ChannelLog>();
  #context: HistoryContext | null = null;

  constructor(size: number, ttl: number) {
    this.#size = size;
    this.#ttl = ttl;
  }

  start(context: HistoryContext): void {
    this.#context = context;
  }

  publish(channel: string, payload: Message): void {
    const log = this.#log(channel);
    const position = { epoch: log.epoch, offset: log.offset + 1 };
    const frame = dataFrame(channel, position, payload, log.prefix);
    log.offset = position.offset;
    if (this.#size > 0) {
      // A copy the transports have not prepared: the delivered Message and the wire buffers each transport
      // caches on it die young instead of being kept (and promoted by the GC) for as long as the ring holds
      // them; a replay prepares the stored copy once, for every session it replays to.
      const entry = { offset: position.offset, frame: new Message(frame.data, frame.binary), at: Date.now() };
      if (log.entries.length < this.#size) log.entries.push(entry);
      else {
        log.entries[log.head] = entry;
        log.head = (log.head + 1) % this.#size;
      }
    }
    this.#context?.deliver(channel, position, frame);
  }

  subscribe(): void {}
  unsubscribe(): void {}

  read(channel: string, since: StreamPosition | null): HistoryRead {
    const log = this.#log(channel);
    const position = { epoch: log.epoch, offset: log.offset };
    if (since === null) return { ok: true, position, entries: [] };
    // Offset 0 means "nothing seen yet": it matches any epoch (everything in the history is new to it).
    if (since.offset !== 0 && since.epoch !== log.epoch) return { ok: false, position, reason: 'epoch' };
    if (since.offset > log.offset) return { ok: false, position, reason: 'future' };
    if (since.offset === log.offset) return { ok: true, position, entries: [] };
    // The ring in order, oldest first; entries past the ttl count as gone.
    const entries = log.entries;
    const n = entries.length;
    const oldest = Date.now() - this.#ttl;
    const out: HistoryEntry[] = [];
    for (let i = 0; i < n; i++) {
      const entry = entries[(log.head + i) % n] as HistoryEntry & { at: number };
      if (entry.offset <= since.offset || entry.at < oldest) continue;
      out.push(entry);
    }
    // Complete only if the first entry kept is the very next message and none after it is missing.
    if (out.length !== log.offset - since.offset) return { ok: false, position, reason: 'too-old' };
    return { ok: true, position, entries: out };
  }

  async close(): Promise<void> {
    this.#logs.clear();
  }

  #log(channel: string): ChannelLog {
    let log = this.#logs.get(channel);
    if (log === undefined) {
      const epoch = newEpoch();
      log = { epoch, prefix: dataPrefix(channel, epoch), offset: 0, entries: [], head: 0 };
      this.#logs.set(channel, log);
    }
    return log;
  }
}
