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
  publish(text: string): void;
  /** Sessions currently in the channel. */
  count(): number;
  /** fanout's registry counters (fanout targets only). */
  stats?(): { delivered: number; dropped: number; closedForBackpressure: number };
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

async function fanoutRegistry(backpressure: BackpressureSpec) {
  const { SessionRegistry } = await import('../src/index.js');
  const registry = new SessionRegistry({ backpressure, closeTimeout: 500 });
  registry.on('error', () => {}); // counted in stats(); a bench run must not print per-session noise
  return registry;
}

/** Starts `target` on 127.0.0.1:0. */
export async function startTarget(target: Target, backpressure: BackpressureSpec): Promise<RunningTarget> {
  switch (target) {
    case 'ws': {
      const { wsTransport } = await loadWsTransport();
      const registry = await fanoutRegistry(backpressure);
      const server = http.createServer();
      wsTransport(registry, { server, path: '/:channel', heartbeat: false });
      const port = await listenHttp(server);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        publish: (text) => registry.publish(CHANNEL, text),
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
    case 'uws': {
      const uws = await loadNativeUws();
      const { uwsTransport } = await loadUwsTransport();
      const registry = await fanoutRegistry(backpressure);
      const app = uws.App();
      uwsTransport(registry, { app, path: '/:channel', heartbeat: false });
      const { port, socket } = await listenUws(uws, app);
      return {
        port,
        path: `/${CHANNEL}`,
        client: 'ws',
        native: true,
        publish: (text) => registry.publish(CHANNEL, text),
        count: () => registry.count(CHANNEL),
        stats: () => registry.stats(),
        close: async () => {
          await registry.close();
          uws.us_listen_socket_close(socket);
        },
      };
    }
    case 'uws-raw': {
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
        publish: (text) => void app.publish(CHANNEL, text, false),
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
