import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import * as wsModule from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import type { Message } from '../src/message.js';
import type { ResolvedTransportOptions, TransportOptions } from '../src/options.js';
import { assertObject, resolveTransportOptions } from '../src/options.js';
import type { SessionRegistry } from '../src/registry.js';
import type { RouteMatcher } from '../src/route.js';
import { compileRoutes } from '../src/route.js';
import { BaseSession, type DropReason, type SendResult, type SessionInit } from '../src/session.js';
import type { Transport, TransportHost } from '../src/transport.js';
import { fanoutLoop } from '../src/transport.js';
import { decideUpgrade, defaultReason, toUpgradeRequest, type UpgradeRequest } from '../src/upgrade.js';
import { attachRoute, detachRoute, rejectHandshake } from './ws-upgrade.js';
import { Run } from './ws-batch.js';

export interface WsTransportOptions<TData> extends TransportOptions<TData> {
  /** An http or https server: the transport listens to its `upgrade` event. Paths no transport owns get 404. */
  server?: HttpServer | HttpsServer;
  /**
   * A ws server in `noServer` mode to upgrade with (its own `maxPayload` and `perMessageDeflate` then apply).
   * Default: one made by the transport.
   */
  wss?: WebSocketServer;
  /**
   * permessage-deflate. Default false. When on, every send goes through ws's own compressing path: the
   * frame-once and write-coalescing fast path is off.
   */
  perMessageDeflate?: boolean;
}

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

class WsSession<TData> extends BaseSession<TData> {
  readonly transport = 'ws';
  readonly ws: WebSocket;
  /** Messages held until the end of the turn (see ws-batch.ts); null when nothing is pending. */
  run: Run | null = null;
  awaitingPong = false;
  /** The close code this side sent, reported when the peer's own close frame never arrives. */
  sentCode: number | undefined;
  readonly owner: WsTransportImpl<TData>;

  constructor(init: SessionInit<TData>, ws: WebSocket, owner: WsTransportImpl<TData>) {
    super(init);
    this.ws = ws;
    this.owner = owner;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount + (this.run === null ? 0 : this.run.bytes);
  }

  protected write(message: Message, buffered: number): SendResult {
    const ws = this.ws;
    if (ws.readyState !== OPEN) return 'closed';
    const owner = this.owner;
    if (owner.deflate) {
      ws.send(message.data, { binary: message.binary });
      return buffered > 0 ? 'queued' : 'sent';
    }
    const frame = message.prepared(kFrame, makeFrame);
    const run = this.run;
    if (run === null) {
      this.run = owner.root.child(message, frame);
      owner.markPending(this);
    } else {
      this.run = run.child(message, frame);
    }
    return buffered > 0 ? 'queued' : 'sent';
  }

  /** Writes what is pending as one buffer; if the socket is gone, what was pending is counted as dropped. */
  flush(): void {
    const run = this.run;
    if (run === null) return;
    this.run = null;
    // ws writes straight to the socket too when permessage-deflate is off, so frames stay in order with pings
    // and the close frame; `_socket` is ws's own field and the documented way its Sender is fed.
    const socket = (this.ws as unknown as { _socket: Duplex | null })._socket;
    if (this.ws.readyState !== OPEN || socket === null || socket.destroyed) {
      this.retract(run, 'closed');
      return;
    }
    try {
      socket.write(run.joined());
    } catch (err) {
      this.host.error(err, this);
      this.retract(run, 'error');
    }
  }

  /** Moves messages counted as delivered but never written to the dropped count. */
  retract(run: Run, reason: DropReason): void {
    for (const message of run.messages()) this.host.retracted(this, message, reason);
  }

  protected doClose(code: number, reason: string): void {
    // Pending frames must go out before the close frame, which ws writes at once.
    this.flush();
    this.sentCode = code;
    this.ws.close(code, reason);
    if (this.ws.bufferedAmount > this.backpressure.limit) {
      // A peer that does not read will not read the close frame either: do not hold its buffer for long.
      setTimeout(() => this.ws.terminate(), 1000).unref();
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
  root = new Run(null, null, null);
  readonly #host: TransportHost<TData>;
  readonly #options: ResolvedTransportOptions<TData>;
  readonly #server: HttpServer | HttpsServer | undefined;
  readonly #ownsWss: boolean;
  readonly #sessions = new Set<WsSession<TData>>();
  #pending: WsSession<TData>[] = [];
  #flushScheduled = false;
  #heartbeat: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(registry: SessionRegistry<TData, never>, options: WsTransportOptions<TData>) {
    const raw: unknown = options;
    assertObject(raw, 'options');
    this.#options = resolveTransportOptions<TData>(raw, registry.options.backpressure, 'wsTransport', [
      'server',
      'wss',
      'perMessageDeflate',
    ]);
    const { server, wss, perMessageDeflate } = options;
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
    this.match = compileRoutes(this.#options.path);
    this.#ownsWss = wss === undefined;
    this.wss =
      wss ??
      new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload: this.#options.maxPayload,
        perMessageDeflate: perMessageDeflate === true,
      });
    this.deflate = this.wss.options.perMessageDeflate !== false;
    this.#server = server;
    this.#host = registry.attach(this);
    if (server !== undefined) attachRoute(server, this);
    this.#startHeartbeat();
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
    const url = req.url ?? '/';
    const request = toUpgradeRequest(url, flattenHeaders(req), req.socket.remoteAddress ?? '', this.match);
    if (request === null) return false;
    // A peer that goes away while authenticate runs must not crash the process.
    socket.on('error', ignore);
    if (this.#closed || this.#host.closing) {
      this.#reject(socket, request, 503, defaultReason(503));
      return true;
    }
    // Read while the hooks run, so that a peer that leaves is noticed (a paused socket never sees its EOF).
    // A client sends nothing before the 101; whatever it did send is handed to ws as part of `head`.
    const early: Buffer[] = [];
    const onData = (chunk: Buffer): void => void early.push(chunk);
    const onEnd = (): void => void socket.destroy();
    socket.on('data', onData);
    socket.once('end', onEnd);
    const decision = await decideUpgrade(request, this.#options.authenticate, this.#options.channels);
    // ws attaches its own 'data' listener synchronously inside handleUpgrade below, so no chunk is lost.
    socket.off('data', onData);
    socket.off('end', onEnd);
    if (early.length > 0) head = Buffer.concat([head, ...early]);
    // The peer left while the hooks ran: answer nothing, register nothing.
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      return true;
    }
    if (!decision.ok) {
      if (decision.error !== undefined) this.#host.error(decision.error);
      this.#reject(socket, request, decision.status, decision.reason);
      return true;
    }
    if (this.#closed || this.#host.closing) {
      this.#reject(socket, request, 503, defaultReason(503));
      return true;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.#accept(ws, request, decision.data, decision.channels),
    );
    return true;
  }

  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
  ): void {
    fanoutLoop(message, sessions, except);
  }

  markPending(session: WsSession<TData>): void {
    this.#pending.push(session);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  // One write per session per turn, however many messages the turn published.
  readonly #flush = (): void => {
    const pending = this.#pending;
    this.#pending = [];
    this.#flushScheduled = false;
    this.root = new Run(null, null, null);
    for (const session of pending) session.flush();
  };

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    if (this.#server !== undefined) detachRoute(this.#server, this);
    for (const session of this.#sessions) session.terminate();
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
      },
      ws,
      this,
    );
    // Shared listeners, not closures: they find the session on the socket, so a session costs no functions.
    (ws as SessionSocket<TData>)[kSession] = session;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onError);
    ws.on('close', onClose);
    this.#sessions.add(session);
    host.open(session, channels);
  }

  unrouted(status: number, reason: string): void {
    this.#host.rejected(null, status, reason);
  }

  /** The socket of `session` closed: it leaves the transport, then the registry. */
  closed(session: WsSession<TData>, code: number, reason: string): void {
    this.#sessions.delete(session);
    if (session.run !== null) {
      const run = session.run;
      session.run = null;
      session.retract(run, 'closed');
    }
    this.#host.closed(session, code, reason);
  }

  #reject(socket: Duplex, request: UpgradeRequest | null, status: number, reason: string): void {
    this.#host.rejected(request, status, reason);
    rejectHandshake(socket, status, reason);
  }

  #startHeartbeat(): void {
    const heartbeat = this.#options.heartbeat;
    if (heartbeat === false) return;
    // One timer for the whole transport: a ping round every interval; a session still awaiting the pong of
    // the previous round after `timeout` is terminated, so a dead peer is gone within interval + timeout.
    this.#heartbeat = setInterval(() => {
      const pinged: WsSession<TData>[] = [];
      for (const session of this.#sessions) {
        if (session.awaitingPong || session.ws.readyState !== OPEN) continue;
        session.awaitingPong = true;
        try {
          session.ws.ping();
          pinged.push(session);
        } catch (err) {
          this.#host.error(err, session);
        }
      }
      if (pinged.length === 0) return;
      setTimeout(() => {
        for (const session of pinged)
          if (session.awaitingPong && this.#sessions.has(session)) session.terminate();
      }, heartbeat.timeout).unref();
    }, heartbeat.interval);
    this.#heartbeat.unref();
  }
}

const kSession = Symbol('fanout.session');
type SessionSocket<TData> = WebSocket & { [kSession]: WsSession<TData> };

function onMessage(this: WebSocket, payload: Buffer, isBinary: boolean): void {
  const session = (this as SessionSocket<unknown>)[kSession];
  session.awaitingPong = false;
  session.host.message(session, isBinary ? payload : payload.toString('utf8'), isBinary);
}

function onPong(this: WebSocket): void {
  (this as SessionSocket<unknown>)[kSession].awaitingPong = false;
}

function onError(this: WebSocket, err: Error & { code?: string }): void {
  const session = (this as SessionSocket<unknown>)[kSession];
  // Protocol violations by the peer (oversized frame, bad UTF-8) end in a close code, not an error.
  if (typeof err.code === 'string' && err.code.startsWith('WS_ERR_')) {
    session.sentCode ??= PROTOCOL_CLOSE_CODES[err.code] ?? 1002;
  } else {
    session.host.error(err, session);
  }
}

function onClose(this: WebSocket, received: number, reason: Buffer): void {
  const session = (this as SessionSocket<unknown>)[kSession];
  // ws stops reading after a protocol error, so it never sees the peer's echo and reports 1006: report the
  // code that was sent instead, as uWS does.
  const code = received === 1006 && session.sentCode !== undefined ? session.sentCode : received;
  session.owner.closed(session, code, reason.toString());
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function ignore(): void {}

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
  return new WsTransportImpl<TData>(registry, options);
}
