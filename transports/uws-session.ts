import type { WebSocket } from 'uWebSockets.js';
import type { Message } from '../src/message.js';
import { BaseSession, type SendResult, type SessionInit } from '../src/session.js';
import type { UpgradeRequest } from '../src/upgrade.js';

/** What travels from the upgrade to the open handler (`pending`, released there), then holds the session. */
export interface UserData<TData> {
  session: UwsSession<TData> | null;
  pending: { request: UpgradeRequest; data: TData; channels: readonly string[] } | null;
}

export type Socket<TData> = WebSocket<UserData<TData>>;

/** What a session needs from its transport to keep the congestion bookkeeping (see uws-checks.ts). */
export interface CongestionOwner<TData> {
  /** Sessions off their native topics, past the limit. */
  readonly congested: Set<UwsSession<TData>>;
  /** Schedules the next look at `session`'s buffered bytes, given that it has `buffered` now. */
  schedule(session: UwsSession<TData>, buffered: number): void;
  /**
   * Counts bytes sent to one session outside native publish. Advancing the shared count keeps every scheduled
   * look early enough without adding heap entries (a session sent to directly would otherwise need a new,
   * earlier entry per send, and those pile up when nothing is published natively).
   */
  sentDirectly(bytes: number): void;
}

/** The most a WebSocket frame header adds to a payload (server frames are unmasked): 2 + 8 bytes. */
export const FRAME_OVERHEAD = 10;

// uWS send() results.
const SENT = 1;
const DROPPED = 2;

/**
 * One uWS connection. Its channels are native topics named `prefix + channel`; while *congested* (past the
 * backpressure limit) it is off those topics, so native publishes skip it and the transport sends it each
 * message (or its drop) through `deliver()`.
 */
export class UwsSession<TData> extends BaseSession<TData> {
  readonly transport = 'uws';
  /** The socket, until its close handler runs; null after (uWS throws on any access to a closed socket). */
  ws: Socket<TData> | null;
  /** Past the backpressure limit: off its native topics until it drains. */
  congested = false;
  /** The transport's published-bytes count at which to read the buffered bytes next; -1 when unscheduled. */
  checkAt = -1;
  readonly #prefix: string;
  readonly #owner: CongestionOwner<TData>;

  constructor(init: SessionInit<TData>, ws: Socket<TData>, prefix: string, owner: CongestionOwner<TData>) {
    super(init);
    this.ws = ws;
    this.#prefix = prefix;
    this.#owner = owner;
  }

  get bufferedAmount(): number {
    return this.ws === null ? 0 : this.ws.getBufferedAmount();
  }

  /** Called after the registry added the session to `channel`. */
  joinTopic(channel: string): void {
    if (this.ws !== null && !this.congested) this.ws.subscribe(this.#prefix + channel);
  }

  /** Called after the registry removed the session from `channel` (never once it is closed). */
  leaveTopic(channel: string): void {
    if (this.ws !== null && !this.congested) this.ws.unsubscribe(this.#prefix + channel);
  }

  /** Takes the session off its native topics: past the limit. */
  congest(): void {
    if (this.congested) return;
    this.congested = true;
    this.checkAt = -1;
    this.#owner.congested.add(this);
    const ws = this.ws;
    if (ws === null) return;
    for (const channel of this._channels) ws.unsubscribe(this.#prefix + channel);
  }

  /** Puts the session back on its native topics: drained under the limit. */
  uncongest(): void {
    if (!this.congested) return;
    this.congested = false;
    this.#owner.congested.delete(this);
    const ws = this.ws;
    if (ws === null) return;
    for (const channel of this._channels) ws.subscribe(this.#prefix + channel);
    this.#owner.schedule(this, ws.getBufferedAmount());
  }

  protected write(message: Message): SendResult {
    const ws = this.ws;
    if (ws === null) return 'closed';
    const status = ws.send(message.bytes, message.binary, false);
    if (status === DROPPED) return 'dropped';
    const buffered = ws.getBufferedAmount();
    if (buffered > this.backpressure.limit) this.congest();
    else if (this.congested) this.uncongest();
    else this.#owner.sentDirectly(message.byteLength + FRAME_OVERHEAD);
    return status === SENT ? 'sent' : 'queued';
  }

  protected doClose(code: number, reason: string): void {
    // end() runs the close handler at once, which detaches the socket and reports to the registry.
    this.ws?.end(code, reason);
  }

  terminate(): void {
    this.ws?.close();
  }
}
