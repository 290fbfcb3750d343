import type { WebSocket } from 'uWebSockets.js';
import {
  BaseSession,
  type Message,
  type SendResult,
  type SessionInit,
  type UpgradeRequest,
} from '../src/index.js';
import { CONGESTED, UNSCHEDULED, type Congestible, type Congestion } from './uws-congestion.js';

/** What travels from the upgrade to the open handler (`pending`, released there), then holds the session. */
export interface UserData<TData> {
  session: UwsSession<TData> | null;
  pending: { request: UpgradeRequest; data: TData; channels: readonly string[] } | null;
}

export type Socket<TData> = WebSocket<UserData<TData>>;

/** The most a WebSocket frame header adds to a payload (server frames are unmasked): 2 + 8 bytes. */
export const FRAME_OVERHEAD = 10;

// uWS send() results.
const SENT = 1;
const DROPPED = 2;

/** What the sessions of one uWS transport share (the transport itself): reached through the session's host. */
export interface UwsOwner<TData> {
  /** The prefix of this transport's native topics. */
  readonly prefix: string;
  readonly congestion: Congestion<UwsSession<TData>>;
  /**
   * The session whose `ws.send` runs in `write`, null otherwise: a build that reports the drop of that very send
   * through its `dropped` callback also returns DROPPED, which `deliver` counts; the callback must not count it
   * again.
   */
  writing: UwsSession<TData> | null;
}

/**
 * One uWS connection. Its channels are native topics named `prefix + channel`; while *congested* (past the
 * backpressure limit, decided by the transport's {@link Congestion}) it is off those topics, so native
 * publishes skip it and the transport sends it each message (or its drop) through `deliver()`.
 */
export class UwsSession<TData> extends BaseSession<TData> implements Congestible {
  /** The socket, until its close handler runs; null after (uWS throws on any access to a closed socket). */
  ws: Socket<TData> | null;
  /** Written by Congestion only (see Congestible). */
  slot = UNSCHEDULED;

  constructor(init: SessionInit<TData>, ws: Socket<TData>) {
    super(init);
    this.ws = ws;
  }

  // On the prototype, not fields: a field would cost every session a slot.
  get congested(): boolean {
    return this.slot === CONGESTED;
  }

  /** The transport (a getter, not a #getter: a class with #members other than fields costs each object a slot). */
  private get owner(): UwsOwner<TData> {
    return this.host.transport as unknown as UwsOwner<TData>;
  }

  // On the prototype: a field would cost every session a slot.
  get transport(): 'uws' {
    return 'uws';
  }

  get bufferedAmount(): number {
    return this.ws === null ? 0 : this.ws.getBufferedAmount();
  }

  /** Called after the registry added the session to `channel`. */
  joinTopic(channel: string): void {
    if (this.ws !== null && !this.congested) this.ws.subscribe(this.owner.prefix + channel);
  }

  /** Called after the registry removed the session from `channel` (never once it is closed). */
  leaveTopic(channel: string): void {
    if (this.ws !== null && !this.congested) this.ws.unsubscribe(this.owner.prefix + channel);
  }

  leaveTopics(): void {
    const ws = this.ws;
    if (ws === null) return;
    const prefix = this.owner.prefix;
    for (const channel of this.channelList) ws.unsubscribe(prefix + channel);
  }

  joinTopics(): void {
    const ws = this.ws;
    if (ws === null) return;
    const prefix = this.owner.prefix;
    for (const channel of this.channelList) ws.subscribe(prefix + channel);
  }

  protected write(message: Message): SendResult {
    const ws = this.ws;
    if (ws === null) return 'closed';
    const owner = this.owner;
    let status: number;
    owner.writing = this;
    try {
      status = ws.send(message.bytes, message.binary, false);
    } finally {
      owner.writing = null;
    }
    if (status === DROPPED) return 'dropped';
    owner.congestion.sent(this, message.byteLength + FRAME_OVERHEAD, ws.getBufferedAmount());
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
