import type { Socket } from 'node:net';
import net from 'node:net';
import { WebSocket, type ClientOptions } from 'ws';
import type { RegistryEvents, SessionRegistry } from '../../src/index.js';

/** Everything a test started, disposed after it in reverse order. */
export class Leftovers {
  readonly #items: (() => Promise<unknown> | unknown)[] = [];
  add(dispose: () => Promise<unknown> | unknown): void {
    this.#items.push(dispose);
  }
  /** Disposes everything, in reverse order; one failing disposal is reported and does not stop the others. */
  async dispose(): Promise<void> {
    for (const item of this.#items.splice(0).reverse()) {
      try {
        await item();
      } catch (err) {
        console.error('dispose failed:', err);
      }
    }
  }
}

/**
 * Rejects with `what` (a function: read when the time is up) after `ms` unless `promise` settles first. Bounds
 * every wait in the suite.
 */
export function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const text = typeof what === 'string' ? what : what();
      reject(new Error(`Timed out after ${ms} ms waiting for ${text}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface Closed {
  code: number;
  reason: string;
}

export interface Client {
  readonly ws: WebSocket;
  /** Text messages as strings, binary ones as `bin:<hex>`. */
  readonly messages: string[];
  readonly closed: Promise<Closed>;
  /** The raw TCP socket (for pause/resume/destroy). */
  readonly socket: Socket;
  /** Resolves once `n` messages arrived in total (bounded by `ms`). */
  received(n: number, ms?: number): Promise<string[]>;
}

/** A real `ws` client that records every message; resolves once open. */
export function connect(leftovers: Leftovers, url: string, options?: ClientOptions): Promise<Client> {
  return new Promise<Client>((resolve, reject) => {
    const ws = new WebSocket(url, options);
    const messages: string[] = [];
    let waiters: { n: number; resolve: (m: string[]) => void }[] = [];
    ws.on('message', (data, isBinary) => {
      messages.push(isBinary ? `bin:${(data as Buffer).toString('hex')}` : (data as Buffer).toString());
      if (waiters.length === 0) return;
      const ready = waiters.filter((w) => messages.length >= w.n);
      waiters = waiters.filter((w) => messages.length < w.n);
      for (const w of ready) w.resolve(messages);
    });
    const closed = new Promise<Closed>((res) =>
      ws.on('close', (code, reason) => res({ code, reason: reason.toString() })),
    );
    ws.on('error', () => {});
    leftovers.add(() => ws.terminate());
    ws.once('open', () => {
      const socket = (ws as unknown as { _socket: Socket })._socket;
      resolve({
        ws,
        messages,
        closed,
        socket,
        received: (n, ms = 10_000) =>
          within(
            messages.length >= n
              ? Promise.resolve(messages)
              : new Promise<string[]>((r) => waiters.push({ n, resolve: r })),
            ms,
            () => `${n} messages (got ${messages.length})`,
          ),
      });
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`Unexpected status ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Opens `count` clients, at most `concurrency` handshakes at a time. */
export async function connectMany(
  leftovers: Leftovers,
  url: string,
  count: number,
  concurrency = 100,
): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < count; i += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, count - i) }, () => connect(leftovers, url));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** The HTTP status an upgrade attempt got (101 when it was accepted). */
export function upgradeStatus(url: string, headers?: Record<string, string>): Promise<number> {
  return within(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
        ws.terminate();
      });
      ws.on('open', () => {
        resolve(101);
        ws.terminate();
      });
      ws.on('error', (err) => {
        if (!/Unexpected server response/.test(err.message)) reject(err);
      });
    }),
    10_000,
    `the answer to an upgrade of ${url}`,
  );
}

/** Resolves with the arguments of the next registry `event` that satisfies `filter` (bounded by `ms`). */
export function next<TData, E extends keyof RegistryEvents<TData>>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  registry: SessionRegistry<TData, any>,
  event: E,
  filter: (...args: RegistryEvents<TData>[E]) => boolean = () => true,
  ms = 10_000,
): Promise<RegistryEvents<TData>[E]> {
  type Listener = (...args: RegistryEvents<TData>[E]) => void;
  const emitter = registry as unknown as { on(e: E, l: Listener): unknown; off(e: E, l: Listener): unknown };
  let listener: Listener | undefined;
  const p = new Promise<RegistryEvents<TData>[E]>((resolve) => {
    listener = (...args) => {
      if (!filter(...args)) return;
      emitter.off(event, listener as Listener);
      resolve(args);
    };
    emitter.on(event, listener);
  });
  return within(p, ms, `the "${String(event)}" event`).finally(() =>
    emitter.off(event, listener as Listener),
  );
}

export interface RawAnswer {
  /** The status of the answer's status line (101 when the upgrade was accepted; 0 when closed unanswered). */
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
}

/**
 * Sends a hand-written upgrade request (a valid handshake unless `headers` overrides a field; a header set to
 * null is left out) and resolves with the answer's status line and headers (status 0 when the server closed the
 * connection without answering). The socket is closed after.
 */
export function rawUpgrade(
  url: string,
  headers: Record<string, string | null> = {},
  method = 'GET',
): Promise<RawAnswer> {
  const { hostname, port, pathname, search } = new URL(url);
  const all: Record<string, string | null> = {
    Host: `${hostname}:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  let request = `${method} ${pathname}${search} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(all)) if (value !== null) request += `${name}: ${value}\r\n`;
  request += '\r\n';
  return within(
    new Promise<RawAnswer>((resolve, reject) => {
      const socket = net.connect(Number(port), hostname);
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end === -1) return;
        const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
        const answer: RawAnswer = { status: Number(statusLine.split(' ')[1]), headers: {} };
        for (const line of lines) {
          const colon = line.indexOf(':');
          answer.headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        resolve(answer);
        socket.destroy();
      });
      socket.on('error', reject);
      socket.on('close', () => resolve({ status: 0, headers: {} }));
      socket.write(request);
    }),
    10_000,
    `the answer to a raw upgrade of ${url}`,
  );
}
