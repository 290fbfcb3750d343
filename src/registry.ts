import { EventEmitter } from 'eventemitter3';
import type { RegistryEvents } from './events.js';
import type { Message, Payload } from './message.js';
import { encode } from './message.js';
import type { RegistryOptions, ResolvedRegistryOptions } from './options.js';
import { assertCloseCode, describe } from './assert.js';
import { resolveRegistryOptions } from './options.js';
import type { BaseSession, DropReason, SendResult, Session } from './session.js';
import { hostOf } from './session.js';
import type { Transport, TransportHost } from './transport.js';
import { BrokerLink } from './broker-link.js';
import { ChannelHold } from './channel-hold.js';
import { CHANNEL, ChannelIndex, NONE, type Group } from './channel-index.js';
import { createHost } from './host.js';
import { RegistryCounters, type RegistryStats } from './stats.js';
import { StreamLayer } from './streams/layer.js';
import { parseSince, type StreamPosition } from './streams/wire.js';
import type { UpgradeRequest } from './upgrade.js';

/**
 * Payload bytes the registry holds for busy channels before it fans them out without waiting for the window:
 * at most this much (and half the soft limit) reaches a session as one burst (the ws transport hands a
 * session's bytes to its socket at the same size).
 */
const HOLD_BYTES = 64 * 1024;

/** Channel name -> payload type, for a typed `publish`. */
export type ChannelMap = Record<string, unknown>;

/** A session, or its id. */
export type SessionRef<TData> = Session<TData> | string;

export interface PublishOptions<TData = unknown> {
  /** Sessions (or ids) of this node that must not receive the message, e.g. the one that caused it. */
  except?: SessionRef<TData> | Iterable<SessionRef<TData>>;
  /** Deliver on this node only, not through the broker. Default false. Not for stream channels. */
  local?: boolean;
  /**
   * A conflation key (a sensor id, say). For a session that is behind (buffered bytes past
   * `backpressure.softLimit`) the message is held instead of queued, replacing the held message with the same
   * key; when the session catches up it receives the latest message of every key, in order of last update.
   * Applies on every node: the built-in brokers carry the key. At most 1,024 characters, well-formed (no lone
   * surrogate). Raw channels only: a stream channel refuses it. Default: none.
   */
  key?: string;
  /**
   * Skip, do not queue, this message for a session that is behind (cursor positions, typing indicators,
   * progress ticks): counted in `stats().skipped`, never a drop, never a close. Cannot be combined with `key`.
   * Applies on every node (the built-in brokers carry it). Raw channels only: a stream channel refuses it.
   * Default false.
   */
  volatile?: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
let attach: <TData>(registry: SessionRegistry<TData, any>, transport: Transport) => TransportHost<TData>;

export interface SubscribeOptions {
  /**
   * For stream channels: the last position the client has, per channel. The session is sent what it missed
   * (then `rec`), or `unrec` with the reason; without one it is sent the current position (`sub`).
   */
  since?: Readonly<Record<string, StreamPosition>>;
}

/**
 * Knows every session and the channels it is in; `publish` encodes a payload once and hands it to each
 * transport with sessions in the channel. Knows nothing about sockets: transports attach to it.
 */
export class SessionRegistry<TData = unknown, TChannels extends object = ChannelMap> extends EventEmitter<
  RegistryEvents<TData>
> {
  readonly options: ResolvedRegistryOptions;
  readonly #sessions = new Set<BaseSession<TData>>();
  /**
   * The sessions whose id was read, by id. Ids are drawn on demand (most are never read), and one that nobody
   * has read cannot be asked for: indexing only those keeps the 32-character id off every idle session.
   */
  readonly #byId = new Map<string, BaseSession<TData>>();
  readonly #index: ChannelIndex;
  /** What is published to busy channels, held for their transports' coalesceWindow. */
  readonly #hold: ChannelHold;
  readonly #transports = new Map<Transport, TransportHost<TData>>();
  readonly #counters = new RegistryCounters();
  readonly #broker: BrokerLink | null = null;
  readonly #streams: StreamLayer | null = null;
  /** Sessions between `host.open` and their `open` event, with the close that arrived meanwhile, if any. */
  readonly #opening = new Map<BaseSession<TData>, { code: number; reason: string } | null>();
  #closing: Promise<void> | null = null;
  #drained: (() => void) | null = null;
  /** Observers of each publish's local fan-out time (metrics); null when none, so publish pays one test. */
  #fanoutObservers: ((seconds: number) => void)[] | null = null;

  constructor(options?: RegistryOptions) {
    super();
    this.options = resolveRegistryOptions(options);
    this.#hold = new ChannelHold(
      {
        fanout: (group, message, channel) => this.#fanoutGroup(group, message, null, channel),
        // Each transport apart, as in #fanoutGroup.
        fanoutMany: (group, messages, channel) => {
          for (const [transport, set] of group) {
            try {
              if (transport.fanoutMany !== undefined) transport.fanoutMany(messages, set, channel);
              else for (const message of messages) transport.fanout(message, set, null, channel);
            } catch (err) {
              this.#error(err);
            }
          }
        },
        group: (channel) => this.#index.group(channel),
      },
      Math.max(1, Math.min(HOLD_BYTES, Math.floor(this.options.backpressure.softLimit / 2))),
    );
    const broker = this.options.broker;
    // Only the broker link asks which sessions moved since a publish (its deduplication across channels).
    this.#index = new ChannelIndex(broker !== undefined);
    if (broker !== undefined) {
      const registry = this;
      this.#broker = new BrokerLink(broker, {
        nodeId: this.options.nodeId,
        index: this.#index,
        hold: this.#hold,
        counters: this.#counters,
        get closing() {
          return registry.#closing !== null;
        },
        error: (err) => this.#error(err),
      });
    }
    const streams = this.options.streams;
    if (streams !== undefined) {
      this.#streams = new StreamLayer(streams, {
        fanout: (channel, frame, except) => {
          // A stream channel's local fan-out happens here, when its position is known: timed as a publish's.
          const observers = this.#fanoutObservers;
          if (observers === null) return this.#fanoutChannel(channel, frame, except);
          const started = performance.now();
          this.#fanoutChannel(channel, frame, except);
          this.#observed(observers, (performance.now() - started) / 1000);
        },
        error: (err, session) => this.#error(err, session as BaseSession<TData> | undefined),
      });
    }
  }

  /** This node's id (the broker's echo suppression key). */
  get nodeId(): string {
    return this.options.nodeId;
  }

  /** True once `close()` was called. */
  get closing(): boolean {
    return this.#closing !== null;
  }

  /**
   * Sends `payload` to every open session of `channels` (one name or several), once per session even when it
   * is in several of them. The payload is encoded once: an object to JSON text, a string as text, bytes as a
   * binary frame. With a broker, other nodes deliver it too. Never throws for I/O: a failing session is
   * reported (`error`, `drop`) and the others still receive it.
   */
  publish<K extends keyof TChannels & string>(
    channels: K | readonly K[],
    payload: TChannels[K] | Message,
    options?: PublishOptions<TData>,
  ): void {
    if (this.#closing !== null) throw new Error('Cannot publish: the registry is closed');
    const single = typeof channels === 'string';
    if (single) assertChannel(channels);
    else assertChannels(channels);
    let message = encode(payload as Payload | Message);
    let except: ReadonlySet<BaseSession<never>> | null = null;
    let local = false;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null)
        throw new TypeError('The "options" argument must be an object');
      if (options.except !== undefined) except = this.#exceptSet(options.except);
      local = options.local === true;
      if (options.key !== undefined || options.volatile !== undefined)
        message = withDelivery(message, options);
    }
    const streams = this.#streams;
    if (streams !== null) {
      // Each stream channel is published on its own (its own position); the raw ones together, as usual.
      const list: readonly string[] = single ? [channels] : channels;
      let raw: string[] | null = null;
      for (const channel of list) {
        if (!streams.isStream(channel)) (raw ??= []).push(channel);
        else if (except !== null || local || message.key !== undefined || message.volatile) {
          throw new TypeError(
            `The "except", "local", "key" and "volatile" options do not apply to the stream channel ` +
              `${JSON.stringify(channel)}: every session of a stream must see every position`,
          );
        }
      }
      if (raw === null || raw.length < list.length) {
        this.#counters.published++;
        for (const channel of list)
          if (raw === null || !raw.includes(channel)) streams.publish(channel, message);
        if (raw !== null) this.#publishRaw(raw, raw.length === 1, message, except, local);
        return;
      }
    }
    this.#counters.published++;
    this.#publishRaw(channels as string | readonly string[], single, message, except, local);
  }

  #publishRaw(
    channels: string | readonly string[],
    single: boolean,
    message: Message,
    except: ReadonlySet<BaseSession<never>> | null,
    local: boolean,
  ): void {
    if (typeof channels !== 'string' && single) channels = channels[0] as string;
    if (this.#broker !== null && !local)
      this.#broker.publish(typeof channels === 'string' ? [channels] : channels, message);
    const observers = this.#fanoutObservers;
    const started = observers === null ? 0 : performance.now();
    if (typeof channels === 'string') this.#fanoutChannel(channels, message, except);
    else this.#fanoutUnion(channels, message, except);
    if (observers !== null) this.#observed(observers, (performance.now() - started) / 1000);
  }

  /**
   * For metrics adapters: `observer` receives, after every `publish`, how long its local fan-out took, in
   * seconds (every transport's share, not the broker's; for a stream channel, the fan-out once its position is
   * known). Returns the function that removes it. Without
   * observers, `publish` does not read the clock.
   */
  observeFanout(observer: (seconds: number) => void): () => void {
    if (typeof observer !== 'function') throw new TypeError('The "observer" argument must be a function');
    this.#fanoutObservers = [...(this.#fanoutObservers ?? []), observer];
    return () => {
      const rest = (this.#fanoutObservers ?? []).filter((o) => o !== observer);
      this.#fanoutObservers = rest.length === 0 ? null : rest;
    };
  }

  #observed(observers: readonly ((seconds: number) => void)[], seconds: number): void {
    for (const observer of observers) {
      try {
        observer(seconds);
      } catch (err) {
        this.#error(err);
      }
    }
  }

  /** Sends to one session (or session id) under the backpressure policy. Never throws for I/O. */
  send(session: SessionRef<TData>, payload: Payload | Message): SendResult {
    const target = this.#resolve(session);
    if (target === undefined) return 'closed';
    // After what was published before it (held for a busy channel).
    this.#hold.release();
    return target.deliver(encode(payload));
  }

  /** Adds a session to one or more channels (on stream channels, from `options.since` when given). */
  subscribe(
    session: SessionRef<TData>,
    channels: string | readonly string[],
    options?: SubscribeOptions,
  ): void {
    const target = this.#resolveOpen(session, 'subscribe');
    let since: Map<string, StreamPosition | 'invalid'> | null = null;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null)
        throw new TypeError('The "options" argument must be an object');
      if (options.since !== undefined) since = sinceMap(options.since);
    }
    for (const channel of typeof channels === 'string'
      ? [assertChannel(channels)]
      : assertChannels(channels)) {
      this.#join(target, channel, since);
    }
  }

  /** Removes a session from some channels, or from all of them when `channels` is omitted. */
  unsubscribe(session: SessionRef<TData>, channels?: string | readonly string[]): void {
    const target = this.#resolve(session);
    if (target === undefined) return;
    const list =
      channels === undefined
        ? target._channels
        : typeof channels === 'string'
          ? [assertChannel(channels)]
          : assertChannels(channels);
    for (const channel of list) this.#leave(target, channel);
  }

  /** A session by id. */
  get(id: string): Session<TData> | undefined {
    return this.#byId.get(id);
  }

  /** Every session, or the sessions of one channel (a snapshot). */
  sessions(channel?: string): Session<TData>[] {
    if (channel === undefined) return [...this.#sessions];
    return this.#index.sessions(channel) as unknown as Session<TData>[];
  }

  /** The number of sessions, in all or in one channel. */
  count(channel?: string): number {
    if (channel === undefined) return this.#sessions.size;
    return this.#index.count(channel);
  }

  /** The channels that have at least one session. */
  channels(): string[] {
    return [...this.#index.keys()];
  }

  /** True when `channel` has at least one session. */
  has(channel: string): boolean {
    return this.#index.has(channel);
  }

  /** Counters since construction, and current sizes. */
  stats(): RegistryStats {
    const stats = this.#counters.snapshot(this.#sessions.size, this.#index.size, this.#broker?.backlog());
    stats.coalescing = this.#hold.queued;
    if (this.#streams !== null) stats.streams = { ...this.#streams.stats };
    return stats;
  }

  /**
   * Closes every session with `code` (default 1001, going away), waits for them to be gone (terminating what
   * did not finish its closing handshake within `closeTimeout`), then closes the transports and the broker.
   * Idempotent: later calls return the same promise.
   */
  close(code = 1001, reason = 'server shutting down'): Promise<void> {
    assertCloseCode(code, reason);
    return (this.#closing ??= this.#close(code, reason));
  }

  // The transport kit's attachTransport() reaches #attach through this block; users never see it.
  static {
    attach = (registry, transport) => registry.#attach(transport);
  }

  #attach(transport: Transport): TransportHost<TData> {
    if (this.#closing !== null) throw new Error('Cannot attach a transport: the registry is closed');
    const existing = this.#transports.get(transport);
    if (existing !== undefined) return existing;
    const registry = this;
    const host = createHost<TData>(transport, {
      options: this.options,
      counters: this.#counters,
      get closing() {
        return registry.#closing !== null;
      },
      added: (session, channels, request) => this.#added(session, channels, request),
      removed: (session, code, reason) => this.#removed(session, code, reason),
      named: (session) => {
        if (this.#sessions.has(session)) this.#byId.set(session.id, session);
      },
      sessions: (host) => this.#sessionsOf(host),
      message: (session, data, isBinary) => this.#emit('message', session, session, data, isBinary),
      dropped: (session, message, reason) => this.#dropped(session, message, reason),
      release: () => this.#hold.release(),
      error: (err, session) => this.#error(err, session),
      rejected: (request, status, reason) => this.#emit('reject', undefined, request, status, reason),
    });
    this.#transports.set(transport, host);
    return host;
  }

  *#sessionsOf(host: TransportHost<TData>): IterableIterator<BaseSession<TData>> {
    for (const session of this.#sessions) if (hostOf(session) === host) yield session;
  }

  async #close(code: number, reason: string): Promise<void> {
    // What was published before close() reaches the sessions before their close frame.
    this.#hold.release();
    if (this.#sessions.size > 0) {
      const drained = new Promise<void>((resolve) => (this.#drained = resolve));
      for (const session of [...this.#sessions]) session.close(code, reason);
      const timeout = this.options.closeTimeout;
      // Peers that never answer the closing handshake are terminated; if even that does not produce a
      // close from the transport, the session is removed here so that close() always resolves.
      const terminate = setTimeout(() => {
        for (const session of [...this.#sessions]) session.terminate();
      }, timeout);
      const force = setTimeout(() => {
        for (const session of [...this.#sessions]) this.#removed(session, 1006, 'terminated');
      }, timeout + 1000);
      await drained;
      clearTimeout(terminate);
      clearTimeout(force);
    }
    for (const transport of this.#transports.keys()) {
      await transport.close().catch((err: unknown) => this.#error(err));
    }
    if (this.#broker !== null) await this.#broker.close().catch((err: unknown) => this.#error(err));
    if (this.#streams !== null) await this.#streams.close().catch((err: unknown) => this.#error(err));
  }

  #added(session: BaseSession<TData>, channels: readonly string[], request?: UpgradeRequest): void {
    if (this.#closing !== null) {
      session.terminate();
      return;
    }
    this.#sessions.add(session);
    // An id read before the session opened (by its transport, say) is indexed now.
    const id = session._idIfNamed;
    if (id !== null) this.#byId.set(id, session);
    this.#counters.opened++;
    // Listeners of `subscribe` run while the session opens and may close it; a transport may report that
    // close at once. It is held until `open` was emitted, so `open` always comes first and the session never
    // stays in a channel it joined after it closed.
    this.#opening.set(session, null);
    // The positions a reconnecting client states in its upgrade request (only for the channels it joins).
    const since = this.#streams !== null && request !== undefined ? parseSince(request.query) : null;
    for (const channel of channels) {
      if (this.#opening.get(session) !== null || session._state !== 'open') break;
      this.#join(session, channel, since);
    }
    this.#emit('open', session, session);
    const closed = this.#opening.get(session);
    this.#opening.delete(session);
    if (closed != null) this.#removed(session, closed.code, closed.reason);
  }

  #removed(session: BaseSession<TData>, code: number, reason: string): void {
    if (this.#opening.has(session)) {
      if (this.#opening.get(session) === null) this.#opening.set(session, { code, reason });
      return;
    }
    if (session._state === 'closed' || !this.#sessions.has(session)) {
      session._state = 'closed';
      return;
    }
    // Leave every channel first: from here on no publish can reach the session.
    session._state = 'closed';
    for (const channel of session._channels) this.#leave(session, channel);
    this.#sessions.delete(session);
    const id = session._idIfNamed;
    if (id !== null) this.#byId.delete(id);
    this.#emit('close', session, session, code, reason);
    if (this.#drained !== null && this.#sessions.size === 0) {
      this.#drained();
      this.#drained = null;
    }
  }

  #join(
    session: BaseSession<TData>,
    channel: string,
    since: ReadonlyMap<string, StreamPosition | 'invalid'> | null = null,
  ): void {
    this.#releaseFor(channel);
    const change = this.#index.join(session as BaseSession<never>, channel);
    if (change === NONE) return;
    const stream = this.#streams !== null && this.#streams.isStream(channel);
    // Stream channels travel through their history engine, never through the broker.
    if (change === CHANNEL && !stream) this.#broker?.interest(channel, true);
    const transport = hostOf(session).transport as Transport;
    if (transport.subscribed !== undefined)
      this.#guard(() => transport.subscribed?.(session as BaseSession<never>, channel), session);
    if (stream) {
      const streams = this.#streams as StreamLayer;
      this.#guard(
        () => streams.joined(session as BaseSession<never>, channel, change === CHANNEL, since?.get(channel)),
        session,
      );
    }
    this.#emit('subscribe', session, session, channel);
  }

  #leave(session: BaseSession<TData>, channel: string): void {
    this.#releaseFor(channel);
    const change = this.#index.leave(session as BaseSession<never>, channel);
    if (change === NONE) return;
    const stream = this.#streams !== null && this.#streams.isStream(channel);
    if (stream)
      (this.#streams as StreamLayer).left(session as BaseSession<never>, channel, change === CHANNEL);
    else if (change === CHANNEL) this.#broker?.interest(channel, false);
    const transport = hostOf(session).transport as Transport;
    // A closed socket must not be touched (uWS throws on any access after close).
    if (transport.unsubscribed !== undefined && session._state !== 'closed') {
      this.#guard(() => transport.unsubscribed?.(session as BaseSession<never>, channel), session);
    }
    this.#emit('unsubscribe', session, session, channel);
  }

  /** Before `channel`'s members change: what was published to it is for the members it had. */
  #releaseFor(channel: string): void {
    if (this.#hold.queued === 0) return;
    const group = this.#index.group(channel);
    if (group !== undefined && this.#hold.holds(group)) this.#hold.release();
  }

  #fanoutChannel(channel: string, message: Message, except: ReadonlySet<BaseSession<never>> | null): void {
    const group = this.#index.group(channel);
    if (group === undefined) return;
    if (except === null) return this.#hold.publish(group, channel, message);
    this.#hold.release();
    this.#fanoutGroup(group, message, except, channel);
  }

  #fanoutUnion(
    channels: readonly string[],
    message: Message,
    except: ReadonlySet<BaseSession<never>> | null,
  ): void {
    if (channels.length === 1) return this.#fanoutChannel(channels[0] as string, message, except);
    this.#hold.release();
    this.#fanoutGroup(this.#index.union(channels), message, except, null);
  }

  /**
   * Fans `message` out on each transport apart: one that throws (a transport must not) is reported as an
   * `error` and the others still deliver, on every publish path (plain, held, `except`, several channels).
   */
  #fanoutGroup(
    group: Group,
    message: Message,
    except: ReadonlySet<BaseSession<never>> | null,
    channel: string | null,
  ): void {
    for (const [transport, set] of group) {
      try {
        transport.fanout(message, set, except, channel);
      } catch (err) {
        this.#error(err);
      }
    }
  }

  #dropped(session: BaseSession<TData>, message: Message, reason: DropReason): void {
    this.#counters.drop(reason);
    if (this.listenerCount('drop') > 0) this.#emit('drop', session, session, reason, message);
  }

  #exceptSet(except: SessionRef<TData> | Iterable<SessionRef<TData>>): ReadonlySet<BaseSession<never>> {
    const set = new Set<BaseSession<never>>();
    const add = (ref: SessionRef<TData>) => {
      const s = typeof ref === 'string' ? this.#byId.get(ref) : this.#member(ref);
      if (s !== undefined) set.add(s as BaseSession<never>);
    };
    if (typeof except === 'string' || !(Symbol.iterator in Object(except))) add(except as SessionRef<TData>);
    else for (const ref of except as Iterable<SessionRef<TData>>) add(ref);
    return set;
  }

  #resolve(ref: SessionRef<TData>): BaseSession<TData> | undefined {
    if (typeof ref === 'string') return this.#byId.get(ref);
    if (typeof ref !== 'object' || ref === null || typeof ref.id !== 'string') {
      throw new TypeError('The "session" argument must be a Session or a session id');
    }
    return this.#member(ref);
  }

  /** The registered session `ref` is, or stands for by its id. */
  #member(ref: Session<TData>): BaseSession<TData> | undefined {
    if (this.#sessions.has(ref as BaseSession<TData>)) return ref as BaseSession<TData>;
    return this.#byId.get(ref.id);
  }

  #resolveOpen(ref: SessionRef<TData>, what: string): BaseSession<TData> {
    const s = this.#resolve(ref);
    if (s === undefined || s._state !== 'open')
      throw new Error(`Cannot ${what}: the session is not open in this registry`);
    return s;
  }

  #guard(fn: () => void, session?: BaseSession<TData>): void {
    try {
      fn();
    } catch (err) {
      this.#error(err, session);
    }
  }

  #emit<E extends keyof RegistryEvents<TData>>(
    event: E,
    session: BaseSession<TData> | undefined,
    ...args: RegistryEvents<TData>[E]
  ): void {
    try {
      (this.emit as (e: E, ...a: RegistryEvents<TData>[E]) => boolean)(event, ...args);
    } catch (err) {
      // eventemitter3 stops an emit at the first throwing listener; the throw is isolated and reported.
      this.#error(err, session);
    }
  }

  #error(err: unknown, session?: BaseSession<TData>): void {
    this.#counters.errors++;
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.listenerCount('error') === 0) {
      // eventemitter3 is silent without listeners; an unobserved failure must still be seen somewhere.
      console.error('fanout: error with no "error" listener:', error);
      return;
    }
    try {
      this.emit('error', error, session);
    } catch (listenerError) {
      console.error('fanout: an "error" listener threw:', listenerError);
    }
  }
}

/**
 * Connects a transport to a registry (the transport kit's first step): returns the host the transport and its
 * sessions report to. Attaching the same transport again returns the same host.
 */
export function attachTransport<TData>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  registry: SessionRegistry<TData, any>,
  transport: Transport,
): TransportHost<TData> {
  if (!(registry instanceof SessionRegistry)) {
    throw new TypeError('The "registry" argument must be a SessionRegistry');
  }
  return attach(registry, transport);
}

/** A conflation key is a short id (a sensor, a row); every broker envelope can carry one this long. */
const MAX_KEY_LENGTH = 1024;
/** A key must survive UTF-8 (the broker envelope) unchanged. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The message with the `key`/`volatile` publish options applied (validated: errors name the option). */
function withDelivery(message: Message, options: { key?: unknown; volatile?: unknown }): Message {
  const { key, volatile } = options;
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || LONE_SURROGATE.test(key))) {
    throw new TypeError(`The "key" option must be a non-empty, well-formed string; got ${describe(key)}`);
  }
  if (key !== undefined && key.length > MAX_KEY_LENGTH) {
    throw new RangeError(`The "key" option must be at most ${MAX_KEY_LENGTH} characters; got ${key.length}`);
  }
  if (volatile !== undefined && typeof volatile !== 'boolean') {
    throw new TypeError(`The "volatile" option must be a boolean; got ${describe(volatile)}`);
  }
  if (key !== undefined && volatile === true) {
    throw new TypeError('The "key" and "volatile" options cannot be combined');
  }
  return message.with(key, volatile === true);
}

function assertChannel(channel: unknown): string {
  if (typeof channel !== 'string' || channel.length === 0) {
    throw new TypeError(`The "channel" argument must be a non-empty string; got ${String(channel)}`);
  }
  return channel;
}

function assertChannels(channels: unknown): readonly string[] {
  if (!Array.isArray(channels) || channels.length === 0) {
    throw new TypeError('The "channels" argument must be a channel name or a non-empty array of them');
  }
  for (const c of channels) assertChannel(c);
  return channels as readonly string[];
}

function sinceMap(value: unknown): Map<string, StreamPosition | 'invalid'> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError('The "since" option must be an object: channel -> { epoch, offset }');
  }
  const out = new Map<string, StreamPosition | 'invalid'>();
  for (const [channel, position] of Object.entries(value as Record<string, unknown>)) {
    const p = position as { epoch?: unknown; offset?: unknown } | null;
    const valid =
      typeof p === 'object' &&
      p !== null &&
      typeof p.epoch === 'string' &&
      typeof p.offset === 'number' &&
      Number.isSafeInteger(p.offset) &&
      p.offset >= 0;
    out.set(channel, valid ? { epoch: p.epoch as string, offset: p.offset as number } : 'invalid');
  }
  return out;
}
