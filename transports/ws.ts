// The published declarations use Node's types (Buffer, http): consumers get them without `types: ["node"]`.
/// <reference types="node" preserve="true" />
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import * as wsModule from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import {
  assertObject,
  attachTransport,
  BaseSession,
  fanoutBatchLoop,
  fanoutLoop,
  resolveCoalesceWindow,
  resolveTransportOptions,
  UpgradeGate,
  type DropReason,
  type Message,
  type MessageBatch,
  type ResolvedTransportOptions,
  type RouteMatcher,
  type SendResult,
  type SessionInit,
  SessionRegistry,
  type Transport,
  type TransportHost,
  type TransportOptions,
  type UpgradeRequest,
} from '../src/index.js';
import { attachRoute, detachRoute, rejectHandshake } from './ws-upgrade.js';
import { WsWriter, type Run, type Stamp, type WriterTarget } from './ws-writer.js';

export interface WsTransportOptions<TData> extends TransportOptions<TData> {
  /** An http or https server: the transport listens to its `upgrade` event. Paths no transport owns get 404. */
  server?: HttpServer | HttpsServer;
  /**
   * A ws server in `noServer` mode to upgrade with (its own `maxPayload` and `perMessageDeflate` then apply;
   * its sessions get at most one inbound message per event-loop turn, as `allowSynchronousEvents: false`).
   * Default: one made by the transport.
   */
  wss?: WebSocketServer;
  /**
   * permessage-deflate. Default false. When on, every send goes through ws's own compressing path: the
   * frame-once and write-coalescing fast path is off.
   */
  perMessageDeflate?: boolean;
  /**
   * No `server`: your own `upgrade` listener (or framework) calls `handleUpgrade()`. Either `server`, `wss` or
   * `noServer: true` must be given, so that a forgotten `server` is an error rather than a transport that never
   * sees an upgrade.
   */
  noServer?: boolean;
  /**
   * Coalescing across event-loop turns, in ms (docs/transports.md). A session written less than this long ago
   * is busy: what it is sent next waits at most this long and goes out in one write with everything else sent
   * to it meanwhile. A session not written for this long is written at the end of the turn, as with 0. So a
   * quiet channel keeps its latency, and a busy one costs one write per socket per window instead of one per
   * message. 0 turns it off (one write per session per turn). Default 5.
   */
  coalesceWindow?: number;
}

export { DEFAULT_COALESCE_WINDOW, MAX_COALESCE_WINDOW } from '../src/index.js';

/** The ws transport: the handle `wsTransport()` returns. */
export interface WsTransport extends Transport {
  readonly name: 'ws';
  /** The ws server that performs the handshakes. */
  readonly wss: WebSocketServer;
  /**
   * Handles one upgrade request: for servers the transport is not attached to (Express/Fastify users with their
   * own `upgrade` listener). Resolves false, having written nothing, when the path matches none of this
   * transport's patterns; true when it answered the request (101 or an HTTP error).
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean>;
  /** The path matcher (used to route a shared server's upgrades). */
  match: RouteMatcher;
}

const kFrame = Symbol('fanout.ws.frame');

/**
 * What one session may hold for the end of the turn before it is handed to its socket at once: large enough
 * that a normal burst still costs one write per turn, small enough beside the backpressure limit that bytes held
 * back never make a client that reads look slow.
 */
const HAND_OFF_BYTES = 64 * 1024;

// The close code ws sends for each protocol violation of the peer (ws keeps it in a private symbol).
const PROTOCOL_CLOSE_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 1009,
};

// ws exports its Sender (the framer) but @types/ws does not declare it.
interface FrameOptions {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
}
const Sender = (wsModule as unknown as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } })
  .Sender;
const OPEN = WebSocket.OPEN;

/** The frames of a batch, joined once for every session that takes the whole batch. */
function makeBatchFrame(batch: MessageBatch): Buffer {
  return Buffer.concat(batch.messages.map((message) => message.prepared(kFrame, makeFrame)));
}

function makeFrame(message: Message): Buffer {
  const parts = Sender.frame(message.bytes, {
    fin: true,
    rsv1: false,
    opcode: message.binary ? 2 : 1,
    mask: false,
    readOnly: true,
  });
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

/** What a session needs only once it closes or holds keyed messages: made then, not for every idle session. */
interface Rare {
  /** Terminates a closing session whose close does not complete in time (see doClose). */
  closeTimer: NodeJS.Timeout | null;
  /** A drain watch is armed for held keyed messages (see watchDrain). */
  watchingDrain: boolean;
  /** The close code this side sent, reported when the peer's own close frame never arrives. */
  sentCode: number | undefined;
  onDrain: (() => void) | null;
}

class WsSession<TData> extends BaseSession<TData> implements WriterTarget {
  readonly ws: WebSocket;
  /** Owned by the transport's WsWriter: frames held for the end of the turn or the window, or a write stamp. */
  held: Run | Stamp | null = null;
  /** The heartbeat round whose pong this session still owes; 0 when it owes none. */
  pingRound = 0;
  #rare: Rare | null = null;

  constructor(init: SessionInit<TData>, ws: WebSocket) {
    super(init);
    this.ws = ws;
  }

  // On the prototype, not fields: a field would cost every session a slot.
  get transport(): 'ws' {
    return 'ws';
  }

  /** The transport (the one this session's host was attached for). */
  get owner(): WsTransportImpl<TData> {
    return this.host.transport as WsTransportImpl<TData>;
  }

  // Methods, not #methods: a class with #methods gives each of its objects one more slot (its brand).
  private more(): Rare {
    return (this.#rare ??= { closeTimer: null, watchingDrain: false, sentCode: undefined, onDrain: null });
  }

  get sentCode(): number | undefined {
    return this.#rare?.sentCode;
  }

  set sentCode(code: number | undefined) {
    this.more().sentCode = code;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount + this.owner.writer.held(this);
  }

  protected write(message: Message, buffered: number): SendResult {
    const ws = this.ws;
    if (ws.readyState !== OPEN) return 'closed';
    const owner = this.owner;
    if (owner.deflate) ws.send(message.data, { binary: message.binary });
    else owner.writer.hold(this, message, message.prepared(kFrame, makeFrame));
    return buffered > 0 ? 'queued' : 'sent';
  }

  protected override writeBatch(batch: MessageBatch, buffered: number): SendResult | null {
    const owner = this.owner;
    if (owner.deflate) return null;
    if (this.ws.readyState !== OPEN) return 'closed';
    // Held for the end of this turn, not another window: the registry held the batch for its window already.
    owner.writer.hold(this, batch, batch.prepared(kFrame, makeBatchFrame), true);
    return buffered > 0 ? 'queued' : 'sent';
  }

  socket(): Duplex | null {
    // ws writes straight to the socket too when permessage-deflate is off, so frames stay in order with pings
    // and the close frame; `_socket` is ws's own field and the documented way its Sender is fed.
    const socket = (this.ws as unknown as { _socket: Duplex | null })._socket;
    return this.ws.readyState !== OPEN || socket === null || socket.destroyed ? null : socket;
  }

  /**
   * Held keyed messages wait for the buffer to fall under the soft limit: the socket's `drain` event when the
   * bytes sit in the socket (it needs a drain), else the end of this turn's write or a short timer.
   */
  protected override watchDrain(): void {
    const rare = this.more();
    if (rare.watchingDrain) return;
    rare.watchingDrain = true;
    this.rearm(rare);
  }

  private rearm(rare: Rare): void {
    const socket = (this.ws as unknown as { _socket: Duplex | null })._socket;
    if (socket === null || socket.destroyed) {
      rare.watchingDrain = false;
      return this.drained();
    }
    // Made on first use: most sessions never hold anything.
    const onDrain = (rare.onDrain ??= () => this.drainCheck(rare));
    if (socket.writableNeedDrain) socket.once('drain', onDrain);
    else if (this.owner.writer.held(this) > 0) {
      // Held bytes go out at the end of this turn, or with the window.
      const window = this.owner.writer.window;
      if (window === 0) setImmediate(onDrain);
      else setTimeout(onDrain, window).unref();
    } else setTimeout(onDrain, 10).unref();
  }

  private drainCheck(rare: Rare): void {
    if (!this.holding || this.state !== 'open') {
      rare.watchingDrain = false;
      return this.drained();
    }
    if (this.bufferedAmount > this.backpressure.softLimit) return this.rearm(rare);
    rare.watchingDrain = false;
    this.drained();
  }

  retracted(message: Message, reason: DropReason): void {
    this.host.retracted(this, message, reason);
  }

  failed(error: unknown): void {
    this.host.error(error, this);
  }

  protected doClose(code: number, reason: string): void {
    // Read before the held frames go to the socket: a backpressure close always finds the session over the limit
    // here, wherever its bytes sit (held, in the socket, or already in kernel buffers the peer does not read).
    const stalled = this.bufferedAmount > this.backpressure.limit;
    // Held frames must go out before the close frame, which ws writes at once.
    this.owner.writer.flush(this);
    this.sentCode = code;
    this.ws.close(code, reason);
    // A peer that does not answer the close frame is terminated, not held for ws's own 30 s: after the registry's
    // closeTimeout, and after a second at most when it does not read (it will not read the close frame either).
    const { closeTimeout } = this.host.options;
    const wait = stalled ? Math.min(1000, closeTimeout) : closeTimeout;
    const timer = (this.more().closeTimer = setTimeout(() => this.ws.terminate(), wait));
    timer.unref();
  }

  /** The socket closed: held frames are retracted, the close timer stops. */
  detach(): void {
    this.owner.writer.discard(this, 'closed');
    const rare = this.#rare;
    if (rare !== null && rare.closeTimer !== null) {
      clearTimeout(rare.closeTimer);
      rare.closeTimer = null;
    }
  }

  terminate(): void {
    this.ws.terminate();
  }
}

class WsTransportImpl<TData> implements WsTransport {
  readonly name = 'ws';
  readonly wss: WebSocketServer;
  readonly match: RouteMatcher;
  readonly deflate: boolean;
  readonly writer: WsWriter;
  readonly #host: TransportHost<TData>;
  readonly #gate: UpgradeGate<TData>;
  readonly #options: ResolvedTransportOptions<TData>;
  readonly #server: HttpServer | HttpsServer | undefined;
  readonly #ownsWss: boolean;
  #heartbeat: NodeJS.Timeout | null = null;
  #round = 0;
  #closed = false;

  constructor(registry: SessionRegistry<TData, never>, options: WsTransportOptions<TData>) {
    const raw: unknown = options;
    assertObject(raw, 'options');
    this.#options = resolveTransportOptions<TData>(raw, registry.options.backpressure, 'wsTransport', [
      'server',
      'wss',
      'perMessageDeflate',
      'noServer',
      'coalesceWindow',
    ]);
    const { server, wss, perMessageDeflate, noServer } = options;
    const coalesceWindow = resolveCoalesceWindow(options.coalesceWindow);
    if (server !== undefined && !hasOn(server)) {
      throw new TypeError('The "server" option must be an http or https server');
    }
    if (wss !== undefined && !(wss instanceof WebSocketServer)) {
      throw new TypeError('The "wss" option must be a ws WebSocketServer');
    }
    if (wss !== undefined && wss.options.noServer !== true) {
      throw new TypeError('The "wss" option must be a WebSocketServer created with { noServer: true }');
    }
    if (perMessageDeflate !== undefined && typeof perMessageDeflate !== 'boolean') {
      throw new TypeError('The "perMessageDeflate" option must be a boolean');
    }
    if (noServer !== undefined && typeof noServer !== 'boolean') {
      throw new TypeError('The "noServer" option must be a boolean');
    }
    if (server !== undefined && noServer === true) {
      throw new TypeError('The "server" and "noServer" options exclude each other');
    }
    // As ws's own WebSocketServer: say where upgrades come from, or nothing would ever reach this transport.
    if (server === undefined && wss === undefined && noServer !== true) {
      throw new TypeError(
        'wsTransport needs the "server" option (the http or https server whose upgrades it handles), or ' +
          '"noServer: true" when your own upgrade listener calls transport.handleUpgrade()',
      );
    }
    this.#ownsWss = wss === undefined;
    this.wss =
      wss ??
      new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload: this.#options.maxPayload,
        perMessageDeflate: perMessageDeflate === true,
        // One inbound message per socket per event-loop turn: a socket's backlog of small frames is parsed
        // across turns, so it cannot hold up everyone's pushes (see onMessage for a user-supplied wss).
        allowSynchronousEvents: false,
        // Sockets that hand their events to their session: no listeners per socket (see SessionSocket).
        WebSocket: SessionSocket,
      });
    this.deflate = this.wss.options.perMessageDeflate !== false;
    const { limit } = this.#options.backpressure;
    this.writer = new WsWriter(Math.max(1, Math.min(HAND_OFF_BYTES, Math.floor(limit / 2))), coalesceWindow);
    this.#server = server;
    this.#host = attachTransport(registry, this);
    this.#gate = new UpgradeGate(this.#host, this.#options);
    this.match = this.#gate.match;
    if (server !== undefined) attachRoute(server, this);
    this.#startHeartbeat();
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
    const url = req.url ?? '/';
    if (!this.#gate.owns(url)) return false;
    // A peer that goes away while authenticate runs must not crash the process.
    socket.on('error', ignore);
    // Read while the hooks run, so that a peer that leaves is noticed (a paused socket never sees its EOF).
    // A client sends nothing before the 101; whatever it did send is handed to ws as part of `head`.
    const early: Buffer[] = [];
    const onData = (chunk: Buffer): void => void early.push(chunk);
    const onEnd = (): void => void socket.destroy();
    socket.on('data', onData);
    socket.once('end', onEnd);
    const raw = {
      method: req.method ?? 'GET',
      url,
      headers: flattenHeaders(req),
      remoteAddress: peerAddress(req.socket),
    };
    const outcome = await this.#gate.decide(raw, () => socket.destroyed || !socket.writable);
    // ws attaches its own 'data' listener synchronously inside handleUpgrade below, so no chunk is lost.
    socket.off('data', onData);
    socket.off('end', onEnd);
    if (early.length > 0) head = Buffer.concat([head, ...early]);
    // The peer left while the hooks ran: answer nothing, register nothing.
    if (outcome === null) {
      socket.destroy();
      return true;
    }
    if (!outcome.ok) {
      rejectHandshake(socket, outcome.status, outcome.reason, outcome.headers);
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      // ws listens to the socket's errors from here on; ours would stay on every open socket for nothing.
      socket.off('error', ignore);
      this.#accept(ws, outcome.request, outcome.data, outcome.channels);
    });
    return true;
  }

  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
  ): void {
    fanoutLoop(message, sessions, except);
  }

  fanoutMany(messages: readonly Message[], sessions: ReadonlySet<BaseSession<never>>): void {
    fanoutBatchLoop(messages, sessions);
  }

  get coalesceWindow(): number {
    return this.writer.window;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gate.close();
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    if (this.#server !== undefined) detachRoute(this.#server, this);
    for (const session of this.#host.sessions()) session.terminate();
    if (this.#ownsWss) await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  #accept(ws: WebSocket, request: UpgradeRequest, data: TData, channels: readonly string[]): void {
    const host = this.#host;
    const session = new WsSession<TData>(
      {
        host,
        data,
        params: request.params,
        remoteAddress: request.remoteAddress,
        backpressure: this.#options.backpressure,
        inboundLimit: this.#options.inboundLimit,
      },
      ws,
    );
    (ws as Partial<SessionSocket>)[kSession] = session as WsSession<unknown>;
    if (!(ws instanceof SessionSocket)) {
      // A user's wss makes plain sockets: shared listeners, not closures, find the session on the socket.
      deferInboundEvents(ws);
      ws.on('message', onMessageListener);
      ws.on('pong', onPongListener);
      ws.on('error', onErrorListener);
      ws.on('close', onCloseListener);
    }
    host.open(session, channels, request);
  }

  /** The registry side of this transport (the shared socket listeners reach it through a session's owner). */
  get host(): TransportHost<TData> {
    return this.#host;
  }

  unrouted(status: number, reason: string): void {
    this.#host.rejected(null, status, reason);
  }

  /** The socket of `session` closed: it leaves the transport, then the registry. */
  closed(session: WsSession<TData>, code: number, reason: string): void {
    session.detach();
    this.#host.closed(session, code, reason);
  }

  #startHeartbeat(): void {
    const heartbeat = this.#options.heartbeat;
    if (heartbeat === false) return;
    // One timer for the whole transport: a ping round every interval; a session that still owes the pong of a
    // round `timeout` after it is terminated, so a dead peer is gone within interval + timeout. Each round's
    // check judges only that round's ping (by its number): when the timeout is not shorter than the interval,
    // a later round has pinged the session again by the time an earlier round's check runs, and a plain
    // "awaiting a pong" flag would condemn a peer that answered.
    this.#heartbeat = setInterval(() => {
      const round = ++this.#round;
      const pinged: WsSession<TData>[] = [];
      for (const s of this.#host.sessions()) {
        const session = s as WsSession<TData>;
        if (session.pingRound !== 0 || session.ws.readyState !== OPEN) continue;
        session.pingRound = round;
        try {
          session.ws.ping();
          pinged.push(session);
        } catch (err) {
          session.pingRound = 0;
          this.#host.error(err, session);
        }
      }
      if (pinged.length === 0) return;
      // Judged after the next poll phase: a pong that arrived while a long turn held the loop is read first.
      const judge = (): void => {
        for (const session of pinged)
          if (session.pingRound === round && session.state !== 'closed') session.terminate();
      };
      setTimeout(() => setImmediate(judge), heartbeat.timeout).unref();
    }, heartbeat.interval);
    this.#heartbeat.unref();
  }
}

const kSession = Symbol('fanout.session');

/**
 * The sockets of the transport's own wss. ws delivers a socket's events through `emit`; this one hands them
 * to its session first, so a session costs no listeners (ws keeps a socket's listeners in a dictionary that
 * grows with each). Listeners added by anyone else still run.
 */
class SessionSocket extends WebSocket {
  [kSession]: WsSession<unknown> | null = null;

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    const session = this[kSession];
    let handled = false;
    if (session !== null) {
      handled = true;
      if (event === 'message') onMessage(session, args[0] as Buffer, args[1] as boolean);
      else if (event === 'pong') session.pingRound = 0;
      else if (event === 'error') onError(session, args[0] as Error);
      else if (event === 'close') onClose(session, args[0] as number, args[1] as Buffer);
      else handled = false;
    }
    // Without a listener, emitting 'error' would throw: the session has handled it.
    if (handled && this.listenerCount(event) === 0) return true;
    return super.emit(event, ...args);
  }
}

function onMessage(session: WsSession<unknown>, payload: Buffer, isBinary: boolean): void {
  session.pingRound = 0;
  if (!session.acceptInbound(payload.length)) return;
  session.owner.host.message(session, isBinary ? payload : payload.toString('utf8'), isBinary);
}

function onError(session: WsSession<unknown>, err: Error & { code?: string }): void {
  // Protocol violations by the peer (oversized frame, bad UTF-8) end in a close code, not an error.
  if (typeof err.code === 'string' && err.code.startsWith('WS_ERR_')) {
    session.sentCode ??= PROTOCOL_CLOSE_CODES[err.code] ?? 1002;
  } else {
    session.owner.host.error(err, session);
  }
}

function onClose(session: WsSession<unknown>, received: number, reason: Buffer): void {
  // ws stops reading after a protocol error, so it never sees the peer's echo and reports 1006: report the
  // code that was sent instead, as uWS does.
  const code = received === 1006 && session.sentCode !== undefined ? session.sentCode : received;
  session.owner.closed(session, code, reason.toString());
}

// The same, as listeners on the plain sockets of a user's wss.
const sessionOf = (ws: WebSocket): WsSession<unknown> =>
  (ws as SessionSocket)[kSession] as WsSession<unknown>;
function onMessageListener(this: WebSocket, payload: Buffer, isBinary: boolean): void {
  onMessage(sessionOf(this), payload, isBinary);
}
function onPongListener(this: WebSocket): void {
  sessionOf(this).pingRound = 0;
}
function onErrorListener(this: WebSocket, err: Error): void {
  onError(sessionOf(this), err);
}
function onCloseListener(this: WebSocket, received: number, reason: Buffer): void {
  onClose(sessionOf(this), received, reason);
}

/**
 * One inbound message per socket per event-loop turn, whatever the wss was made with: a socket's backlog of
 * small frames is then parsed across turns and cannot hold up everyone's pushes. ws reads this flag of its
 * receiver per message (the transport's own wss sets it through `allowSynchronousEvents: false`; a user's wss
 * gets it here). Pausing the socket instead would not help: ws parses a whole received chunk (up to 64 KiB,
 * thousands of small frames) in one go.
 */
function deferInboundEvents(ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: { _allowSynchronousEvents?: boolean } })._receiver;
  if (receiver !== undefined && receiver._allowSynchronousEvents === true)
    receiver._allowSynchronousEvents = false;
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function ignore(): void {}

/**
 * The socket's peer address. Node keeps what `remoteAddress` read ({ address, family, port }) on the socket for
 * its lifetime; the session keeps the address itself, so a copy made only for this read is not kept.
 */
function peerAddress(socket: Duplex): string {
  const s = socket as Duplex & { remoteAddress?: string; _peername?: unknown };
  const cached = s._peername !== undefined;
  const address = s.remoteAddress ?? '';
  if (!cached) s._peername = undefined;
  return address;
}

function hasOn(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { on?: unknown }).on === 'function';
}

/**
 * Connects a registry to the `ws` library: routes upgrades by path, runs `authenticate` before the 101,
 * registers sessions in their channels, pings them, enforces inbound limits, and fans broadcasts out with
 * one frame per message and one write per socket per event-loop turn.
 */
export function wsTransport<TData>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  registry: SessionRegistry<TData, any>,
  options: WsTransportOptions<TData> = {},
): WsTransport {
  if (!(registry instanceof SessionRegistry)) {
    throw new TypeError('The "registry" argument of wsTransport must be a SessionRegistry');
  }
  return new WsTransportImpl<TData>(registry, options);
}
