/**
 * Churn memory, run in a child process with --expose-gc by churn.test.ts: opens and closes ROUNDS x PER_ROUND
 * sessions on one transport (clients in this process too), publishing a little in every round, and prints the
 * heap after a forced GC at the end of every round as JSON.
 * Usage: node --expose-gc --import tsx test/model/churn-child.ts <ws|uws> [rounds] [perRound]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import uWS from 'uWebSockets.js';
import { WebSocket } from 'ws';
import { SessionRegistry, type Session } from '../../src/index.js';
import { assertNativeUws, uwsTransport } from '../../transports/uws.js';
import { wsTransport } from '../../transports/ws.js';
import { listenUws } from '../transports/uws-harness.js';

const transport = process.argv[2];
const ROUNDS = Number(process.argv[3] ?? 10);
const PER_ROUND = Number(process.argv[4] ?? 2000);
const CONCURRENCY = 200;
const PUBLISHES = 3;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

// The timer is cleared as soon as `p` settles: a pending one would keep the race's result (the clients of a
// round) alive for its whole duration.
function within<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

const registry = new SessionRegistry({ closeTimeout: 1000 });
registry.on('error', (err) => {
  process.stderr.write(`registry error: ${err.message}\n`);
  process.exitCode = 1;
});
let url: string;
let stop: () => Promise<void>;
if (transport === 'ws') {
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  wsTransport(registry, { server });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/churn`;
  stop = async () => {
    await registry.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
} else if (transport === 'uws') {
  assertNativeUws(uWS);
  const app = uWS.App();
  uwsTransport(registry, { app });
  const { socket: listen, port } = await listenUws(app);
  url = `ws://127.0.0.1:${port}/churn`;
  stop = async () => {
    await registry.close();
    uWS.us_listen_socket_close(listen);
  };
} else throw new Error(`unknown transport ${String(transport)}`);

interface Peer {
  ws: WebSocket;
  received: number;
  closed: Promise<void>;
}

function open(): Promise<Peer> {
  return new Promise<Peer>((resolve, reject) => {
    const ws = new WebSocket(url);
    const peer: Peer = {
      ws,
      received: 0,
      closed: new Promise<void>((r) => ws.once('close', () => r())),
    };
    ws.on('message', () => void peer.received++);
    ws.once('open', () => resolve(peer));
    ws.once('error', reject);
  });
}

async function round(r: number): Promise<void> {
  const sessions: Session[] = [];
  const onOpen = (s: Session) => void sessions.push(s);
  registry.on('open', onOpen);
  const peers: Peer[] = [];
  for (let i = 0; i < PER_ROUND; i += CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, PER_ROUND - i) }, open);
    peers.push(...(await within(Promise.all(batch), `round ${r}: connect`)));
  }
  await within(
    (async () => {
      while (registry.count() < PER_ROUND) await turn();
    })(),
    `round ${r}: ${PER_ROUND} open events`,
  );
  registry.off('open', onOpen);
  for (let i = 0; i < PUBLISHES; i++) registry.publish('churn', { round: r, i, pad: 'x'.repeat(100 * i) });
  await within(
    (async () => {
      while (peers.some((p) => p.received < PUBLISHES)) await turn();
    })(),
    `round ${r}: every client receiving ${PUBLISHES} messages`,
  );
  // Every way a session ends: the client closes, the client drops the connection, the server closes.
  sessions.forEach((s, i) => {
    if (i % 4 === 2) s.close(1000, 'churn');
    else if (i % 4 === 3) s.terminate();
  });
  peers.forEach((p, i) => {
    if (i % 4 === 0) p.ws.close(1000);
    else if (i % 4 === 1) p.ws.terminate();
  });
  await within(Promise.all(peers.map((p) => p.closed)), `round ${r}: clients closed`);
  await within(
    (async () => {
      while (registry.count() > 0) await turn();
    })(),
    `round ${r}: registry empty`,
  );
}

const heap: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  await round(r);
  // Let sockets finish closing, then collect twice (weak references and finalizers need a second pass).
  for (let i = 0; i < 10; i++) await turn();
  gc();
  await turn();
  gc();
  heap.push(process.memoryUsage().heapUsed);
}
const stats = registry.stats();
await stop();
process.stdout.write(
  JSON.stringify({
    transport,
    rounds: ROUNDS,
    perRound: PER_ROUND,
    heap,
    opened: stats.opened,
    delivered: stats.delivered,
  }) + '\n',
);
