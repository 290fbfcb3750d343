/**
 * Time to recover a deploy's worth of clients: `--clients` clients (default 1,000) on one stream channel lose
 * their connection, `--missed` messages (default 100) are published while they are away, then all of them
 * reconnect at once with their last position. Measured: from the first reconnect attempt until every client
 * has received its `rec` frame after exactly the messages it missed (checked, not assumed).
 *
 *   npm run bench:recovery -- [--clients 1000] [--missed 100] [--size 256] [--transport ws|uws]
 *                              [--history memory|redis|nats] [--repeat 3]
 *
 * Server and clients share this process (the clients are plain `ws` sockets), on 127.0.0.1 port 0.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { us_listen_socket } from 'uWebSockets.js';
import { WebSocket } from 'ws';
import { SessionRegistry, memoryHistory, type History } from '../src/index.js';

interface Options {
  clients: number;
  missed: number;
  size: number;
  transport: 'ws' | 'uws';
  history: 'memory' | 'redis' | 'nats';
  repeat: number;
}

function parse(argv: readonly string[]): Options {
  const o: Options = { clients: 1000, missed: 100, size: 256, transport: 'ws', history: 'memory', repeat: 3 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[++i];
    const int = (min: number, max: number) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`${key} must be ${min}..${max}`);
      return n;
    };
    if (key === '--clients') o.clients = int(1, 10_000);
    else if (key === '--missed') o.missed = int(1, 100_000);
    else if (key === '--size') o.size = int(1, 1_000_000);
    else if (key === '--repeat') o.repeat = int(1, 20);
    else if (key === '--transport' && (value === 'ws' || value === 'uws')) o.transport = value;
    else if (key === '--history' && (value === 'memory' || value === 'redis' || value === 'nats'))
      o.history = value;
    else throw new TypeError(`Unknown option or value: ${key} ${value ?? ''}`);
  }
  return o;
}

interface Server {
  registry: SessionRegistry;
  url: string;
  close(): Promise<void>;
}

async function serve(o: Options, history: History): Promise<Server> {
  const registry = new SessionRegistry({
    streams: { channels: 'alarms', history },
    backpressure: { limit: 64 * 1024 * 1024 },
  });
  registry.on('error', (err) => console.error('server error:', err.message));
  if (o.transport === 'ws') {
    const { wsTransport } = await import('../transports/ws.js');
    const server = http.createServer();
    wsTransport(registry, { server, path: '/:channel', heartbeat: false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      registry,
      url: `ws://127.0.0.1:${port}/alarms`,
      close: async () => {
        await registry.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }
  const { default: uWS } = await import('uWebSockets.js');
  const { uwsTransport } = await import('../transports/uws.js');
  const app = uWS.App();
  uwsTransport(registry, { app, path: '/:channel', heartbeat: false });
  const socket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s === false ? reject(new Error('uWS cannot listen')) : resolve(s))),
  );
  return {
    registry,
    url: `ws://127.0.0.1:${uWS.us_socket_local_port(socket)}/alarms`,
    close: async () => {
      await registry.close();
      uWS.us_listen_socket_close(socket);
    },
  };
}

/** Opens one client; resolves with its socket once `onFrame` returns true (it may throw to fail the run). */
function open(url: string, onFrame: (text: string) => boolean): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on('message', (data) => {
      if (onFrame(String(data))) resolve(ws);
    });
    ws.once('error', reject);
    ws.once('close', () => reject(new Error('closed before it was done')));
  });
}

async function once(o: Options, history: History): Promise<number> {
  const s = await serve(o, history);
  try {
    // Everyone joins and learns the current position.
    let epoch = '';
    let offset = 0;
    const first = await Promise.all(
      Array.from({ length: o.clients }, () =>
        open(s.url, (text) => {
          const h = JSON.parse(text.slice(1, text.indexOf('\n') === -1 ? undefined : text.indexOf('\n')));
          if (h[1] !== 'sub') return false;
          epoch = h[3];
          offset = h[4];
          return true;
        }),
      ),
    );
    for (const ws of first) ws.terminate();
    while (s.registry.count('alarms') > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const payload = 'x'.repeat(o.size);
    for (let i = 0; i < o.missed; i++) s.registry.publish('alarms', payload);
    // Wait until the history has them all (asynchronous with Redis).
    for (let i = 0; i < 1000; i++) {
      const read = await history.read('alarms', null);
      if (read.position !== null && read.position.offset === offset + o.missed) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const since = `${s.url}?since=${encodeURIComponent(`${epoch}:${offset}:alarms`)}`;
    const start = performance.now();
    const back = await Promise.all(
      Array.from({ length: o.clients }, () => {
        let data = 0;
        return open(since, (text) => {
          if (text.startsWith('\u001e[1,"m",')) {
            data++;
            return false;
          }
          if (!text.startsWith('\u001e[1,"rec",')) throw new Error(`not recovered: ${text}`);
          if (data !== o.missed) throw new Error(`recovered ${data} of ${o.missed}`);
          return true;
        });
      }),
    );
    const ms = performance.now() - start;
    for (const ws of back) ws.terminate();
    return ms;
  } finally {
    await s.close();
  }
}

const o = parse(process.argv.slice(2));
const times: number[] = [];
let redis: {
  disconnect(): void;
  keys(p: string): Promise<string[]>;
  del(...k: string[]): Promise<number>;
} | null = null;
let cleanup: (() => Promise<void>) | null = null;
for (let r = 0; r < o.repeat; r++) {
  let history: History;
  const prefix = `bench-recovery-${randomUUID()}:`;
  if (o.history === 'redis') {
    const { Redis } = await import('ioredis');
    const client = new Redis({ host: '127.0.0.1', port: 6379 });
    redis = client;
    const { redisHistory } = await import('../brokers/redis-history.js');
    history = redisHistory({ client, prefix, size: Math.max(100, o.missed), timeout: 30_000 });
  } else if (o.history === 'nats') {
    const { connect } = await import('@nats-io/transport-node');
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const { natsHistory } = await import('../brokers/nats-history.js');
    const nc = await connect({ servers: '127.0.0.1:4222' });
    const manager = await jetstreamManager(nc);
    const stream = `BENCH_RECOVERY_${randomUUID().replaceAll('-', '')}`;
    history = natsHistory({
      manager,
      stream,
      prefix: `${stream}.`,
      size: Math.max(100, o.missed),
      timeout: 30_000,
    });
    cleanup = async () => {
      await manager.streams.delete(stream).catch(() => false);
      await nc.close();
    };
  } else history = memoryHistory({ size: Math.max(100, o.missed) });
  try {
    times.push(await once(o, history));
  } finally {
    if (redis !== null) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      redis = null;
    }
    await cleanup?.();
    cleanup = null;
  }
}
const best = Math.min(...times);
console.log(
  `recovery: ${o.clients} clients x ${o.missed} missed messages of ${o.size} B, ${o.transport} transport, ` +
    `${o.history} history`,
);
console.log(`  each run (ms): ${times.map((t) => t.toFixed(0)).join(', ')}`);
console.log(
  `  best: ${best.toFixed(0)} ms for all ${o.clients} to be recovered ` +
    `(${Math.round(o.clients / (best / 1000))} recoveries/s, ` +
    `${Math.round((o.clients * o.missed) / (best / 1000))} replayed messages/s)`,
);
