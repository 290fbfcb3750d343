/**
 * fanout/client: a WebSocket client for fanout servers, for browsers and Node. Reconnects with bounded
 * exponential backoff and jitter, states its last positions when it reconnects (`since`), and turns the stream
 * frames of docs/streams.md into typed events. No runtime dependencies, no Node APIs: it runs wherever there is
 * a WebSocket class (browsers, Node 22+, or Node 20 with the `ws` package's class passed in).
 */

/** A place in a channel's stream. */
export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

export type UnrecoverableReason = 'epoch' | 'too-old' | 'future' | 'invalid' | 'unavailable';

/** One message: from a stream channel (`channel` and `position` set) or from a raw channel (both null). */
export interface ClientMessage {
  readonly channel: string | null;
  /** The payload as published: text as a string, binary as bytes. */
  readonly data: string | Uint8Array;
  readonly position: StreamPosition | null;
  /** True for a message of a recovery's replay (it was published while this client was away). */
  readonly replayed: boolean;
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The events and their listener arguments. */
export interface ClientEvents {
  message: [message: ClientMessage];
  /** The connection state changed; `delay` is the wait before the next attempt (reconnecting). */
  state: [state: ClientState, info: { attempt: number; delay: number; code?: number; reason?: string }];
  /** Joined a stream channel with no position of ours: this is its current one. */
  subscribed: [info: { channel: string; position: StreamPosition }];
  /** Every missed message of `channel` was replayed (`count` of them, before this event); live ones follow. */
  recovered: [info: { channel: string; position: StreamPosition; count: number }];
  /**
   * What was missed on `channel` cannot be replayed: refetch the state. Also emitted, with reason `epoch`, when
   * a live message shows that the channel's history was reset.
   */
  unrecoverable: [info: { channel: string; reason: UnrecoverableReason; position: StreamPosition | null }];
  /** A live message skipped offsets (`from`..`to` missing), e.g. dropped for backpressure. */
  gap: [info: { channel: string; from: number; to: number }];
  /** A frame this client cannot read, or a listener that threw. */
  error: [error: Error];
}

/** The part of the WebSocket API the client uses (the browser's, Node 22's and `ws`'s classes all have it). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketClass = new (url: string) => WebSocketLike;

export interface ReconnectOptions {
  /** First delay, in ms. Default 500. */
  initial?: number;
  /** Largest delay, in ms. Default 10000. */
  max?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** Share of each delay drawn at random (0 = none, 1 = all of it), so clients spread out. Default 0.5. */
  jitter?: number;
}

export interface ClientOptions {
  /** The WebSocket class. Default: the global one (browsers, Node 22+). Node 20: `WebSocket` from `ws`. */
  WebSocket?: WebSocketClass;
  /** Backoff between attempts, or `false` never to reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Positions to resume from (e.g. saved by a previous page load), channel -> position. */
  positions?: Readonly<Record<string, StreamPosition>>;
}

const MARK = 0x1e;
const LF = 0x0a;
const DEFAULTS = { initial: 500, max: 10_000, factor: 2, jitter: 0.5 };

type Listener<K extends keyof ClientEvents> = (...args: ClientEvents[K]) => void;

/**
 * Connects to `url` and stays connected until `close()`: every drop is followed by a new attempt after a
 * backoff; each attempt states the last position of every stream channel seen (`since` in the query string).
 */
export class FanoutClient {
  readonly url: string;
  #state: ClientState = 'connecting';
  #ws: WebSocketLike | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #attempt = 0;
  readonly #WebSocket: WebSocketClass;
  readonly #backoff: Required<ReconnectOptions> | null;
  readonly #positions = new Map<string, StreamPosition>();
  /** Channels whose recovery answer (rec/unrec) is still due on this connection. */
  readonly #recovering = new Set<string>();
  readonly #listeners: { [K in keyof ClientEvents]?: Listener<K>[] } = {};
  readonly #decoder = new TextDecoder();

  constructor(url: string, options: ClientOptions = {}) {
    if (typeof url !== 'string') throw new TypeError('The "url" argument must be a string');
    new URL(url); // throws a TypeError for an invalid URL
    this.url = url;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('The "WebSocket" option must be a WebSocket class (no global WebSocket here)');
    }
    this.#WebSocket = WS;
    this.#backoff = options.reconnect === false ? null : backoff(options.reconnect ?? {});
    for (const [channel, position] of Object.entries(options.positions ?? {})) {
      if (!isPosition(position))
        throw new TypeError(`The "positions.${channel}" option must be { epoch, offset }`);
      this.#positions.set(channel, { epoch: position.epoch, offset: position.offset });
    }
    // Listeners are attached after the constructor returns; connect on the next tick.
    this.#timer = setTimeout(() => this.#connect(), 0);
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The last position of each stream channel seen (save them to resume after a page reload). */
  positions(): Record<string, StreamPosition> {
    return Object.fromEntries(this.#positions);
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<K>): () => void {
    const list = (this.#listeners[event] ??= []) as Listener<K>[];
    list.push(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof ClientEvents>(event: K, listener: Listener<K>): void {
    const list = this.#listeners[event] as Listener<K>[] | undefined;
    const i = list?.indexOf(listener) ?? -1;
    if (list !== undefined && i !== -1) list.splice(i, 1);
  }

  /** Sends text to the server (only while open). Returns false when not connected. */
  send(data: string): boolean {
    if (this.#ws === null || this.#ws.readyState !== 1) return false;
    this.#ws.send(data);
    return true;
  }

  /** Closes the connection and stops reconnecting. */
  close(code = 1000, reason = ''): void {
    if (this.#state === 'closed') return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    this.#ws = null;
    this.#setState('closed', { attempt: this.#attempt, delay: 0, code, reason });
    if (ws !== null) {
      detach(ws);
      ws.close(code, reason);
    }
  }

  /** The URL of the next attempt: `url` plus one `since` per known stream position. */
  resumeUrl(): string {
    const url = new URL(this.url);
    url.searchParams.delete('since');
    for (const [channel, p] of this.#positions)
      url.searchParams.append('since', `${p.epoch}:${p.offset}:${channel}`);
    return url.toString();
  }

  #connect(): void {
    this.#timer = null;
    if (this.#state === 'closed') return;
    this.#setState('connecting', { attempt: this.#attempt, delay: 0 });
    let ws: WebSocketLike;
    try {
      ws = new this.#WebSocket(this.resumeUrl());
    } catch (err) {
      this.#emit('error', toError(err));
      return this.#dropped(1006, 'cannot connect');
    }
    this.#ws = ws;
    this.#recovering.clear();
    for (const channel of this.#positions.keys()) this.#recovering.add(channel);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.#attempt = 0;
      this.#setState('open', { attempt: 0, delay: 0 });
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onerror = () => {}; // a close always follows
    ws.onclose = (event) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      detach(ws);
      this.#dropped(event.code, event.reason);
    };
  }

  #dropped(code: number, reason: string): void {
    if (this.#state === 'closed') return;
    if (this.#backoff === null) {
      this.#setState('closed', { attempt: this.#attempt, delay: 0, code, reason });
      return;
    }
    const { initial, max, factor, jitter } = this.#backoff;
    const base = Math.min(max, initial * Math.pow(factor, this.#attempt));
    const delay = Math.round(base * (1 - jitter * Math.random()));
    this.#attempt++;
    this.#setState('reconnecting', { attempt: this.#attempt, delay, code, reason });
    if (this.#state === 'reconnecting') this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #receive(data: unknown): void {
    if (typeof data === 'string') {
      if (data.charCodeAt(0) !== MARK) return this.#raw(data);
      const nl = data.indexOf('\n');
      return this.#frame(
        nl === -1 ? data.slice(1) : data.slice(1, nl),
        nl === -1 ? null : data.slice(nl + 1),
        data,
      );
    }
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : null;
    if (bytes === null) return;
    if (bytes[0] !== MARK) return this.#raw(bytes);
    const nl = bytes.indexOf(LF);
    if (nl === -1) return this.#raw(bytes);
    this.#frame(this.#decoder.decode(bytes.subarray(1, nl)), bytes.subarray(nl + 1), bytes);
  }

  #raw(data: string | Uint8Array): void {
    this.#emit('message', { channel: null, data, position: null, replayed: false });
  }

  #frame(head: string, body: string | Uint8Array | null, whole: string | Uint8Array): void {
    let h: unknown[];
    try {
      h = JSON.parse(head) as unknown[];
      if (!Array.isArray(h) || typeof h[1] !== 'string' || typeof h[2] !== 'string')
        throw new Error('bad header');
    } catch {
      return this.#raw(whole); // not a stream frame after all
    }
    if (h[0] !== 1) return this.#emit('error', new Error(`Unknown stream protocol version ${String(h[0])}`));
    const channel = h[2] as string;
    const position =
      typeof h[3] === 'string' && typeof h[4] === 'number' ? { epoch: h[3], offset: h[4] } : null;
    switch (h[1]) {
      case 'm':
        if (position === null || body === null)
          return this.#emit('error', new Error(`Bad stream frame ${head}`));
        return this.#message(channel, position, body);
      case 'sub':
        if (position === null) return;
        this.#positions.set(channel, position);
        return this.#emit('subscribed', { channel, position });
      case 'rec':
        if (position === null) return;
        this.#recovering.delete(channel);
        this.#positions.set(channel, position);
        return this.#emit('recovered', { channel, position, count: typeof h[5] === 'number' ? h[5] : 0 });
      case 'unrec':
        this.#recovering.delete(channel);
        if (position !== null) this.#positions.set(channel, position);
        return this.#emit('unrecoverable', { channel, reason: h[5] as UnrecoverableReason, position });
      default:
        return; // a frame type of a later protocol revision: ignored
    }
  }

  #message(channel: string, position: StreamPosition, data: string | Uint8Array): void {
    const last = this.#positions.get(channel);
    if (last !== undefined) {
      // Offset 0 (nothing seen yet) matches any epoch.
      if (last.epoch !== position.epoch && last.offset !== 0) {
        this.#emit('unrecoverable', { channel, reason: 'epoch', position });
      } else if (position.offset <= last.offset) {
        return; // already had it
      } else if (position.offset > last.offset + 1) {
        this.#emit('gap', { channel, from: last.offset + 1, to: position.offset - 1 });
      }
    }
    this.#positions.set(channel, position);
    this.#emit('message', { channel, data, position, replayed: this.#recovering.has(channel) });
  }

  #setState(state: ClientState, info: ClientEvents['state'][1]): void {
    this.#state = state;
    this.#emit('state', state, info);
  }

  #emit<K extends keyof ClientEvents>(event: K, ...args: ClientEvents[K]): void {
    const list = this.#listeners[event] as Listener<K>[] | undefined;
    if (list === undefined) return;
    for (const listener of list.slice()) {
      try {
        listener(...args);
      } catch (err) {
        // One throwing listener must not stop the others, nor the client.
        if (event !== 'error') this.#emit('error', toError(err));
      }
    }
  }
}

function backoff(options: ReconnectOptions): Required<ReconnectOptions> {
  const out = { ...DEFAULTS, ...options };
  for (const key of ['initial', 'max', 'factor', 'jitter'] as const) {
    const v = out[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new TypeError(`The "reconnect.${key}" option must be a non-negative number`);
    }
  }
  if (out.jitter > 1) throw new RangeError('The "reconnect.jitter" option must be between 0 and 1');
  if (out.factor < 1) throw new RangeError('The "reconnect.factor" option must be at least 1');
  if (out.max < out.initial)
    throw new RangeError('The "reconnect.max" option must be at least "reconnect.initial"');
  return out;
}

function isPosition(p: unknown): p is StreamPosition {
  const q = p as StreamPosition | null;
  return (
    typeof q === 'object' &&
    q !== null &&
    typeof q.epoch === 'string' &&
    typeof q.offset === 'number' &&
    Number.isSafeInteger(q.offset) &&
    q.offset >= 0
  );
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = () => {};
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
