/**
 * The servers under test, each behind the same small interface: fanout's transports and the controls the
 * issue names (a naive ws loop, raw uWebSockets.js `app.publish`, Socket.IO 4 rooms). Every one listens on
 * 127.0.0.1, port 0, and puts its sessions in one channel.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { CHANNEL, NOT_NATIVE, type BackpressureSpec, type ClientKind, type Target } from './protocol.js';

export interface RunningTarget {
  port: number;
  /** The upgrade path clients use. */
  path: string;
  client: ClientKind;
  /** True when the target runs on the native uWebSockets.js binary. */
  native?: boolean;
  /** `key`: the conflation key (fanout targets; the controls ignore it). */
  publish(text: string, key?: string): void;
  /** Sessions currently in the channel. */
  count(): number;
  /** fanout's registry counters (fanout targets only). */
  stats?(): {
    delivered: number;
    dropped: number;
    closedForBackpressure: number;
    held: number;
    conflated: number;
  };
  close(): Promise<void>;
}

/** Thrown when a target cannot run here (a transport not written yet, the uWS binary missing). */
export class TargetUnavailable extends Error {}

const require = createRequire(import.meta.url);

// Minimal shapes of the modules loaded at run time, so the bench compiles before a transport exists.
interface UwsWebSocket {
  subscribe(topic: string): boolean;
}
interface UwsApp {
  ws(pattern: string, behavior: Record<string, unknown>): UwsApp;
  listen(host: string, port: number, cb: (listenSocket: unknown) => void): UwsApp;
  publish(topic: string, message: string, isBinary?: boolean): boolean;
  numSubscribers(topic: string): number;
  close?(): void;
}
interface UwsModule {
  App(): UwsApp;
  us_socket_local_port(socket: unknown): number;
  us_listen_socket_close(socket: unknown): void;
}

/**
 * Loads uWebSockets.js and refuses the pure-JS imitation: the unofficial build silently falls back to it when
 * its binary does not load, which would make every uWS figure meaningless.
 */
export async function loadNativeUws(): Promise<UwsModule> {
  let uws: UwsModule;
  try {
    uws = require('uWebSockets.js') as UwsModule;
  } catch (err) {
    throw new TargetUnavailable(`uWebSockets.js is not installed: ${(err as Error).message}`);
  }
  const helper = await loadUwsTransport().catch(() => null);
  const native =
    helper !== null && typeof helper.isNativeUws === 'function'
      ? helper.isNativeUws(uws)
      : Function.prototype.toString.call(uws.App).includes('[native code]');
  if (!native) {
    throw new TargetUnavailable(
      `uWebSockets.js is the pure-JS fallback, ${NOT_NATIVE} (check UWS_USE_FALLBACK and the binary for ` +
        `node ABI ${process.versions.modules}); refusing to measure it`,
    );
  }
  return uws;
}

interface UwsTransportModule {
  uwsTransport(registry: unknown, options: Record<string, unknown>): { close(): Promise<void> };
  isNativeUws?(uws: unknown): boolean;
}
interface WsTransportModule {
  wsTransport(registry: unknown, options: Record<string, unknown>): { close(): Promise<void> };
}

// Variable specifiers: the transports may not exist yet when the bench is built; a missing one is reported.
const WS_TRANSPORT = '../transports/ws.js';
const UWS_TRANSPORT = '../transports/uws.js';

async function loadWsTransport(): Promise<WsTransportModule> {
  try {
    return (await import(WS_TRANSPORT)) as WsTransportModule;
  } catch (err) {
    throw new TargetUnavailable(`transports/ws.ts cannot be loaded: ${(err as Error).message}`);
  }
}

async function loadUwsTransport(): Promise<UwsTransportModule> {
  try {
    return (await import(UWS_TRANSPORT)) as UwsTransportModule;
  } catch (err) {
    throw new TargetUnavailable(`transports/uws.ts cannot be loaded: ${(err as Error).message}`);
  }
}

function listenHttp(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () =>
      resolve((server.address() as AddressInfo).port),
    );
  });
}

function closeHttp(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

function listenUws(uws: UwsModule, app: UwsApp): Promise<{ port: number; socket: unknown }> {
  return new Promise((resolve, reject) => {
    app.listen('127.0.0.1', 0, (socket) => {
      if (socket === false) reject(new Error('uWS could not listen on 127.0.0.1'));
      else resolve({ port: uws.us_socket_local_port(socket), socket });
    });
  });
}

async function fanoutRegistry(backpressure: BackpressureSpec, stream = false, metrics = false) {
  const { SessionRegistry } = await import('../src/index.js');
  // A stream target: the same channel as a stream (positions, the envelope, the default in-memory history).
  const streams = stream ? { streams: { channels: CHANNEL } } : {};
  const registry = new SessionRegistry({ backpressure, closeTimeout: 500, ...streams });
  registry.on('error', () => {}); // counted in stats(); a bench run must not print per-session noise
  // The metrics targets, or FANOUT_BENCH_METRICS=1 for every fanout target, bind the Prometheus metrics: what
  // they cost on the hot path.
  if (metrics || process.env['FANOUT_BENCH_METRICS'] === '1') {
    const [{ bindPrometheus }, { Registry }] = await Promise.all([
      import('../metrics/prometheus.js'),
      import('prom-client'),
    ]);
    bindPrometheus(registry, { register: new Registry() });
  }
  return registry;
}

/**
 * What holding across turns could give on uWS, measured on raw `app.publish` (the experiment target
 * `uws-raw-held`): the rule of the ws transport's `coalesceWindow` at 5 ms, for one channel. A publish within
 * 5 ms of the last write waits for a 5 ms timer, and the timer publishes everything held in one turn, where uWS
 * queues up to 32 messages per socket into one write. uWS writes after the turn, so the write is stamped in the
 * next turn (setImmediate).
 */
function heldPublish(app: UwsApp): (text: string) => void {
  const WINDOW = 5;
  let held: string[] = [];
  let timer: NodeJS.Timeout | null = null;
  let wroteAt = -Infinity;
  let stamping = false;
  const stamp = (): void => {
    stamping = false;
    wroteAt = performance.now();
  };
  const wrote = (): void => {
    if (!stamping) {
      stamping = true;
      setImmediate(stamp);
    }
  };
  const flush = (): void => {
    timer = null;
    const list = held;
    held = [];
    for (const text of list) app.publish(CHANNEL, text, false);
    wrote();
  };
  return (text) => {
    if (timer !== null) held.push(text);
    // Same turn as a write not stamped yet: uWS batches it with that one anyway.
    else if (stamping) app.publish(CHANNEL, text, false);
    else if (performance.now() - wroteAt < WINDOW) {
      held.push(text);
      timer = setTimeout(flush, WINDOW);
    } else {
      app.publish(CHANNEL, text, false);
      wrote();
    }
  };
}

/** Starts `target` on 127.0.0.1:0. */
export async function startTarget(target: Target, backpressure: BackpressureSpec): Promise<RunningTarget> {
  switch (target) {
    case 'ws':
    case 'ws-window0':
    case 'ws-window20':
    case 'ws-stream':
    case 'ws-metrics': {
      const { wsTransport } = await loadWsTransport();
      const registry = await fanoutRegistry(backpressure, target === 'ws-stream', target === 'ws-metrics');
      const server = http.createServer();
      // ws-window0: coalescing within one turn only, as before the coalesceWindow option; ws-window20: a
      // longer window than the default.
      const window =
        target === 'ws-window0'
          ? { coalesceWindow: 0 }
          : target === 'ws-window20'
            ? { coalesceWindow: 20 }
            : {};
      wsTransport(registry, { server, path: '/:channel', heartbeat: false, ...window });
      const port = await listenHttp(server);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        publish: (text, key) =>
          key === undefined ? registry.publish(CHANNEL, text) : registry.publish(CHANNEL, text, { key }),
        count: () => registry.count(CHANNEL),
        stats: () => registry.stats(),
        close: async () => {
          await registry.close();
          await closeHttp(server);
        },
      };
    }
    case 'ws-naive': {
      const { WebSocketServer } = await import('ws');
      const server = http.createServer();
      const wss = new WebSocketServer({ server, perMessageDeflate: false });
      const port = await listenHttp(server);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        publish: (text) => {
          for (const c of wss.clients) c.send(text);
        },
        count: () => wss.clients.size,
        close: async () => {
          for (const c of wss.clients) c.terminate();
          await new Promise<void>((resolve) => wss.close(() => resolve()));
          await closeHttp(server);
        },
      };
    }
    case 'uws':
    case 'uws-window0':
    case 'uws-stream':
    case 'uws-metrics': {
      const uws = await loadNativeUws();
      const { uwsTransport } = await loadUwsTransport();
      const registry = await fanoutRegistry(backpressure, target === 'uws-stream', target === 'uws-metrics');
      const app = uws.App();
      // uws-window0: the registry never holds this transport's channels across turns.
      const window = target === 'uws-window0' ? { coalesceWindow: 0 } : {};
      uwsTransport(registry, { app, path: '/:channel', heartbeat: false, ...window });
      const { port, socket } = await listenUws(uws, app);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        native: true,
        publish: (text, key) =>
          key === undefined ? registry.publish(CHANNEL, text) : registry.publish(CHANNEL, text, { key }),
        count: () => registry.count(CHANNEL),
        stats: () => registry.stats(),
        close: async () => {
          await registry.close();
          uws.us_listen_socket_close(socket);
        },
      };
    }
    case 'uws-raw':
    case 'uws-raw-held': {
      const uws = await loadNativeUws();
      const app = uws.App();
      app.ws('/*', {
        compression: 0,
        maxPayloadLength: 64 * 1024,
        idleTimeout: 0,
        // The control gets the same per-session buffer limit as fanout (uWS drops above it, and a drop
        // invalidates the run).
        maxBackpressure: backpressure.limit,
        closeOnBackpressureLimit: backpressure.policy === 'close' ? 1 : 0,
        open: (ws: UwsWebSocket) => ws.subscribe(CHANNEL),
      });
      const { port, socket } = await listenUws(uws, app);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        native: true,
        publish: target === 'uws-raw' ? (text) => void app.publish(CHANNEL, text, false) : heldPublish(app),
        count: () => app.numSubscribers(CHANNEL),
        close: async () => {
          uws.us_listen_socket_close(socket);
          app.close?.();
        },
      };
    }
    case 'socketio': {
      const { Server } = await import('socket.io');
      const server = http.createServer();
      const io = new Server(server, {
        transports: ['websocket'],
        serveClient: false,
        perMessageDeflate: false,
        pingInterval: 600_000,
        pingTimeout: 600_000,
      });
      io.on('connection', (socket) => void socket.join(CHANNEL));
      const port = await listenHttp(server);
      return {
        port,
        path: '/socket.io/?EIO=4&transport=websocket',
        client: 'sio',
        publish: (text) => void io.to(CHANNEL).emit('m', text),
        count: () => io.sockets.adapter.rooms.get(CHANNEL)?.size ?? 0,
        close: async () => {
          io.disconnectSockets(true);
          await new Promise<void>((resolve) => void io.close(() => resolve()));
          await closeHttp(server).catch(() => {});
        },
      };
    }
  }
}
