import { EventEmitter } from 'eventemitter3';
import type { RegistryEvents } from './events.js';
import type { Message, Payload } from './message.js';
import { encode } from './message.js';
import type { RegistryOptions, ResolvedRegistryOptions } from './options.js';
import { assertCloseCode, resolveRegistryOptions } from './options.js';
import type { BaseSession, DropReason, SendResult, Session } from './session.js';
import type { Transport, TransportHost } from './transport.js';
import type { BrokerContext } from './brokers/broker.js';
import { RegistryCounters, type RegistryStats } from './stats.js';

/** Channel name -> payload type, for a typed `publish`. */
export type ChannelMap = Record<string, unknown>;

/** A session, or its id. */
export type SessionRef<TData> = Session<TData> | string;

export interface PublishOptions<TData = unknown> {
  /** Sessions (or ids) of this node that must not receive the message, e.g. the one that caused it. */
  except?: SessionRef<TData> | Iterable<SessionRef<TData>>;
  /** Deliver on this node only, not through the broker. Default false. */
  local?: boolean;
}

// Sessions of one channel, grouped by the transport that owns them, so each transport gets only its own.
type Group = Map<Transport, Set<BaseSession<never>>>;

/**
 * Knows every session and the channels it is in; `publish` encodes a payload once and hands it to each
 * transport with sessions in the channel. Knows nothing about sockets: transports attach to it.
 */
export class SessionRegistry<TData = unknown, TChannels extends object = ChannelMap> extends EventEmitter<
  RegistryEvents<TData>
> {
  readonly options: ResolvedRegistryOptions;
  readonly #sessions = new Map<string, BaseSession<TData>>();
  readonly #channels = new Map<string, Group>();
  readonly #transports = new Map<Transport, TransportHost<TData>>();
  readonly #counters = new RegistryCounters();
  #closing: Promise<void> | null = null;
  #drained: (() => void) | null = null;

  constructor(options?: RegistryOptions) {
    super();
    this.options = resolveRegistryOptions(options);
    const broker = this.options.broker;
    if (broker !== undefined) {
      const context: BrokerContext = {
        nodeId: this.options.nodeId,
        deliver: (channels, via, message) => this.#deliverRemote(channels, via, message),
        error: (err) => this.#error(err),
        channels: () => this.#channels.keys(),
      };
      Promise.resolve()
        .then(() => broker.start(context))
        .catch((err: unknown) => this.#error(err));
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
    const message = encode(payload as Payload | Message);
    let except: ReadonlySet<BaseSession<never>> | null = null;
    let local = false;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null)
        throw new TypeError('The "options" argument must be an object');
      if (options.except !== undefined) except = this.#exceptSet(options.except);
      local = options.local === true;
    }
    this.#counters.published++;
    const broker = this.options.broker;
    if (broker !== undefined && !local) this.#brokerPublish(single ? [channels] : channels, message);
    if (single) this.#fanoutChannel(channels, message, except);
    else this.#fanoutUnion(channels, message, except);
  }

  /** Sends to one session (or session id) under the backpressure policy. Never throws for I/O. */
  send(session: SessionRef<TData>, payload: Payload | Message): SendResult {
    const target = this.#resolve(session);
    if (target === undefined) return 'closed';
    return target.deliver(encode(payload));
  }

  /** Adds a session to one or more channels. */
  subscribe(session: SessionRef<TData>, channels: string | readonly string[]): void {
    const target = this.#resolveOpen(session, 'subscribe');
    for (const channel of typeof channels === 'string'
      ? [assertChannel(channels)]
      : assertChannels(channels)) {
      this.#join(target, channel);
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
    return this.#sessions.get(id);
  }

  /** Every session, or the sessions of one channel (a snapshot). */
  sessions(channel?: string): Session<TData>[] {
    if (channel === undefined) return [...this.#sessions.values()];
    const group = this.#channels.get(channel);
    if (group === undefined) return [];
    const out: Session<TData>[] = [];
    for (const set of group.values()) for (const s of set) out.push(s as unknown as Session<TData>);
    return out;
  }

  /** The number of sessions, in all or in one channel. */
  count(channel?: string): number {
    if (channel === undefined) return this.#sessions.size;
    const group = this.#channels.get(channel);
    if (group === undefined) return 0;
    let n = 0;
    for (const set of group.values()) n += set.size;
    return n;
  }

  /** The channels that have at least one session. */
  channels(): string[] {
    return [...this.#channels.keys()];
  }

  /** True when `channel` has at least one session. */
  has(channel: string): boolean {
    return this.#channels.has(channel);
  }

  /** Counters since construction, and current sizes. */
  stats(): RegistryStats {
    return this.#counters.snapshot(this.#sessions.size, this.#channels.size);
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

  /**
   * Connects a transport. For transport authors: returns the host the transport and its sessions report to.
   */
  attach(transport: Transport): TransportHost<TData> {
    if (this.#closing !== null) throw new Error('Cannot attach a transport: the registry is closed');
    const existing = this.#transports.get(transport);
    if (existing !== undefined) return existing;
    const host = this.#host(transport);
    this.#transports.set(transport, host);
    return host;
  }

  async #close(code: number, reason: string): Promise<void> {
    if (this.#sessions.size > 0) {
      const drained = new Promise<void>((resolve) => (this.#drained = resolve));
      for (const session of [...this.#sessions.values()]) session.close(code, reason);
      const timeout = this.options.closeTimeout;
      // Peers that never answer the closing handshake are terminated; if even that does not produce a
      // close from the transport, the session is removed here so that close() always resolves.
      const terminate = setTimeout(() => {
        for (const session of [...this.#sessions.values()]) session.terminate();
      }, timeout);
      const force = setTimeout(() => {
        for (const session of [...this.#sessions.values()]) this.#removed(session, 1006, 'terminated');
      }, timeout + 1000);
      await drained;
      clearTimeout(terminate);
      clearTimeout(force);
    }
    for (const transport of this.#transports.keys()) {
      await transport.close().catch((err: unknown) => this.#error(err));
    }
    if (this.options.broker !== undefined) {
      await this.options.broker.close().catch((err: unknown) => this.#error(err));
    }
  }

  #host(transport: Transport): TransportHost<TData> {
    const counters = this.#counters;
    const registry = this;
    return {
      transport,
      options: this.options,
      get closing() {
        return registry.#closing !== null;
      },
      open: (session, channels) => this.#added(session, channels),
      closed: (session, code, reason) => this.#removed(session, code, reason),
      message: (session, data, isBinary) => this.#emit('message', session, session, data, isBinary),
      delivered(_session, message) {
        counters.delivered++;
        counters.bytesDelivered += message.byteLength;
      },
      dropped: (session, message, reason) => this.#dropped(session, message, reason),
      deliveredMany(message, count) {
        counters.delivered += count;
        counters.bytesDelivered += count * message.byteLength;
      },
      retracted: (session, message, reason) => {
        counters.delivered--;
        counters.bytesDelivered -= message.byteLength;
        this.#dropped(session, message, reason);
      },
      backpressureClosed() {
        counters.closedForBackpressure++;
      },
      error: (err, session) => this.#error(err, session),
      rejected: (request, status, reason) => {
        counters.rejected++;
        this.#emit('reject', undefined, request, status, reason);
      },
    };
  }

  #added(session: BaseSession<TData>, channels: readonly string[]): void {
    if (this.#closing !== null) {
      session.terminate();
      return;
    }
    this.#sessions.set(session.id, session);
    this.#counters.opened++;
    for (const channel of channels) this.#join(session, channel);
    this.#emit('open', session, session);
  }

  #removed(session: BaseSession<TData>, code: number, reason: string): void {
    if (session._state === 'closed' || this.#sessions.get(session.id) !== session) {
      session._state = 'closed';
      return;
    }
    // Leave every channel first: from here on no publish can reach the session.
    session._state = 'closed';
    for (const channel of session._channels) this.#leave(session, channel);
    this.#sessions.delete(session.id);
    this.#emit('close', session, session, code, reason);
    if (this.#drained !== null && this.#sessions.size === 0) {
      this.#drained();
      this.#drained = null;
    }
  }

  #join(session: BaseSession<TData>, channel: string): void {
    if (session._channels.includes(channel)) return;
    const transport = this.#transportOf(session);
    let group = this.#channels.get(channel);
    if (group === undefined) {
      group = new Map();
      this.#channels.set(channel, group);
      this.#brokerInterest(channel, true);
    }
    let set = group.get(transport);
    if (set === undefined) group.set(transport, (set = new Set()));
    set.add(session as BaseSession<never>);
    // concat allocates exactly one slot more; a spread or push would leave slack in every session.
    session._channels = session._channels.concat(channel);
    if (transport.subscribed !== undefined)
      this.#guard(() => transport.subscribed?.(session as BaseSession<never>, channel), session);
    this.#emit('subscribe', session, session, channel);
  }

  #leave(session: BaseSession<TData>, channel: string): void {
    const index = session._channels.indexOf(channel);
    if (index === -1) return;
    const rest = session._channels.slice();
    rest.splice(index, 1);
    session._channels = rest;
    const transport = this.#transportOf(session);
    const group = this.#channels.get(channel);
    const set = group?.get(transport);
    if (group !== undefined && set !== undefined) {
      set.delete(session as BaseSession<never>);
      if (set.size === 0) group.delete(transport);
      if (group.size === 0) {
        this.#channels.delete(channel);
        this.#brokerInterest(channel, false);
      }
    }
    // A closed socket must not be touched (uWS throws on any access after close).
    if (transport.unsubscribed !== undefined && session._state !== 'closed') {
      this.#guard(() => transport.unsubscribed?.(session as BaseSession<never>, channel), session);
    }
    this.#emit('unsubscribe', session, session, channel);
  }

  #fanoutChannel(channel: string, message: Message, except: ReadonlySet<BaseSession<never>> | null): void {
    const group = this.#channels.get(channel);
    if (group === undefined) return;
    for (const [transport, set] of group) transport.fanout(message, set, except, channel);
  }

  #fanoutUnion(
    channels: readonly string[],
    message: Message,
    except: ReadonlySet<BaseSession<never>> | null,
  ): void {
    if (channels.length === 1) return this.#fanoutChannel(channels[0] as string, message, except);
    const union = new Map<Transport, Set<BaseSession<never>>>();
    for (const channel of channels) {
      const group = this.#channels.get(channel);
      if (group === undefined) continue;
      for (const [transport, set] of group) {
        let all = union.get(transport);
        if (all === undefined) union.set(transport, (all = new Set()));
        for (const s of set) all.add(s);
      }
    }
    for (const [transport, set] of union) transport.fanout(message, set, except, null);
  }

  /** A publish from another node, carried by the subscription of `via`. */
  #deliverRemote(channels: readonly string[], via: string, message: Message): void {
    this.#counters.brokerReceived++;
    if (this.#closing !== null) return;
    const group = this.#channels.get(via);
    if (group === undefined) return;
    const index = channels.indexOf(via);
    // A session also in an earlier channel of the same publish gets it through that channel's delivery.
    const earlier = index > 0 ? channels.slice(0, index) : null;
    for (const [transport, set] of group) {
      let except: Set<BaseSession<never>> | null = null;
      if (earlier !== null) {
        for (const s of set) {
          if (earlier.some((c) => s._channels.includes(c))) (except ??= new Set()).add(s);
        }
      }
      transport.fanout(message, set, except, except === null ? via : null);
    }
  }

  #brokerPublish(channels: readonly string[], message: Message): void {
    const broker = this.options.broker;
    if (broker === undefined) return;
    const counters = this.#counters;
    let pending: Promise<void>;
    try {
      pending = broker.publish(channels, message);
    } catch (err) {
      counters.brokerFailed++;
      this.#error(err);
      return;
    }
    pending.then(
      () => void counters.brokerPublished++,
      (err: unknown) => {
        counters.brokerFailed++;
        this.#error(err);
      },
    );
  }

  #brokerInterest(channel: string, subscribe: boolean): void {
    const broker = this.options.broker;
    if (broker === undefined) return;
    try {
      const p = subscribe ? broker.subscribe(channel) : broker.unsubscribe(channel);
      p.catch((err: unknown) => this.#error(err));
    } catch (err) {
      this.#error(err);
    }
  }

  #dropped(session: BaseSession<TData>, message: Message, reason: DropReason): void {
    this.#counters.drop(reason);
    if (this.listenerCount('drop') > 0) this.#emit('drop', session, session, reason, message);
  }

  #exceptSet(except: SessionRef<TData> | Iterable<SessionRef<TData>>): ReadonlySet<BaseSession<never>> {
    const set = new Set<BaseSession<never>>();
    const add = (ref: SessionRef<TData>) => {
      const s = typeof ref === 'string' ? this.#sessions.get(ref) : this.#sessions.get(ref.id);
      if (s !== undefined) set.add(s as BaseSession<never>);
    };
    if (typeof except === 'string' || !(Symbol.iterator in Object(except))) add(except as SessionRef<TData>);
    else for (const ref of except as Iterable<SessionRef<TData>>) add(ref);
    return set;
  }

  #resolve(ref: SessionRef<TData>): BaseSession<TData> | undefined {
    if (typeof ref === 'string') return this.#sessions.get(ref);
    if (typeof ref !== 'object' || ref === null || typeof ref.id !== 'string') {
      throw new TypeError('The "session" argument must be a Session or a session id');
    }
    return this.#sessions.get(ref.id);
  }

  #resolveOpen(ref: SessionRef<TData>, what: string): BaseSession<TData> {
    const s = this.#resolve(ref);
    if (s === undefined || s._state !== 'open')
      throw new Error(`Cannot ${what}: the session is not open in this registry`);
    return s;
  }

  #transportOf(session: BaseSession<TData>): Transport {
    return session.host.transport;
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
