import { randomFillSync } from 'node:crypto';
import type { Message, MessageBatch, Payload } from './message.js';
import { encode } from './message.js';
import type { RouteParams } from './route.js';
import type { BackpressureOptions, ResolvedRegistryOptions } from './options.js';
import type { UpgradeRequest } from './upgrade.js';
import { assertCloseCode } from './assert.js';
import {
  DEFAULT_INBOUND_LIMIT,
  INBOUND_LIMIT_CLOSE_CODE,
  INBOUND_LIMIT_CLOSE_REASON,
  InboundLimiter,
  type InboundLimitOptions,
} from './inbound.js';

/**
 * What became of one send:
 * - `sent`: handed to the socket with nothing buffered ahead of it;
 * - `queued`: handed to the socket behind bytes still buffered (delivered as far as the server can tell);
 * - `held`: a keyed message for a session that is behind: held (replacing the held one with its key) and
 *   written when the session catches up;
 * - `skipped`: a volatile message for a session that is behind: not sent (`stats().skipped`);
 * - `dropped`: not delivered (backpressure, or an error writing it); a `drop` event says why;
 * - `closed`: the session is closing or closed; nothing was sent.
 */
export type SendResult = 'sent' | 'queued' | 'held' | 'skipped' | 'dropped' | 'closed';

/** Why a message did not reach a session (the `drop` event and `stats().droppedBy`). */
export type DropReason = 'backpressure' | 'closed' | 'error';

export type SessionState = 'open' | 'closing' | 'closed';

// Session ids are 128 random bits in hex, cut from a pool refilled every 256 ids. `Buffer#toString('hex')`
// builds a flat string in one step (about 50 bytes); `crypto.randomUUID()` returns a rope of small concatenated
// strings that costs about 480 bytes per session until it is flattened.
const ID_BYTES = 16;
const idPool = Buffer.allocUnsafe(ID_BYTES * 256);
let idOffset = idPool.length;

const NO_CHANNELS: readonly string[] = Object.freeze([]);

function newSessionId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const id = idPool.toString('hex', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return id;
}

/** The registry's handle of one connection. Transports implement it; user code only sees this contract. */
export interface Session<TData = unknown> {
  /** Unique id: 128 random bits as 32 hex digits. */
  readonly id: string;
  /** What `authenticate` returned as `data`. */
  readonly data: TData;
  /** The parameters matched from the path pattern, e.g. `{ channel: 'alarms' }`. */
  readonly params: Readonly<RouteParams>;
  /** The peer's address as the transport saw it. */
  readonly remoteAddress: string;
  /** The channels this session is in (a snapshot taken when read). */
  readonly channels: ReadonlySet<string>;
  /** The transport's name: `ws`, `uws`, ... */
  readonly transport: string;
  /** `open` until a close starts, `closing` until the registry has removed it, then `closed`. */
  readonly state: SessionState;
  /** Bytes accepted for this session but not yet written to the network. */
  readonly bufferedAmount: number;
  /** Sends to this session alone; the backpressure policy applies. Never throws for I/O. */
  send(payload: Payload | Message): SendResult;
  /** Starts a closing handshake with `code` (default 1000) and `reason`. Idempotent. */
  close(code?: number, reason?: string): void;
  /** Destroys the connection at once, without a closing handshake. */
  terminate(): void;
}

/**
 * What a session reports to, as the session sees it: the registry's side of its transport. The full contract a
 * transport receives is `TransportHost` (transport.ts), which extends this one.
 */
export interface SessionHost<TData = unknown> {
  /** The transport the session belongs to (the `Transport` the host was attached for). */
  readonly transport: { readonly name: string };
  readonly options: ResolvedRegistryOptions;
  /** True once `registry.close()` started: transports refuse new connections (HTTP 503). */
  readonly closing: boolean;
  /**
   * Registers a session in its channels, then emits `open`. `request` is the upgrade request: the positions a
   * reconnecting client states there (`since`) are read from it.
   */
  open(session: BaseSession<TData>, channels: readonly string[], request?: UpgradeRequest): void;
  /** Removes a session from every channel, then emits `close` (exactly once per session). */
  closed(session: BaseSession<TData>, code: number, reason: string): void;
  /** An upgrade refused before the 101 (counted, `reject` event). */
  rejected(request: UpgradeRequest | null, status: number, reason: string): void;
  /** An inbound message that passed the transport's limits. */
  message(session: BaseSession<TData>, data: string | Buffer, isBinary: boolean): void;
  delivered(session: BaseSession<TData>, message: Message): void;
  /** `count` deliveries of `message` at once (a native publish that reached that many sessions). */
  deliveredMany(message: Message, count: number): void;
  dropped(session: BaseSession<TData>, message: Message, reason: DropReason): void;
  /**
   * A message already counted as delivered that never left: its socket closed before the transport wrote it.
   * Moves it from the delivered count to the dropped count.
   */
  retracted(session: BaseSession<TData>, message: Message, reason: DropReason): void;
  /** Counts a session that the `close` backpressure policy is closing. */
  backpressureClosed(session: BaseSession<TData>): void;
  /** Counts a session closed for passing its inbound limit (`BaseSession.acceptInbound` calls it). */
  inboundLimited(session: BaseSession<TData>): void;
  /** A volatile message not sent because the session was behind. */
  skipped(session: BaseSession<TData>, message: Message): void;
  /** A held keyed message replaced by a newer one with the same key: it will never be written. */
  conflated(session: BaseSession<TData>, message: Message): void;
  /** The number of keyed messages the session holds changed by `change`. */
  holding(session: BaseSession<TData>, change: number): void;
  error(error: unknown, session?: BaseSession<TData>): void;
  /**
   * A session's id was read for the first time (ids are drawn on demand): the registry indexes it, so that
   * `registry.get(id)` finds every session whose id anyone has seen.
   */
  named(session: BaseSession<TData>): void;
  /**
   * Fans out what the registry holds for busy channels (`coalesceWindow`), so that a direct send or a close
   * comes after every publish made before it.
   */
  release(): void;
}

export interface SessionInit<TData> {
  host: SessionHost<TData>;
  data: TData;
  params: RouteParams;
  remoteAddress: string;
  backpressure: Readonly<BackpressureOptions>;
  /** The session's inbound limit, or `false` for none. Default `DEFAULT_INBOUND_LIMIT`. */
  inboundLimit?: Readonly<InboundLimitOptions> | false;
}

/**
 * What the sessions of one transport share: the host and the options a transport passes to every session.
 * Held once per transport (per distinct set of options), so a session pays one field for all of them.
 */
interface Shared<TData> {
  readonly host: SessionHost<TData>;
  readonly backpressure: Readonly<BackpressureOptions>;
  readonly inboundLimit: Readonly<InboundLimitOptions> | false;
}

// Per host, the sets of options its sessions were made with: a transport passes the same objects every time, so
// this is one entry per host; the bound keeps a transport that makes new objects per session from growing it.
const SHARED_PER_HOST = 8;
const sharedByHost = new WeakMap<object, Shared<never>[]>();

function shared<TData>(init: SessionInit<TData>): Shared<TData> {
  const host = init.host;
  const backpressure = init.backpressure;
  const inboundLimit = init.inboundLimit ?? DEFAULT_INBOUND_LIMIT;
  let list = sharedByHost.get(host);
  if (list === undefined) sharedByHost.set(host, (list = []));
  for (const s of list as Shared<TData>[])
    if (s.backpressure === backpressure && s.inboundLimit === inboundLimit) return s;
  const made: Shared<TData> = { host, backpressure, inboundLimit };
  if (list.length < SHARED_PER_HOST) list.push(made as Shared<never>);
  return made;
}

// How long a session closed for its inbound limit has to finish the closing handshake before it is terminated:
// a flooding peer need not be heard out for the transport's whole close timeout.
const INBOUND_LIMIT_TERMINATE_MS = 1000;

/**
 * Base class for transport sessions: owns the state machine, the channel set, the backpressure policy and the
 * accounting, so that every transport behaves alike. A transport implements `write`, `doClose`, `terminate`
 * and `bufferedAmount`.
 */
export abstract class BaseSession<TData = unknown> implements Session<TData> {
  /** Drawn when first read: most sessions are never named, and an id nobody has read cannot be looked up. */
  #id: string | null = null;
  readonly data: TData;
  readonly params: Readonly<RouteParams>;
  readonly remoteAddress: string;
  abstract readonly transport: string;
  /**
   * @internal membership, maintained by the registry only. A small array replaced on every change (sessions are
   * in few channels): it costs a fraction of a Set per session, and an iteration never sees a change.
   */
  _channels: readonly string[] = NO_CHANNELS;
  /** @internal */
  _state: SessionState = 'open';
  /** The host and the options, shared with every session of the transport. */
  readonly #shared: Shared<TData>;
  /** Made when the session first sends something: most push clients never do. */
  #inbound: InboundLimiter | null = null;
  /** Keyed messages held while the session is behind, by key, oldest update first; null when none. */
  #held: Map<string, Message> | null = null;

  constructor(init: SessionInit<TData>) {
    this.#shared = shared(init);
    this.data = init.data;
    this.params = init.params;
    this.remoteAddress = init.remoteAddress;
  }

  get id(): string {
    if (this.#id !== null) return this.#id;
    this.#id = newSessionId();
    this.#shared.host.named(this);
    return this.#id;
  }

  /** @internal The id if it was drawn, without drawing it. */
  get _idIfNamed(): string | null {
    return this.#id;
  }

  /** The registry side of this session's transport: where a transport's session reports what happened. */
  protected get host(): SessionHost<TData> {
    return this.#shared.host;
  }

  protected get backpressure(): Readonly<BackpressureOptions> {
    return this.#shared.backpressure;
  }

  /**
   * For transports: call it for every inbound message, before handing it to `host.message`. False means drop
   * the message: the session is not open, or this message passed its inbound limit, in which case the session
   * was counted (`stats().inboundLimited`) and closed with 1008, and is terminated if its peer does not finish
   * the closing handshake within a second.
   */
  acceptInbound(bytes: number): boolean {
    if (this._state !== 'open') return false;
    const limits = this.#shared.inboundLimit;
    if (limits === false) return true;
    if ((this.#inbound ??= new InboundLimiter(limits)).take(bytes)) return true;
    this.host.inboundLimited(this);
    this.close(INBOUND_LIMIT_CLOSE_CODE, INBOUND_LIMIT_CLOSE_REASON);
    setTimeout(() => {
      if (this._state !== 'closed') this.terminate();
    }, INBOUND_LIMIT_TERMINATE_MS).unref();
    return false;
  }

  get channels(): ReadonlySet<string> {
    return new Set(this._channels);
  }

  get state(): SessionState {
    return this._state;
  }

  /** The channels the session is in, as the registry holds them (no copy: read it, never keep or change it). */
  protected get channelList(): readonly string[] {
    return this._channels;
  }

  abstract get bufferedAmount(): number;

  /**
   * Writes a prepared message to the socket; must not apply the policy (deliver does). `buffered` is the
   * session's `bufferedAmount` just read by `deliver`, so a transport need not read it again.
   */
  protected abstract write(message: Message, buffered: number): SendResult;
  /** Starts the transport's closing handshake. */
  protected abstract doClose(code: number, reason: string): void;
  abstract terminate(): void;

  send(payload: Payload | Message): SendResult {
    this.host.release();
    return this.deliver(encode(payload));
  }

  /**
   * Sends an encoded message under the backpressure policy, counting the outcome. Never throws: a failing
   * socket is reported through the registry's `error` event and counted as a drop.
   */
  deliver(message: Message): SendResult {
    if (this._state !== 'open') {
      this.host.dropped(this, message, 'closed');
      return 'closed';
    }
    try {
      const buffered = this.bufferedAmount;
      // One comparison on the hot path: everything about slow sessions is behind it.
      if (buffered > this.backpressure.softLimit || this.#held !== null)
        return this.behind(message, buffered);
      return this.writeCounted(message, buffered);
    } catch (err) {
      this.host.error(err, this);
      this.host.dropped(this, message, 'error');
      return 'dropped';
    }
  }

  /**
   * For a transport's `fanoutMany`: delivers every message of `batch` at once when the session is open and stays
   * under its soft limit with all of them (one `writeBatch`), counting each; returns false, having done nothing,
   * when the session must take them one by one (`deliver`, which applies the policy to each), or when the
   * transport writes no batches.
   */
  deliverBatch(batch: MessageBatch): boolean {
    if (this._state !== 'open' || this.#held !== null) return false;
    let result: SendResult | null;
    try {
      const buffered = this.bufferedAmount;
      // Only when every message of the batch would have found the session under its soft limit, one by one.
      if (buffered + batch.wireBound > this.backpressure.softLimit) return false;
      result = this.writeBatch(batch, buffered);
    } catch (err) {
      this.host.error(err, this);
      for (const message of batch.messages) this.host.dropped(this, message, 'error');
      return true;
    }
    if (result === null) return false;
    if (result === 'sent' || result === 'queued')
      for (const m of batch.messages) this.host.delivered(this, m);
    else {
      const reason = result === 'closed' ? 'closed' : 'backpressure';
      for (const message of batch.messages) this.host.dropped(this, message, reason);
    }
    return true;
  }

  /**
   * Writes a whole batch, as `write` does one message (the policy was applied: the session is under its soft
   * limit); null when the transport writes messages one by one only.
   */
  protected writeBatch(_batch: MessageBatch, _buffered: number): SendResult | null {
    return null;
  }

  // Methods, not #methods: a class with #methods gives each of its objects one more slot (its brand).
  private writeCounted(message: Message, buffered: number): SendResult {
    const result = this.write(message, buffered);
    if (result === 'sent' || result === 'queued') this.host.delivered(this, message);
    else this.host.dropped(this, message, result === 'closed' ? 'closed' : 'backpressure');
    return result;
  }

  /** The session is past its soft limit, or holds keyed messages. */
  private behind(message: Message, buffered: number): SendResult {
    const bp = this.backpressure;
    if (buffered <= bp.softLimit) {
      // Caught up before the transport said so: what is held goes first, so that keys keep their order.
      this.flushHeld();
      if (this.#held === null) return this.writeCounted(message, this.bufferedAmount);
      buffered = this.bufferedAmount;
    }
    if (message.volatile) {
      this.host.skipped(this, message);
      return 'skipped';
    }
    const key = message.key;
    if (key !== undefined && bp.maxKeys > 0) {
      let held = this.#held;
      const previous = held?.get(key);
      if (previous !== undefined) {
        // Delete first: a Map keeps insertion order, and the order written is the order of last update.
        (held as Map<string, Message>).delete(key);
        (held as Map<string, Message>).set(key, message);
        this.host.conflated(this, previous);
        return 'held';
      }
      if (held === null || held.size < bp.maxKeys) {
        if (held === null) {
          held = this.#held = new Map();
          this.watchDrain();
        }
        held.set(key, message);
        this.host.holding(this, 1);
        return 'held';
      }
      // As many keys held as allowed: this one goes the plain way.
    }
    if (buffered > bp.limit) {
      this.host.dropped(this, message, 'backpressure');
      if (bp.policy === 'close') {
        this.host.backpressureClosed(this);
        this.close(bp.closeCode, 'backpressure');
      }
      return 'dropped';
    }
    return this.writeCounted(message, buffered);
  }

  /** Writes held messages, oldest update first, while the session stays within its soft limit. */
  private flushHeld(): void {
    const held = this.#held;
    if (held === null) return;
    const softLimit = this.backpressure.softLimit;
    let written = 0;
    for (const [key, message] of held) {
      const buffered = this.bufferedAmount;
      if (buffered > softLimit || this._state !== 'open') break;
      held.delete(key);
      written++;
      try {
        this.writeCounted(message, buffered);
      } catch (err) {
        this.host.error(err, this);
        this.host.dropped(this, message, 'error');
      }
    }
    if (written > 0) this.host.holding(this, -written);
    if (held.size === 0) this.#held = null;
    else if (this._state === 'open') this.watchDrain();
    else this._discardHeld('closed');
  }

  /**
   * For transports: the socket's buffer drained (ws `drain`, uWS `drain` handler). Writes the keyed messages
   * held while the session was behind, as far as it is within its soft limit again. Cheap when nothing is held.
   */
  drained(): void {
    if (this.#held === null) return;
    if (this._state !== 'open') return this._discardHeld('closed');
    this.flushHeld();
  }

  /** True while the session holds keyed messages for when it catches up. */
  get holding(): boolean {
    return this.#held !== null;
  }

  /**
   * Called when the session starts holding keyed messages, and again when a flush stopped at the soft limit:
   * a transport whose library does not call a drain handler by itself arranges for `drained()` to be called
   * once the buffer is back under `backpressure.softLimit` (ws: the socket's `drain` event).
   */
  protected watchDrain(): void {}

  /** @internal Counts what is held as dropped: the session is gone (or its socket failed). */
  _discardHeld(reason: DropReason): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    this.host.holding(this, -held.size);
    for (const message of held.values()) this.host.dropped(this, message, reason);
  }

  close(code = 1000, reason = ''): void {
    assertCloseCode(code, reason);
    if (this._state !== 'open') return;
    this.host.release();
    if (this._state !== 'open') return;
    this._state = 'closing';
    try {
      this.doClose(code, reason);
    } catch (err) {
      this.host.error(err, this);
      try {
        this.terminate();
      } catch (terminateError) {
        this.host.error(terminateError, this);
      }
    }
  }
}

/** @internal The core's own way to a session's host (`host` is protected: users never see it). */
export function hostOf<TData>(session: BaseSession<TData>): SessionHost<TData> {
  return session['host'];
}
