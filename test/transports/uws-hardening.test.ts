/**
 * Regression tests for the uWS transport's congestion bookkeeping (issue 8: a publish that spun forever, closed
 * sessions kept alive by the check queue, a drop counted on top of a delivery), the heartbeat with any timeout
 * (issue 14), and the upgrades uWS does not route to its WebSocket handlers.
 *
 * Where a buffered amount must take one exact value, the test replaces `getBufferedAmount` on the real uWS
 * socket of a real connection (everything else stays real): a real stalled socket reaches such values only by
 * chance.
 */
import { execFile } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry, type RegistryOptions, type Session } from '../../src/index.js';
import { uwsTransport } from '../../transports/uws.js';
import { connect, Leftovers, next, within } from './clients.js';
import { listenUws } from './uws-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

type Behavior = uWS.WebSocketBehavior<unknown> & {
  dropped?: (ws: uWS.WebSocket<unknown>, data: ArrayBuffer, isBinary: boolean) => void;
};

/** A registry with a uWS transport on 127.0.0.1, port 0; `behaviors` are what the transport gave `app.ws`. */
async function start(options?: RegistryOptions) {
  const registry = new SessionRegistry(options);
  const errors: unknown[] = [];
  registry.on('error', (err) => errors.push(err));
  const app = uWS.App();
  const behaviors: Behavior[] = [];
  // A Proxy keeps app.ws a native function for the transport's native-binary check.
  app.ws = new Proxy(app.ws, {
    apply(target, self, args: Parameters<typeof app.ws>) {
      behaviors.push(args[1] as Behavior);
      return Reflect.apply(target, self, args) as uWS.TemplatedApp;
    },
  });
  uwsTransport(registry, { app });
  const { socket: listenSocket, port } = await listenUws(app);
  leftovers.add(async () => {
    await registry.close();
    uWS.us_listen_socket_close(listenSocket);
  });
  return { registry, errors, behaviors, port, url: `ws://127.0.0.1:${port}` };
}

/** A real client and the server's session for it, with the session's real uWS socket. */
async function join(registry: SessionRegistry, url: string) {
  const opened = next(registry, 'open');
  const client = await connect(leftovers, url);
  const [session] = await opened;
  const socket = (session as unknown as { ws: uWS.WebSocket<unknown> }).ws;
  return { client, session, socket };
}

describe('uWS congestion: one publish is bounded', () => {
  it('reads a session at most once per publish when its buffered bytes equal the limit exactly', async () => {
    const limit = 4096;
    // The soft limit at the limit: congestion starts there (past the soft limit a session takes the per-session
    // path, which reads its buffer before and after each send), so "exactly at it" is exactly this threshold.
    const { registry, url, errors } = await start({ backpressure: { limit, softLimit: limit } });
    const { client, socket } = await join(registry, `${url}/spin`);
    const real = socket.getBufferedAmount.bind(socket);
    let reads = 0;
    // Exactly the limit; after 100,000 reads the real value, so that a spinning publish still ends.
    socket.getBufferedAmount = () => (++reads > 100_000 ? real() : limit);
    const perPublish: number[] = [];
    const payload = 'x'.repeat(limit);
    for (let i = 0; i < 5; i++) {
      const before = reads;
      registry.publish('spin', `${i}:${payload}`);
      perPublish.push(reads - before);
    }
    expect(Math.max(...perPublish)).toBeLessThanOrEqual(1);
    // Exactly at the limit is not past it: everything is delivered.
    await client.received(5);
    expect(registry.stats()).toMatchObject({ published: 5, delivered: 5, dropped: 0 });
    expect(errors).toEqual([]);
  });

  it('reads each session at most once per publish whatever the buffered value (under, at, over the limit)', async () => {
    const limit = 1000;
    const { registry, url, errors } = await start({ backpressure: { limit, policy: 'drop' } });
    const members = await Promise.all([0, 1, 2].map(() => join(registry, `${url}/many`)));
    let reads = 0;
    // Values around the limit, different per session and changing with every read.
    const values = [0, 1, limit - 11, limit - 1, limit, limit, limit + 1, 2 * limit];
    members.forEach(({ socket }, k) => {
      let n = k;
      socket.getBufferedAmount = () => {
        reads++;
        return values[n++ % values.length] as number;
      };
    });
    const perPublish: number[] = [];
    for (let i = 0; i < 60; i++) {
      const before = reads;
      registry.publish('many', 'y'.repeat(1 + ((i * 37) % (2 * limit))));
      perPublish.push(reads - before);
    }
    // A scheduled look plus, for a congested session, deliver()'s own read: never more than two per session.
    expect(Math.max(...perPublish)).toBeLessThanOrEqual(2 * members.length);
    const s = registry.stats();
    expect(s.delivered + s.dropped, JSON.stringify(s)).toBe(60 * members.length);
    expect(errors).toEqual([]);
  });
});

describe('uWS congestion: closing releases everything', () => {
  it('keeps the heap flat over 15,000 sessions opened and closed under light traffic', async () => {
    const result = await within(
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--expose-gc', '--import', 'tsx', 'test/transports/uws-churn-child.ts'],
          {
            cwd: root,
            env: { ...process.env, CHURN_ROUNDS: '10', CHURN_PER_ROUND: '1500', CHURN_DATA_CHARS: '512' },
          },
          (err, stdout, stderr) =>
            resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
        );
      }),
      90_000,
      'the churn child process',
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { heaps, sessions, published } = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as {
      heaps: number[];
      sessions: number;
      published: number;
    };
    expect(heaps).toHaveLength(10);
    expect(sessions).toBe(0);
    expect(published).toBe(30);
    // Before, every closed session stayed reachable with its data (+12 MB over these rounds): now none does.
    const first = heaps[0] as number;
    const growth = Math.max(...heaps.slice(1)) - first;
    expect(growth, `heap after each round: ${heaps.join(', ')}`).toBeLessThan(2 * 1024 * 1024);
  }, 100_000);
});

describe('uWS dropped callback: every message is delivered or dropped, once', () => {
  it('moves a message a native publish counted as delivered to dropped when the build reports it dropped', async () => {
    const { registry, url, behaviors, errors } = await start();
    const { client, socket, session } = await join(registry, `${url}/d`);
    const drops: [Session, string][] = [];
    registry.on('drop', (s, reason) => drops.push([s, reason]));
    registry.publish('d', 'one');
    await client.received(1);
    expect(registry.stats()).toMatchObject({ delivered: 1, dropped: 0 });
    const dropped = behaviors[0]?.dropped;
    expect(typeof dropped).toBe('function');
    // What a build with a dropped callback reports for that message.
    dropped?.(socket, new TextEncoder().encode('one').buffer as ArrayBuffer, false);
    expect(registry.stats()).toMatchObject({
      delivered: 0,
      bytesDelivered: 0,
      dropped: 1,
      droppedBy: { backpressure: 1, closed: 0, error: 0 },
    });
    expect(drops).toEqual([[session, 'backpressure']]);
    expect(errors).toEqual([]);
  });

  it('counts a direct send that the build drops (and reports) once', async () => {
    const { registry, url, behaviors, errors } = await start();
    const { socket } = await join(registry, `${url}/d`);
    const dropped = behaviors[0]?.dropped;
    // A build with maxBackpressure reached: send() calls the dropped callback, then returns DROPPED (2).
    socket.send = (data: uWS.RecognizedString, isBinary?: boolean) => {
      dropped?.(socket, new Uint8Array(Buffer.from(data as string)).buffer, isBinary ?? false);
      return 2;
    };
    const sessions = registry.sessions('d');
    expect(sessions[0]?.send('two')).toBe('dropped');
    expect(registry.stats()).toMatchObject({ delivered: 0, dropped: 1, droppedBy: { backpressure: 1 } });
    expect(errors).toEqual([]);
  });
});

describe('uWS heartbeat: no healthy client is cut off (issue 14)', () => {
  it('keeps idle clients that answer pings, for a timeout shorter than, equal to and longer than the interval', async () => {
    // uWS has one native timer per socket that pings and then judges the answer; any frame received restarts
    // it. So no stale check can condemn a client that answered, whatever the two options say.
    const cases = [
      { interval: 2000, timeout: 1000 },
      { interval: 2000, timeout: 2000 },
      { interval: 1000, timeout: 3000 },
    ];
    const started = await Promise.all(
      cases.map(async (heartbeat) => {
        const registry = new SessionRegistry();
        registry.on('error', () => {});
        const app = uWS.App();
        uwsTransport(registry, { app, heartbeat });
        const { socket: listenSocket, port } = await listenUws(app);
        leftovers.add(async () => {
          await registry.close();
          uWS.us_listen_socket_close(listenSocket);
        });
        const closes: number[] = [];
        registry.on('close', (_s, code) => closes.push(code));
        const url = `ws://127.0.0.1:${port}/hb`;
        const clients = await Promise.all([0, 1, 2].map(() => connect(leftovers, url)));
        return { registry, closes, clients };
      }),
    );
    // Two pings each: the first one's deadline passed with the client answering, and it was pinged again.
    await within(
      Promise.all(
        started.flatMap(({ clients }) =>
          clients.map(
            (c) =>
              new Promise<void>((resolve) => {
                let pings = 0;
                c.ws.on('ping', () => {
                  if (++pings === 2) resolve();
                });
              }),
          ),
        ),
      ),
      30_000,
      'two pings to every client',
    );
    for (const { registry, closes, clients } of started) {
      expect(closes).toEqual([]);
      expect(registry.stats().sessions).toBe(3);
      for (const c of clients) expect(c.ws.readyState).toBe(c.ws.OPEN);
    }
  }, 40_000);
});

describe('uWS upgrades that uWS does not route', () => {
  it('answers an upgrade with a malformed key itself and passes every other request on to the app routes', async () => {
    const registry = new SessionRegistry();
    const app = uWS.App();
    uwsTransport(registry, { app });
    // The app's own catch-all, registered after the transport.
    app.any('/*', (res) => void res.end('app route'));
    const { socket: listenSocket, port } = await listenUws(app);
    leftovers.add(async () => {
      await registry.close();
      uWS.us_listen_socket_close(listenSocket);
    });
    const rejects: [string | null, number][] = [];
    registry.on('reject', (request, status) => rejects.push([request?.path ?? null, status]));
    // Plain requests, on a path the transport owns and on one it does not, reach the app's route.
    for (const path of ['/alarms', '/a/b/c']) {
      const res = await within(fetch(`http://127.0.0.1:${port}${path}`), 10_000, `GET ${path}`);
      expect([res.status, await res.text()]).toEqual([200, 'app route']);
    }
    // An upgrade with a short key: 400 from the transport that owns the path (counted), 404 elsewhere.
    const ask = (path: string) =>
      within(
        new Promise<string>((resolve, reject) => {
          const socket = tcpConnect(port, '127.0.0.1');
          let text = '';
          socket.setEncoding('latin1');
          socket.on('data', (chunk: string) => {
            text += chunk;
            if (text.includes('\r\n')) {
              socket.destroy();
              resolve(text.slice(0, text.indexOf('\r\n')));
            }
          });
          socket.on('error', reject);
          socket.on('close', () => resolve(text));
          socket.write(
            `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              'Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n',
          );
        }),
        10_000,
        `an upgrade of ${path}`,
      );
    expect(await ask('/alarms')).toBe('HTTP/1.1 400 Bad Request');
    expect(await ask('/a/b/c')).toBe('HTTP/1.1 404 Not Found');
    expect(rejects).toEqual([
      ['/alarms', 400],
      [null, 404],
    ]);
    expect(registry.stats()).toMatchObject({ rejected: 2, opened: 0 });
  });
});
