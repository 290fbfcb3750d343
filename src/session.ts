import { randomFillSync } from 'node:crypto';
import type { Message, Payload } from './message.js';
import { encode } from './message.js';
import type { RouteParams } from './route.js';
import type { TransportHost } from './transport.js';
import type { BackpressureOptions } from './options.js';
import { assertCloseCode } from './options.js';

/**
 * What became of one send:
 * - `sent`: handed to the socket with nothing buffered ahead of it;
 * - `queued`: handed to the socket behind bytes still buffered (delivered as far as the server can tell);
 * - `dropped`: not delivered (backpressure, or an error writing it); a `drop` event says why;
 * - `closed`: the session is closing or closed; nothing was sent.
 */
export type SendResult = 'sent' | 'queued' | 'dropped' | 'closed';

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

export interface SessionInit<TData> {
  host: TransportHost<TData>;
  data: TData;
  params: RouteParams;
  remoteAddress: string;
  backpressure: Readonly<BackpressureOptions>;
}

/**
 * Base class for transport sessions: owns the state machine, the channel set, the backpressure policy and the
 * accounting, so that every transport behaves alike. A transport implements `write`, `doClose`, `terminate`
 * and `bufferedAmount`.
 */
export abstract class BaseSession<TData = unknown> implements Session<TData> {
  readonly id: string = newSessionId();
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
  /** @internal the registry side of this session's transport. */
  readonly host: TransportHost<TData>;
  protected readonly backpressure: Readonly<BackpressureOptions>;

  constructor(init: SessionInit<TData>) {
    this.host = init.host;
    this.data = init.data;
    this.params = init.params;
    this.remoteAddress = init.remoteAddress;
    this.backpressure = init.backpressure;
  }

  get channels(): ReadonlySet<string> {
    return new Set(this._channels);
  }

  get state(): SessionState {
    return this._state;
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
    let result: SendResult;
    try {
      const buffered = this.bufferedAmount;
      if (buffered > this.backpressure.limit) {
        this.host.dropped(this, message, 'backpressure');
        if (this.backpressure.policy === 'close') {
          this.host.backpressureClosed(this);
          this.close(this.backpressure.closeCode, 'backpressure');
        }
        return 'dropped';
      }
      result = this.write(message, buffered);
    } catch (err) {
      this.host.error(err, this);
      this.host.dropped(this, message, 'error');
      return 'dropped';
    }
    if (result === 'sent' || result === 'queued') this.host.delivered(this, message);
    else this.host.dropped(this, message, result === 'closed' ? 'closed' : 'backpressure');
    return result;
  }

  close(code = 1000, reason = ''): void {
    assertCloseCode(code, reason);
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
