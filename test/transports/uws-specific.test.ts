/**
 * What only the uWS transport has: the native-binary check, the heartbeat mapping, native topic publishing,
 * topic namespacing per transport, and never touching a closed uWS socket.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry, type Session } from '../../src/index.js';
import { uwsRemoteAddress } from '../../transports/uws-options.js';
import { assertNativeUws, isNativeUws, uwsHeartbeat, uwsTransport } from '../../transports/uws.js';
import { connect, Leftovers, next, upgradeStatus, within } from './clients.js';
import { listenUws } from './uws-harness.js';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('../..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

function run(args: string[], env: Record<string, string> = {}) {
  return within(
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        args,
        { cwd: root, env: { ...process.env, ...env } },
        (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
      );
    }),
    20_000,
    `node ${args.join(' ')}`,
  );
}

async function listen(app: uWS.TemplatedApp, registry: { close(): Promise<void> }): Promise<string> {
  const { socket, port } = await listenUws(app);
  leftovers.add(async () => {
    await registry.close();
    uWS.us_listen_socket_close(socket);
  });
  return `ws://127.0.0.1:${port}`;
}

describe('uWS native binary', () => {
  it('is the native binary that this process loaded', () => {
    expect(isNativeUws(uWS)).toBe(true);
    expect(isNativeUws(uWS.App())).toBe(true);
    expect(() => assertNativeUws(uWS)).not.toThrow();
    const loaded = Object.keys(require.cache);
    expect(loaded.some((p) => /uWebSockets\.js[/\\]binaries[/\\]uws_[^/\\]+\.node$/.test(p))).toBe(true);
    expect(loaded.some((p) => /uWebSockets\.js[/\\]dist[/\\]index\.js$/.test(p))).toBe(false);
  });

  it('flags the pure-JS fallback, and the transport refuses it', () => {
    const fallback = require('uWebSockets.js/dist/index.js') as typeof uWS;
    expect(isNativeUws(fallback)).toBe(false);
    const app = fallback.App();
    expect(isNativeUws(app)).toBe(false);
    expect(() => assertNativeUws(fallback)).toThrow(/not the native binary/);
    expect(isNativeUws({})).toBe(false);
    expect(isNativeUws(null)).toBe(false);
    const registry = new SessionRegistry();
    expect(() => uwsTransport(registry, { app })).toThrow(TypeError);
    expect(() => uwsTransport(registry, { app })).toThrow(/"app"/);
    expect(() => uwsTransport(registry, { app: {} as uWS.TemplatedApp })).toThrow(/"app"/);
  });

  it('flags a process where the package fell back (UWS_USE_FALLBACK=1), and the suite harness fails loudly there', async () => {
    const probe = [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      "import uWS from 'uWebSockets.js'; import { isNativeUws } from './transports/uws-native.ts';" +
        'console.log(JSON.stringify({ native: isNativeUws(uWS) }));',
    ];
    const native = await run(probe);
    expect(native.code).toBe(0);
    expect(JSON.parse(native.stdout.trim().split('\n').at(-1) ?? '')).toEqual({ native: true });
    const fallback = await run(probe, { UWS_USE_FALLBACK: '1' });
    expect(fallback.code).toBe(0);
    expect(fallback.stdout).toMatch(/fallback/);
    expect(JSON.parse(fallback.stdout.trim().split('\n').at(-1) ?? '')).toEqual({ native: false });

    const suiteChild = await run(['--import', 'tsx', 'test/transports/child-close.ts', 'uws'], {
      UWS_USE_FALLBACK: '1',
    });
    expect(suiteChild.code).not.toBe(0);
    expect(suiteChild.stderr).toMatch(/not the native binary/);
  }, 30_000);
});

describe('uWS transport module', () => {
  it('does not load uWebSockets.js itself: the user passes the app', async () => {
    const probe = await run([
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      "import { createRequire } from 'node:module'; const m = await import('./transports/uws.ts');" +
        "const loaded = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('uWebSockets'));" +
        'console.log(JSON.stringify({ exports: Object.keys(m).sort(), loaded }));',
    ]);
    expect(probe.code).toBe(0);
    expect(JSON.parse(probe.stdout.trim())).toEqual({
      exports: ['assertNativeUws', 'isNativeUws', 'uwsHeartbeat', 'uwsHeartbeatBound', 'uwsTransport'],
      loaded: [],
    });
  }, 30_000);
});

describe('uWS heartbeat mapping', () => {
  it('maps interval + timeout to idleTimeout in seconds: rounded up to a multiple of 4, at least 8', () => {
    expect(uwsHeartbeat(false)).toEqual({ idleTimeout: 0, sendPingsAutomatically: false });
    expect(uwsHeartbeat({ interval: 100, timeout: 100 })).toEqual({
      idleTimeout: 8,
      sendPingsAutomatically: true,
    });
    expect(uwsHeartbeat({ interval: 30_000, timeout: 10_000 }).idleTimeout).toBe(40);
    expect(uwsHeartbeat({ interval: 9000, timeout: 500 }).idleTimeout).toBe(12);
    expect(uwsHeartbeat({ interval: 8000, timeout: 1 }).idleTimeout).toBe(12);
    expect(uwsHeartbeat({ interval: 900_000, timeout: 56_000 }).idleTimeout).toBe(956);
    expect(() => uwsHeartbeat({ interval: 900_000, timeout: 57_000 })).toThrow(RangeError);
    const registry = new SessionRegistry();
    expect(() =>
      uwsTransport(registry, { app: uWS.App(), heartbeat: { interval: 1_000_000, timeout: 1000 } }),
    ).toThrow(/"heartbeat"/);
  });
});

describe('uWS remote address', () => {
  it('gives IPv4 peers of a dual-stack listener as IPv4, other addresses as uWS prints them', () => {
    expect(uwsRemoteAddress('0000:0000:0000:0000:0000:ffff:7f00:0001')).toBe('127.0.0.1');
    expect(uwsRemoteAddress('0000:0000:0000:0000:0000:FFFF:c0a8:01fe')).toBe('192.168.1.254');
    expect(uwsRemoteAddress('127.0.0.1')).toBe('127.0.0.1');
    expect(uwsRemoteAddress('0000:0000:0000:0000:0000:0000:0000:0001')).toBe(
      '0000:0000:0000:0000:0000:0000:0000:0001',
    );
  });
});

describe('uWS fan-out', () => {
  it('publishes one channel with one native app.publish, except-one with the socket publish, unions by loop', async () => {
    const registry = new SessionRegistry();
    const app = uWS.App();
    uwsTransport(registry, { app });
    const url = await listen(app, registry);
    let nativeCalls = 0;
    const publish = app.publish.bind(app);
    app.publish = (...args: Parameters<typeof app.publish>) => {
      nativeCalls++;
      return publish(...args);
    };
    const sessions: Session[] = [];
    registry.on('open', (s) => sessions.push(s));
    const a = await connect(leftovers, `${url}/n`);
    const b = await connect(leftovers, `${url}/n`);
    const c = await connect(leftovers, `${url}/m`);
    registry.publish('n', 'one');
    expect(nativeCalls).toBe(1);
    registry.publish('n', 'not-a', { except: sessions[0] });
    expect(nativeCalls).toBe(1);
    registry.publish(['n', 'm'], 'union');
    expect(nativeCalls).toBe(1);
    registry.publish('n', 'not-a-b', { except: [sessions[0] as Session, sessions[1] as Session] });
    expect(nativeCalls).toBe(1);
    registry.publish('m', 'm-only');
    expect(nativeCalls).toBe(2);
    await a.received(2);
    await b.received(3);
    await c.received(2);
    expect(a.messages).toEqual(['one', 'union']);
    expect(b.messages).toEqual(['one', 'not-a', 'union']);
    expect(c.messages).toEqual(['union', 'm-only']);
    expect(registry.stats()).toMatchObject({ published: 5, delivered: 7, dropped: 0 });
  });

  it('keeps transports and registries on one app apart (namespaced topics), with one shared 404', async () => {
    const app = uWS.App();
    const r1 = new SessionRegistry();
    const r2 = new SessionRegistry();
    uwsTransport(r1, { app, path: '/one/:channel' });
    uwsTransport(r2, { app, path: '/two/:channel' });
    const url = await listen(app, r1);
    leftovers.add(() => r2.close());
    const one = await connect(leftovers, `${url}/one/same`);
    const two = await connect(leftovers, `${url}/two/same`);
    r1.publish('same', 'for-one');
    r2.publish('same', 'for-two');
    r1.publish('same', 'end');
    r2.publish('same', 'end');
    await one.received(2);
    await two.received(2);
    expect(one.messages).toEqual(['for-one', 'end']);
    expect(two.messages).toEqual(['for-two', 'end']);
    expect(await upgradeStatus(`${url}/three/same`)).toBe(404);
    expect(r1.stats().rejected + r2.stats().rejected).toBe(1);
  });
});

describe('uWS: what an idle session holds', () => {
  it('no per-session copies of what its transport knows; the socket holds the session alone', async () => {
    const registry = new SessionRegistry();
    const app = uWS.App();
    uwsTransport(registry, { app });
    const url = await listen(app, registry);
    const opened = new Promise<Session>((r) => registry.once('open', r));
    await connect(leftovers, `${url}/n`);
    const session = await opened;
    const own = Object.getOwnPropertyNames(session);
    for (const name of ['transport', 'host', 'backpressure', 'congested', 'writing'])
      expect(own).not.toContain(name);
    expect(session.transport).toBe('uws');
    expect((session as unknown as { congested: boolean }).congested).toBe(false);
    // The upgrade's request (headers, query) is released once the session opened.
    const ws = (session as unknown as { ws: uWS.WebSocket<Record<string, unknown>> }).ws;
    expect(ws.getUserData()['pending']).toBeNull();
  });
});

describe('uWS closed sockets', () => {
  it('never touches a closed socket, whatever listeners do during close and fan-out', async () => {
    const registry = new SessionRegistry();
    const errors: Error[] = [];
    registry.on('error', (err) => errors.push(err));
    const app = uWS.App();
    uwsTransport(registry, { app, backpressure: { limit: 1, policy: 'close' } });
    const url = await listen(app, registry);
    const results: string[] = [];
    registry.on('close', (session) => {
      // Everything a listener might do with a session that is gone.
      results.push(session.send('late'));
      session.close(1000, 'again');
      session.terminate();
      results.push(String(session.bufferedAmount));
      registry.unsubscribe(session);
      expect(() => registry.subscribe(session, 'x')).toThrow(/not open/);
      if (!registry.closing) registry.publish('c', 'from-close-listener');
    });
    registry.on('message', (session, data) => {
      if (data === 'close-me') {
        session.close(4000, 'asked');
        results.push(session.send('after-close'));
      }
    });
    const clients = await Promise.all(Array.from({ length: 6 }, () => connect(leftovers, `${url}/c`)));
    // 1. A session closed from its own message handler.
    const first = next(registry, 'close');
    clients[0]?.ws.send('close-me');
    expect((await first)[1]).toBe(4000);
    // 2. A session destroyed by its peer.
    const second = next(registry, 'close');
    clients[1]?.socket.destroy();
    await second;
    // 3. Sessions closed by a listener in the middle of a native fan-out.
    registry.on('drop', (session) => session.close(4001, 'from-drop'));
    const third = next(registry, 'close', (_s, code) => code === 4001);
    clients[2]?.socket.pause();
    for (let i = 0; i < 2000 && registry.count('c') === 4; i++) {
      registry.publish('c', 'x'.repeat(64 * 1024));
      await new Promise((r) => setImmediate(r));
    }
    await third;
    // 4. The rest by registry.close(), with publishing listeners.
    await registry.close();
    expect(registry.count()).toBe(0);
    expect(errors.map((e) => e.message)).toEqual([]);
    expect(results.filter((r) => r !== 'closed' && r !== '0')).toEqual([]);
    expect(results.length).toBeGreaterThan(6);
  });
});
