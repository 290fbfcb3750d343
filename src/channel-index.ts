import type { BaseSession } from './session.js';
import { hostOf } from './session.js';
import type { Transport } from './transport.js';

/** Sessions of one channel, grouped by the transport that owns them, so each transport gets only its own. */
export type Group = Map<Transport, Set<BaseSession<never>>>;

/** What a join or a leave changed: nothing, the membership, or the membership and the channel's existence. */
export type Change = 0 | 1 | 2;
export const NONE = 0;
export const MEMBER = 1;
export const CHANNEL = 2;

const NO_CHANNELS: readonly string[] = Object.freeze([]);

/**
 * @internal The two-way index: channel -> sessions (grouped by transport) here, session -> channels on the
 * session itself (`_channels`), kept in step by `join` and `leave` only. Empty channels are deleted, so the
 * channels that exist are exactly those with a session.
 */
export class ChannelIndex {
  readonly #channels = new Map<string, Group>();
  /**
   * Per channel, the one-channel list every session that is in that channel alone shares as its `_channels`
   * (most sessions are in one channel: none of them pays for an array of its own, nor for its own copy of the
   * name). Entries live exactly as long as their channel.
   */
  readonly #alone = new Map<string, readonly string[]>();
  /** Bumped by every join and leave; a session's last stamp tells whether its channels changed since. */
  #version = 0;
  /** The stamps, kept only when asked for (the broker link's deduplication): null otherwise. */
  readonly #moved: WeakMap<BaseSession<never>, number> | null;

  /** `trackMoves`: keep what `movedSince` needs (a stamp per session that joined or left a channel). */
  constructor(trackMoves = false) {
    this.#moved = trackMoves ? new WeakMap() : null;
  }

  /** The stamp of the latest join or leave. */
  get version(): number {
    return this.#version;
  }

  /** True when `session` joined or left a channel after `version` was read. */
  movedSince(session: BaseSession<never>, version: number): boolean {
    if (this.#moved === null) throw new Error('ChannelIndex: movedSince needs trackMoves');
    return (this.#moved.get(session) ?? 0) > version;
  }

  get size(): number {
    return this.#channels.size;
  }

  has(channel: string): boolean {
    return this.#channels.has(channel);
  }

  group(channel: string): Group | undefined {
    return this.#channels.get(channel);
  }

  keys(): IterableIterator<string> {
    return this.#channels.keys();
  }

  join(session: BaseSession<never>, channel: string): Change {
    if (session._channels.includes(channel)) return NONE;
    const transport = hostOf(session).transport as Transport;
    let group = this.#channels.get(channel);
    const created = group === undefined;
    let alone: readonly string[];
    if (group === undefined) {
      this.#channels.set(channel, (group = new Map()));
      this.#alone.set(channel, (alone = Object.freeze([channel])));
    } else {
      alone = this.#alone.get(channel) as readonly string[];
    }
    let set = group.get(transport);
    if (set === undefined) group.set(transport, (set = new Set()));
    set.add(session);
    this.#version++;
    this.#moved?.set(session, this.#version);
    // The shared name (alone[0]), not the caller's copy of it. concat allocates exactly one slot more; a spread
    // or push would leave slack in every session.
    const list = session._channels;
    session._channels = list.length === 0 ? alone : list.concat(alone[0] as string);
    return created ? CHANNEL : MEMBER;
  }

  leave(session: BaseSession<never>, channel: string): Change {
    const index = session._channels.indexOf(channel);
    if (index === -1) return NONE;
    const list = session._channels;
    if (list.length === 1) session._channels = NO_CHANNELS;
    else if (list.length === 2) {
      const other = list[1 - index] as string;
      session._channels = this.#alone.get(other) ?? [other];
    } else {
      const rest = list.slice();
      rest.splice(index, 1);
      session._channels = rest;
    }
    this.#version++;
    this.#moved?.set(session, this.#version);
    const transport = hostOf(session).transport as Transport;
    const group = this.#channels.get(channel);
    const set = group?.get(transport);
    if (group === undefined || set === undefined) return MEMBER;
    set.delete(session);
    if (set.size === 0) group.delete(transport);
    if (group.size > 0) return MEMBER;
    this.#channels.delete(channel);
    this.#alone.delete(channel);
    return CHANNEL;
  }

  count(channel: string): number {
    const group = this.#channels.get(channel);
    if (group === undefined) return 0;
    let n = 0;
    for (const set of group.values()) n += set.size;
    return n;
  }

  /** The sessions of `channel` (a snapshot). */
  sessions(channel: string): BaseSession<never>[] {
    const group = this.#channels.get(channel);
    if (group === undefined) return [];
    const out: BaseSession<never>[] = [];
    for (const set of group.values()) for (const s of set) out.push(s);
    return out;
  }

  /** The sessions of several channels, each once, grouped by transport. */
  union(channels: readonly string[]): Group {
    const union: Group = new Map();
    for (const channel of channels) {
      const group = this.#channels.get(channel);
      if (group === undefined) continue;
      for (const [transport, set] of group) {
        let all = union.get(transport);
        if (all === undefined) union.set(transport, (all = new Set()));
        for (const s of set) all.add(s);
      }
    }
    return union;
  }
}
