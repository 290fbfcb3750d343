// The published declarations use Node's types (Buffer, http): consumers get them without `types: ["node"]`.
/// <reference types="node" preserve="true" />
/**
 * The uWebSockets.js transport. It takes the user's `app` and never loads uWebSockets.js itself (type imports
 * only), so users of the ws transport never need it installed.
 *
 * Fan-out: every channel is a native uWS topic (namespaced per transport, so two transports or two registries
 * on one app never see each other's traffic). A publish to one channel is one `app.publish`: C++ walks the
 * subscribers and batches per socket. `except` of one session uses that socket's own `publish`, which skips
 * the sender. Anything else (several channels at once, several sessions to skip) is the plain per-session loop.
 *
 * Backpressure accounting: uWS is told never to drop (`maxBackpressure: 0`) because this build has no `dropped`
 * callback and a drop inside C++ could not be counted. The shared policy is applied in JS instead, with the same
 * rule as every transport ("a message to a session whose buffered bytes are past `limit` is dropped"):
 * - a native publish counts one delivery per natively subscribed recipient without visiting them (the channel's
 *   size less the skipped and congested ones), then reads `getBufferedAmount()` of only those sessions that
 *   could have passed the limit since they were last read (uws-congestion.ts, the one owner of this state: a
 *   session with `b` buffered bytes cannot pass `limit` before `limit - b + 1` more bytes were published); a
 *   session found past the limit becomes *congested*: it is unsubscribed from its native topics, so C++ stops
 *   writing to it;
 * - every later publish to its channels reaches it through `deliver()`, which drops the message (counted, `drop`
 *   event) or, under the `close` policy, drops it and closes the session with the policy's close code;
 * - when the socket drains below the limit (`drain` handler, or a direct send that finds it below) it is
 *   subscribed to its topics again. Messages it missed meanwhile were each counted as dropped.
 * So every message is counted exactly once: delivered to every natively subscribed recipient, dropped or
 * delivered one by one for congested ones. Builds that do have a `dropped` callback get one too, as a safety
 * net: a message such a build reports dropped after a native publish counted it delivered is moved from the
 * delivered count to the dropped count (retracted); one it reports while a direct send runs is the DROPPED
 * result of that send, counted once by `deliver`.
 *
 * Two uWS facts this rests on (v20 TopicTree): messages under 16 KiB are queued per socket (at most 32, or until
 * the end of the event-loop turn) before they are written, so `getBufferedAmount()` lags by that batch and a
 * session can pass the limit by it before it is caught; and a socket that leaves its *last* topic has its
 * queue freed with it, messages unsent. So every session also holds one private topic that is never published
 * (the anchor): taking it off its channel topics never discards what was already queued (and counted) for it.
 *
 * A uWS socket is invalid after its close handler ran: the handler detaches the socket from its session
 * before telling the registry, and every access goes through `session.ws`, null from then on.
 */
import { randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocketBehavior,
  us_socket_context_t,
} from 'uWebSockets.js';
import {
  assertObject,
  attachTransport,
  defaultReason,
  encode,
  fanoutLoop,
  resolveCoalesceWindow,
  resolveTransportOptions,
  UpgradeGate,
  type BaseSession,
  type Message,
  type ResolvedTransportOptions,
  type RouteMatcher,
  SessionRegistry,
  type Transport,
  type TransportHost,
  type TransportOptions,
} from '../src/index.js';
import { isNativeUws } from './uws-native.js';
import { uwsCloseCode, uwsHeartbeat, uwsRemoteAddress } from './uws-options.js';
import { Congestion } from './uws-congestion.js';
import { FRAME_OVERHEAD, UwsSession, type Socket, type UserData, type UwsOwner } from './uws-session.js';

export { assertNativeUws, isNativeUws } from './uws-native.js';
export { uwsHeartbeat, uwsHeartbeatBound } from './uws-options.js';

export interface UwsTransportOptions<TData> extends TransportOptions<TData> {
  /** The app from `uWS.App()` or `uWS.SSLApp()`. It must be the native build (see `isNativeUws`). */
  app: TemplatedApp;
  /**
   * Coalescing across event-loop turns, in ms (docs/coalescing.md): what is published to a channel fanned out
   * less than this long ago is held at most this long and published natively in one turn with everything else
   * published to it meanwhile, so uWS writes it to each socket at once. A quiet channel is published at once.
   * 0 turns it off. Default 5.
   */
  coalesceWindow?: number;
}

/** The uWS transport: the handle `uwsTransport()` returns. */
export interface UwsTransport extends Transport {
  readonly name: 'uws';
  readonly app: TemplatedApp;
  /** The path matcher. */
  readonly match: RouteMatcher;
  /** The native topic that carries `channel` for this transport. */
  topic(channel: string): string;
}

const BAD_KEY = 'Missing or invalid Sec-WebSocket-Key header';

// One 404 catch-all route per app, shared by every transport on it (uWS drops unmatched upgrades silently).
const appTransports = new WeakMap<TemplatedApp, UwsTransportImpl<never>[]>();
let transportCount = 0;

class UwsTransportImpl<TData> implements UwsTransport, UwsOwner<TData> {
  readonly name = 'uws';
  readonly app: TemplatedApp;
  readonly coalesceWindow: number;
  readonly match: RouteMatcher;
  readonly #host: TransportHost<TData>;
  readonly #gate: UpgradeGate<TData>;
  readonly #options: ResolvedTransportOptions<TData>;
  /** UwsOwner: what this transport's sessions share. */
  readonly prefix: string;
  readonly #anchor: string;
  readonly congestion: Congestion<UwsSession<TData>>;
  writing: UwsSession<TData> | null = null;
  #closed = false;

  constructor(registry: SessionRegistry<TData, never>, options: UwsTransportOptions<TData>) {
    const raw: unknown = options;
    assertObject(raw, 'options');
    this.#options = resolveTransportOptions<TData>(raw, registry.options.backpressure, 'uwsTransport', [
      'app',
      'coalesceWindow',
    ]);
    this.coalesceWindow = resolveCoalesceWindow(raw['coalesceWindow']);
    const app = raw['app'];
    if (typeof app !== 'object' || app === null || typeof (app as TemplatedApp).ws !== 'function') {
      throw new TypeError('The "app" option must be a uWebSockets.js app (uWS.App() or uWS.SSLApp())');
    }
    if (!isNativeUws(app)) {
      throw new TypeError(
        'The "app" option is not a native uWebSockets.js app: the pure-JS fallback was loaded ' +
          '(no binary for this platform and Node ABI, or UWS_USE_FALLBACK is set)',
      );
    }
    this.app = app as TemplatedApp;
    const heartbeat = uwsHeartbeat(this.#options.heartbeat);
    // Congested means behind: past the soft limit, where the policy (conflation, volatile skips, then the limit)
    // must see every message, so C++ stops writing to the session from there.
    this.congestion = new Congestion(this.#options.backpressure.softLimit);
    this.prefix = `fanout:${++transportCount}.${randomBytes(3).toString('hex')}:`;
    this.#anchor = `${this.prefix.slice(0, -1)}!anchor`;
    this.#host = attachTransport(registry, this);
    this.#gate = new UpgradeGate(this.#host, this.#options);
    this.match = this.#gate.match;
    const behavior: WebSocketBehavior<UserData<TData>> & { dropped?: unknown } = {
      compression: 0,
      maxPayloadLength: this.#options.maxPayload,
      // Never let C++ drop: the policy is applied (and counted) in JS, see the header comment.
      maxBackpressure: 0,
      closeOnBackpressureLimit: 0,
      maxLifetime: 0,
      ...heartbeat,
      upgrade: (res, req, context) => this.#upgrade(res, req, context),
      open: (ws) => this.#open(ws),
      message: (ws, data, isBinary) => {
        const session = ws.getUserData().session;
        // This build has no ws.pause(): the inbound limit (which closes a flooder at once) is the bound here.
        if (session === null || !session.acceptInbound(data.byteLength)) return;
        // The ArrayBuffer is neutered when this handler returns: copy it.
        const bytes = Buffer.from(new Uint8Array(data));
        this.#host.message(session, isBinary ? bytes : bytes.toString('utf8'), isBinary);
      },
      drain: (ws) => {
        const session = ws.getUserData().session;
        if (session === null) return;
        // Held keyed messages first (see BaseSession.drained), then back on the native topics if under the soft limit.
        session.drained();
        if (session.congested) this.congestion.drained(session, ws.getBufferedAmount());
      },
      close: (ws, code, message) => this.#close(ws, code, message),
      // Newer official builds report messages they dropped; with maxBackpressure 0 none should be.
      dropped: (ws: Socket<TData>, data: ArrayBuffer, isBinary: boolean) => {
        const session = ws.getUserData().session;
        // A direct send's own drop: send() returns DROPPED too, and deliver() counts that result.
        if (session === null || this.writing === session) return;
        // Otherwise it came from a native publish, which counted it delivered: move it to dropped.
        const bytes = Buffer.from(new Uint8Array(data));
        this.#host.retracted(session, encode(isBinary ? bytes : bytes.toString('utf8')), 'backpressure');
      },
    };
    const patterns = typeof this.#options.path === 'string' ? [this.#options.path] : this.#options.path;
    for (const pattern of patterns) this.app.ws(pattern, behavior);
    this.#installNotFound();
  }

  topic(channel: string): string {
    return this.prefix + channel;
  }

  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
    channel: string | null,
  ): void {
    if (channel === null || this.#closed) return fanoutLoop(message, sessions, except);
    // Which socket must native publish skip? A skipped session that is not natively subscribed to the topic
    // (not in the channel, congested, another transport's) is skipped by app.publish anyway.
    let sender: UwsSession<TData> | null = null;
    if (except !== null) {
      for (const skipped of except) {
        if (!sessions.has(skipped)) continue;
        const session = skipped as unknown as UwsSession<TData>;
        if (session.congested || session.ws === null) continue;
        // Native publish can skip one socket, not two.
        if (sender !== null) return fanoutLoop(message, sessions, except);
        sender = session;
      }
    }
    try {
      const topic = this.prefix + channel;
      if (sender === null) this.app.publish(topic, message.bytes, message.binary, false);
      else (sender.ws as Socket<TData>).publish(topic, message.bytes, message.binary, false);
    } catch (err) {
      this.#host.error(err);
      return fanoutLoop(message, sessions, except);
    }
    this.#account(message, sessions, except, sender);
  }

  /**
   * After a native publish: counts the deliveries C++ made (every natively subscribed recipient), hands the
   * message to congested recipients one by one (where the policy drops it or closes them), and reads the
   * buffered bytes of only those sessions that could have passed the limit by now (see uws-congestion.ts).
   */
  #account(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
    sender: UwsSession<TData> | null,
  ): void {
    let natives = sender === null ? sessions.size : sessions.size - 1;
    const congested = this.congestion.congested;
    if (congested.size > 0) {
      for (const session of congested) {
        const member = session as unknown as BaseSession<never>;
        if (!sessions.has(member)) continue;
        natives--;
        if (except === null || !except.has(member)) session.deliver(message);
      }
    }
    if (natives > 0) this.#host.deliveredMany(message, natives);
    this.congestion.published(message.byteLength + FRAME_OVERHEAD);
  }

  subscribed(session: BaseSession<never>, channel: string): void {
    (session as unknown as UwsSession<TData>).joinTopic(channel);
  }

  unsubscribed(session: BaseSession<never>, channel: string): void {
    (session as unknown as UwsSession<TData>).leaveTopic(channel);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gate.close();
    // The registry closed its sessions already; a direct call must not leave any behind either.
    for (const session of [...this.#host.sessions()]) session.terminate();
    const list = appTransports.get(this.app);
    const i = list?.indexOf(this as unknown as UwsTransportImpl<never>) ?? -1;
    if (list !== undefined && i !== -1) list.splice(i, 1);
  }

  /** Runs in the uWS upgrade callback: everything needed from `req` is copied before the first await. */
  /**
   * Runs in the uWS upgrade callback (`context` set), or for an upgrade that uWS kept from its ws routes
   * (`context` null: see #installNotFound). Everything needed from `req` is copied before the first await.
   */
  #upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t | null): void {
    const path = req.getUrl();
    const query = req.getQuery();
    const headers: Record<string, string> = {};
    // Repeated headers are joined with ", ", as Node's http does for most of them.
    req.forEach((name, value) => {
      const prev = headers[name];
      headers[name] = prev === undefined ? value : `${prev}, ${value}`;
    });
    const raw = {
      method: req.getMethod(),
      url: query ? `${path}?${query}` : path,
      headers,
      remoteAddress: uwsRemoteAddress(Buffer.from(res.getRemoteAddressAsText()).toString()),
    };
    const key = headers['sec-websocket-key'] ?? '';
    // Echo one subprotocol (the first offered), as ws does by default; echoing the whole list is invalid.
    const protocol = (headers['sec-websocket-protocol'] ?? '').split(',')[0]?.trim() ?? '';
    const extensions = headers['sec-websocket-extensions'] ?? '';
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    this.#gate
      .decide(raw, () => aborted)
      .then((outcome) => {
        // The peer went away while authenticate ran: nothing was registered and nothing may be written.
        if (outcome === null || aborted) return;
        if (!outcome.ok) return respond(res, outcome.status, outcome.reason, outcome.headers);
        if (context === null) {
          // Not reached: the gate refuses every key uWS does not route. Without a context there is no upgrade.
          this.#host.rejected(outcome.request, 400, BAD_KEY);
          return respond(res, 400, BAD_KEY);
        }
        const userData: UserData<TData> = {
          session: null,
          pending: { request: outcome.request, data: outcome.data, channels: outcome.channels },
        };
        res.cork(() => res.upgrade(userData, key, protocol, extensions, context));
      })
      .catch((err: unknown) => this.#host.error(err));
  }

  #open(ws: Socket<TData>): void {
    const userData = ws.getUserData();
    const pending = userData.pending;
    if (pending === null) return;
    // The request (headers, query) is not needed past this point: the socket's user data must not hold it.
    userData.pending = null;
    const session = new UwsSession<TData>(
      {
        host: this.#host,
        data: pending.data,
        params: pending.request.params,
        remoteAddress: pending.request.remoteAddress,
        backpressure: this.#options.backpressure,
        inboundLimit: this.#options.inboundLimit,
      },
      ws,
    );
    userData.session = session;
    // Why: uWS frees a socket's pub/sub state, with the messages still queued for it, when it leaves its last
    // topic. Congestion takes a session off every channel topic; this never-published topic keeps its queue.
    ws.subscribe(this.#anchor);
    this.congestion.opened(session);
    this.#host.open(session, pending.channels, pending.request);
  }

  #close(ws: Socket<TData>, code: number, message: ArrayBuffer): void {
    const userData = ws.getUserData();
    const session = userData.session;
    if (session === null) return;
    // From here on the socket is invalid: detach it first, so nothing the registry does next can touch it.
    userData.session = null;
    session.ws = null;
    // Nothing in the transport may keep a closed session reachable, whatever the traffic.
    this.congestion.closed(session);
    const reason = Buffer.from(message).toString('utf8');
    this.#host.closed(session, uwsCloseCode(code, reason), reason);
  }

  /** True when `url`'s path is one of this transport's routes. */
  owns(url: string): boolean {
    return this.#gate.owns(url);
  }

  /** An upgrade uWS did not route to a ws handler: answered (and counted) like any other. */
  unrouted(res: HttpResponse, req: HttpRequest): void {
    this.#upgrade(res, req, null);
  }

  /** Rejection of an upgrade whose path no transport on this app owns. */
  notFound(): void {
    this.#host.rejected(null, 404, defaultReason(404));
  }

  #installNotFound(): void {
    let list = appTransports.get(this.app);
    if (list === undefined) {
      const transports: UwsTransportImpl<never>[] = [];
      list = transports;
      appTransports.set(this.app, list);
      // A wildcard ranks below every static and parameter route, so it only sees paths nobody else owns.
      this.app.ws('/*', {
        upgrade: (res) => {
          transports[0]?.notFound();
          respond(res, 404, defaultReason(404));
        },
      });
      // uWS hands an upgrade to its ws routes only when its Sec-WebSocket-Key has 24 characters; it passes any
      // other request on to the HTTP routes, and closes the connection unanswered when none takes it. Upgrades
      // among them get their answer here (400 through the gate of the transport that owns the path, else 404);
      // everything else goes on to the app's own routes.
      this.app.get('/*', (res, req) => {
        if (req.getHeader('upgrade').toLowerCase() !== 'websocket') return void req.setYield(true);
        const query = req.getQuery();
        const url = query ? `${req.getUrl()}?${query}` : req.getUrl();
        const owner = transports.find((t) => t.owns(url));
        if (owner !== undefined) return owner.unrouted(res, req);
        transports[0]?.notFound();
        respond(res, 404, defaultReason(404));
      });
    }
    list.push(this as unknown as UwsTransportImpl<never>);
  }
}

/** Answers an upgrade with an HTTP error (and the refusal's headers) before any 101. */
function respond(
  res: HttpResponse,
  status: number,
  reason: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.cork(() => {
    res.writeStatus(`${status} ${STATUS_CODES[status] ?? 'Error'}`);
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value);
    res.writeHeader('Content-Type', 'text/plain; charset=utf-8').end(reason, true);
  });
}

/**
 * Connects a registry to a uWebSockets.js app: routes upgrades by path, runs `authenticate` before the 101,
 * maps channels to native topics, pings through uWS's idle timeout, enforces inbound limits and applies the
 * shared backpressure policy with exact accounting (see the module comment).
 */
export function uwsTransport<TData>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  registry: SessionRegistry<TData, any>,
  options: UwsTransportOptions<TData>,
): UwsTransport {
  if (!(registry instanceof SessionRegistry)) {
    throw new TypeError('The "registry" argument of uwsTransport must be a SessionRegistry');
  }
  return new UwsTransportImpl<TData>(registry as SessionRegistry<TData, never>, options);
}
