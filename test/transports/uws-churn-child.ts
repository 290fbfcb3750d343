/**
 * Child process for the uWS churn-memory test (run with --expose-gc): opens and closes ROUNDS x PER_ROUND
 * sessions on one uWS transport under light traffic (a few small publishes per round), and prints the heap
 * used after a forced GC at the end of every round as one JSON line. Each session's `data` is a unique string
 * of CHURN_DATA_CHARS characters.
 */
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, type Socket } from 'node:net';
import uWS from 'uWebSockets.js';
import { SessionRegistry } from '../../src/index.js';
import { assertNativeUws, uwsTransport } from '../../transports/uws.js';
import { listenUws } from './uws-harness.js';

const ROUNDS = Number(process.env['CHURN_ROUNDS'] ?? 12);
const PER_ROUND = Number(process.env['CHURN_PER_ROUND'] ?? 2500);
// What each session holds as its data (a unique string of this many characters): a closed session kept
// reachable keeps its data too, so this makes a leak visible with fewer sessions.
const DATA_CHARS = Number(process.env['CHURN_DATA_CHARS'] ?? 0);
// Connections opened at once: well under the listen backlog, so no SYN waits for a retry.
const CONCURRENCY = 200;
const STEP_MS = 20_000;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function deadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A bare WebSocket handshake over TCP: cheap on the client side, so the server's heap is what moves. */
function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let head = '';
    socket.setEncoding('latin1');
    socket.once('error', reject);
    socket.once('connect', () =>
      socket.write(
        'GET /churn HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      ),
    );
    const onData = (chunk: string) => {
      head += chunk;
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      // Whatever arrives later (published frames) is read and ignored.
      socket.on('data', () => {});
      if (head.startsWith('HTTP/1.1 101')) resolve(socket);
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    };
    socket.on('data', onData);
  });
}

async function settle(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setImmediate(r));
    gc?.();
  }
  return process.memoryUsage().heapUsed;
}

async function main(): Promise<void> {
  assertNativeUws(uWS);
  const registry = new SessionRegistry();
  registry.on('error', (err) => {
    throw err;
  });
  const app = uWS.App();
  uwsTransport(registry, {
    app,
    authenticate: () => ({ data: DATA_CHARS > 0 ? randomBytes(DATA_CHARS / 2).toString('hex') : undefined }),
  });
  const { socket: listenSocket, port } = await listenUws(app);
  let opened = 0;
  let closed = 0;
  let waiter: (() => void) | null = null;
  const check = () => waiter?.();
  registry.on('open', () => {
    opened++;
    check();
  });
  registry.on('close', () => {
    closed++;
    check();
  });
  const until = (cond: () => boolean, what: string) =>
    deadline(
      new Promise<void>((resolve) => {
        if (cond()) return resolve();
        waiter = () => {
          if (!cond()) return;
          waiter = null;
          resolve();
        };
      }),
      what,
    );

  const heaps: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const sockets: Socket[] = [];
    for (let i = 0; i < PER_ROUND; i += CONCURRENCY) {
      const batch = Math.min(CONCURRENCY, PER_ROUND - i);
      sockets.push(
        ...(await deadline(Promise.all(Array.from({ length: batch }, () => open(port))), 'connect')),
      );
    }
    const target = (round + 1) * PER_ROUND;
    await until(() => opened === target, 'open events');
    // Light traffic: a few small publishes per round, far below the backpressure limit in bytes.
    for (let i = 0; i < 3; i++) registry.publish('/churn', `round ${round} message ${i}`);
    // A reset, not a FIN: no TIME_WAIT left on this machine's ephemeral ports.
    for (const socket of sockets) socket.resetAndDestroy();
    await until(() => closed === target, 'close events');
    heaps.push(await settle());
  }
  const stats = registry.stats();
  await registry.close();
  uWS.us_listen_socket_close(listenSocket);
  console.log(JSON.stringify({ heaps, sessions: stats.sessions, published: stats.published }));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
