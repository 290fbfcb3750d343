/**
 * The conformance suite: one set of behaviours every transport must show, over real sockets on 127.0.0.1
 * with real `ws` clients. A transport runs it with `defineTransportSuite(harness)`; where it cannot behave like
 * the others, its harness names the difference (see harness.ts) and the suite checks the documented behaviour.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, type ClientOptions } from 'ws';
import { HttpError, type Message, type Session, type SessionRegistry } from '../../src/index.js';
import { connect, connectMany, Leftovers, next, upgradeStatus, within, type Client } from './clients.js';
import type { StartOptions, Started, TransportUnderTest } from './harness.js';
import { defineDoorSecurityTests, defineDoorTests } from './suite-door.js';
import { defineStallTests } from './suite-stall.js';
import { defineSlowConsumerTests } from './suite-slow.js';
import { defineCrossNodeSlowTests } from './suite-slow-nodes.js';
import { defineTurnTests } from './suite-turns.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const childScript = fileURLToPath(new URL('./child-close.ts', import.meta.url));

export interface SuiteContext {
  readonly t: TransportUnderTest;
  readonly leftovers: Leftovers;
  start<TData = unknown>(options?: StartOptions): Promise<Started<TData>>;
  join<TData>(started: Started<TData>, path: string, options?: ClientOptions): Promise<Joined<TData>>;
}

export interface Joined<TData> {
  client: Client;
  session: Session<TData>;
}

/** Registers the conformance tests for one transport. */
export function defineTransportSuite(t: TransportUnderTest): void {
  describe(`transport conformance: ${t.name}`, () => {
    const leftovers = new Leftovers();
    afterEach(() => leftovers.dispose());

    const ctx: SuiteContext = {
      t,
      leftovers,
      async start<TData>(options?: StartOptions) {
        const started = await t.start<TData>(options);
        leftovers.add(() => started.close());
        return started;
      },
      // A client and its server-side session: the server registers a session before its 101 reaches the client.
      async join<TData>(started: Started<TData>, path: string, options?: ClientOptions) {
        const before = new Set(started.registry.sessions().map((s) => s.id));
        const client = await connect(leftovers, `${started.url}${path}`, options);
        const fresh = started.registry.sessions().filter((s) => !before.has(s.id));
        expect(fresh).toHaveLength(1);
        return { client, session: fresh[0] as Session<TData> };
      },
    };
    const { start, join } = ctx;

    it('emits open and close exactly once per session; close comes after the session left every channel', async () => {
      const s = await start();
      const opens = new Map<string, number>();
      const closes = new Map<
        string,
        { n: number; code: number; reason: string; channels: number; count: number }
      >();
      s.registry.on('open', (session) => opens.set(session.id, (opens.get(session.id) ?? 0) + 1));
      s.registry.on('close', (session, code, reason) => {
        const prev = closes.get(session.id);
        closes.set(session.id, {
          n: (prev?.n ?? 0) + 1,
          code,
          reason,
          channels: session.channels.size,
          count: s.registry.count('life'),
        });
      });
      const a = await join(s, '/life');
      const b = await join(s, '/life');
      const c = await join(s, '/life');
      expect(s.registry.count('life')).toBe(3);
      expect(a.session.transport).toBe(t.name);
      expect(a.session.state).toBe('open');

      // Closed by the client, by the server, and by the registry.
      const aClosed = next(s.registry, 'close', (x) => x.id === a.session.id);
      a.client.ws.close(4001, 'client bye');
      await aClosed;
      b.session.close(4002, 'server bye');
      b.session.close(4003, 'again'); // idempotent
      expect(await within(b.client.closed, 5000, 'b closed')).toEqual({ code: 4002, reason: 'server bye' });
      await s.close();
      expect(await within(c.client.closed, 5000, 'c closed')).toEqual({
        code: 1001,
        reason: 'server shutting down',
      });

      expect([...opens.values()]).toEqual([1, 1, 1]);
      expect(closes.get(a.session.id)).toEqual({
        n: 1,
        code: 4001,
        reason: 'client bye',
        channels: 0,
        count: 2,
      });
      expect(closes.get(b.session.id)).toMatchObject({
        n: 1,
        code: 4002,
        reason: 'server bye',
        channels: 0,
        count: 1,
      });
      expect(closes.get(c.session.id)).toMatchObject({ n: 1, code: 1001, channels: 0, count: 0 });
      expect(a.session.state).toBe('closed');
      expect(s.registry.stats()).toMatchObject({ sessions: 0, channels: 0, opened: 3 });
    });

    it('routes by path pattern with parameters; unknown paths get 404 before any upgrade', async () => {
      const s = await start({ transport: { path: ['/alarms/:channel', '/users/:user/feed'] } });
      const rejects: (number | string | null)[] = [];
      s.registry.on('reject', (request, status) => rejects.push(status, request?.path ?? null));
      const a = await join(s, '/alarms/zone-3?x=1');
      expect(a.session.params).toEqual({ channel: 'zone-3' });
      expect([...a.session.channels]).toEqual(['zone-3']);
      const b = await join(s, '/users/u%201/feed');
      expect(b.session.params).toEqual({ user: 'u 1' });
      expect([...b.session.channels]).toEqual(['/users/u%201/feed']);
      expect(b.session.remoteAddress).toBe('127.0.0.1');

      for (const path of ['/nope', '/alarms', '/alarms/a/b', '/users/u1']) {
        expect(await upgradeStatus(`${s.url}${path}`), path).toBe(404);
      }
      expect(rejects).toEqual([404, null, 404, null, 404, null, 404, null]);
      expect(s.registry.count()).toBe(2);
      expect(s.registry.stats()).toMatchObject({ opened: 2, rejected: 4 });
    });

    it('runs authenticate before the 101: data and channels on accept, its status on reject, nothing registered', async () => {
      const s = await start<{ user: string; header: string | undefined }>({
        transport: {
          path: '/a/:channel',
          authenticate: async (req: { query: URLSearchParams; headers: Record<string, string> }) => {
            const token = req.query.get('token');
            if (token === 'ok')
              return { data: { user: 'u1', header: req.headers['x-test'] }, channels: ['c1', 'c2'] };
            if (token === 'forbidden') throw new HttpError(403, 'no');
            if (token === 'busy') throw new HttpError(429);
            if (token === 'boom') throw new Error('boom');
            if (token === 'plain') return true;
            return false;
          },
        },
      });
      const errors: Error[] = [];
      s.registry.on('error', (err) => errors.push(err));
      const rejects: [string | null, number][] = [];
      s.registry.on('reject', (request, status) =>
        rejects.push([request?.query.get('token') ?? null, status]),
      );

      expect(await upgradeStatus(`${s.url}/a/x`)).toBe(401);
      expect(await upgradeStatus(`${s.url}/a/x?token=forbidden`)).toBe(403);
      expect(await upgradeStatus(`${s.url}/a/x?token=busy`)).toBe(429);
      expect(await upgradeStatus(`${s.url}/a/x?token=boom`)).toBe(500);
      expect(errors.map((e) => e.message)).toEqual(['boom']);
      expect(s.registry.stats()).toMatchObject({ opened: 0, sessions: 0, rejected: 4 });
      expect(rejects).toEqual([
        [null, 401],
        ['forbidden', 403],
        ['busy', 429],
        ['boom', 500],
      ]);

      const ok = await join(s, '/a/x?token=ok', { headers: { 'x-test': 'hello' } });
      expect(ok.session.data).toEqual({ user: 'u1', header: 'hello' });
      expect([...ok.session.channels].sort()).toEqual(['c1', 'c2']);
      const plain = await join(s, '/a/y?token=plain');
      expect(plain.session.data).toBeUndefined();
      expect([...plain.session.channels]).toEqual(['y']);
      expect(s.registry.count()).toBe(2);
    });

    it('registers nothing for a peer that leaves while authenticate runs, and refuses upgrades with 503 once closing', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const held: string[] = [];
      let heldCalled!: () => void;
      const heldNow = new Promise<void>((r) => (heldCalled = r));
      const s = await start({
        transport: {
          authenticate: async (req: { path: string }) => {
            if (req.path.startsWith('/held')) {
              held.push(req.path);
              heldCalled();
              await gate;
            }
            return {};
          },
        },
      });
      const opened: string[] = [];
      s.registry.on('open', (session) => opened.push([...session.channels][0] ?? ''));

      const gone = new WebSocket(`${s.url}/held-gone`);
      gone.on('error', () => {});
      await within(heldNow, 5000, 'authenticate to be called');
      gone.terminate();
      // A handshake that completes after the disconnect shows the server has seen it.
      await join(s, '/probe1');
      release();
      await join(s, '/probe2');
      expect(held).toEqual(['/held-gone']);
      expect(opened).toEqual(['probe1', 'probe2']);
      expect(s.registry.count()).toBe(2);

      // Closing while authenticate runs: 503, nothing registered.
      let release2!: () => void;
      const gate2 = new Promise<void>((r) => (release2 = r));
      let called2!: () => void;
      const calledNow2 = new Promise<void>((r) => (called2 = r));
      const s2 = await start({
        transport: {
          authenticate: async () => {
            called2();
            await gate2;
            return {};
          },
        },
      });
      const status = upgradeStatus(`${s2.url}/late`);
      await within(calledNow2, 5000, 'authenticate to be called');
      const closing = s2.registry.close();
      release2();
      expect(await status).toBe(503);
      await closing;
      expect(s2.registry.stats()).toMatchObject({ opened: 0, sessions: 0, rejected: 1 });
    });

    it('publishes to a channel, to several (once per session), with except, binary and JSON', async () => {
      const s = await start();
      const a1 = await join(s, '/alpha');
      const a2 = await join(s, '/alpha');
      const b1 = await join(s, '/beta');
      const b2 = await join(s, '/beta');
      const g = await join(s, '/gamma');
      s.registry.subscribe(a2.session, 'beta'); // a2 is in alpha and beta

      s.registry.publish('alpha', { n: 1 });
      s.registry.publish(['alpha', 'beta'], 'both');
      s.registry.publish('alpha', 'not-a1', { except: a1.session });
      s.registry.publish('beta', 'not-a2-b1', { except: [a2.session, b1.session] });
      s.registry.publish('beta', 'not-b2-by-id', { except: b2.session.id });
      s.registry.publish(['alpha', 'beta'], 'multi-not-a2', { except: a2.session });
      s.registry.publish('alpha', 'not-gamma', { except: g.session }); // an except from another channel
      s.registry.publish('alpha', Buffer.from([1, 2, 3]));
      expect(s.registry.send(b1.session, 'direct')).toMatch(/^(sent|queued)$/);
      s.registry.publish(['alpha', 'beta', 'gamma'], 'end');

      const expected: [Joined<unknown>, string[]][] = [
        [a1, ['{"n":1}', 'both', 'multi-not-a2', 'not-gamma', 'bin:010203', 'end']],
        [a2, ['{"n":1}', 'both', 'not-a1', 'not-b2-by-id', 'not-gamma', 'bin:010203', 'end']],
        [b1, ['both', 'not-b2-by-id', 'multi-not-a2', 'direct', 'end']],
        [b2, ['both', 'not-a2-b1', 'multi-not-a2', 'end']],
        [g, ['end']],
      ];
      for (const [j, messages] of expected) {
        await j.client.received(messages.length);
        expect(j.client.messages).toEqual(messages);
      }
      const total = expected.reduce((n, [, m]) => n + m.length, 0);
      expect(s.registry.stats()).toMatchObject({ published: 9, delivered: total, dropped: 0 });
    });

    it('keeps delivery order per session across every publish path', async () => {
      const s = await start();
      const c1 = await join(s, '/x');
      const c2 = await join(s, '/x');
      const c3 = await join(s, '/y');
      s.registry.subscribe(c2.session, 'y');
      const want = new Map<Joined<unknown>, string[]>([
        [c1, []],
        [c2, []],
        [c3, []],
      ]);
      const add = (value: string, ...to: Joined<unknown>[]) => to.forEach((j) => want.get(j)?.push(value));
      for (let i = 0; i < 400; i++) {
        const v = String(i);
        switch (i % 5) {
          case 0:
            s.registry.publish('x', v);
            add(v, c1, c2);
            break;
          case 1:
            s.registry.publish(['x', 'y'], v);
            add(v, c1, c2, c3);
            break;
          case 2:
            s.registry.publish('x', v, { except: c1.session });
            add(v, c2);
            break;
          case 3:
            s.registry.send(c3.session, v);
            add(v, c3);
            break;
          default:
            s.registry.publish('y', v);
            add(v, c2, c3);
        }
      }
      for (const [j, messages] of want) {
        await j.client.received(messages.length);
        expect(j.client.messages).toEqual(messages);
      }
    });

    it('delivers 100 messages to each of 1,000 sessions, in order, nothing lost', async () => {
      const s = await start();
      const clients = await connectMany(leftovers, `${s.url}/many`, 1000);
      expect(s.registry.count('many')).toBe(1000);
      const expected = Array.from({ length: 100 }, (_, i) => `m${i}`);
      for (const m of expected) s.registry.publish('many', m);
      await Promise.all(clients.map((c) => c.received(100, 60_000)));
      for (const c of clients) expect(c.messages).toEqual(expected);
      expect(s.registry.stats()).toMatchObject({ published: 100, delivered: 100_000, dropped: 0 });
    }, 120_000);

    it('removes a client destroyed without a close frame', async () => {
      const s = await start();
      const keep = await join(s, '/gone');
      const j = await join(s, '/gone');
      const closed = next(s.registry, 'close', (x) => x.id === j.session.id);
      j.client.socket.destroy();
      const [, code] = await closed;
      expect(code).toBe(1006);
      expect(s.registry.count('gone')).toBe(1);
      expect(s.registry.sessions('gone')).toEqual([keep.session]);
      s.registry.publish('gone', 'still here');
      await keep.client.received(1);
      expect(s.registry.stats()).toMatchObject({ delivered: 1, dropped: 0 });
    });

    it('removes a silent client (no pongs) within the heartbeat bound and keeps the answering one', async () => {
      const { interval, timeout } = t.heartbeat.options;
      // Without the documented rounding, the bound is the option's own promise.
      if (t.differences['heartbeat-rounded'] === undefined)
        expect(t.heartbeat.bound).toBe(interval + timeout);
      else expect(t.heartbeat.bound).toBeGreaterThanOrEqual(interval + timeout);
      const s = await start({ transport: { heartbeat: t.heartbeat.options } });
      const live = await join(s, '/hb');
      const silent = await join(s, '/hb', { autoPong: false });
      const closed = next(s.registry, 'close', (x) => x.id === silent.session.id, t.heartbeat.bound + 5000);
      const [, code] = await closed;
      expect(code).toBe(1006);
      expect(live.session.state).toBe('open');
      expect(s.registry.sessions('hb')).toEqual([live.session]);
    }, 60_000);

    const protocolCode = (code: number) =>
      t.differences['protocol-error-without-close-frame'] ? 1006 : code;

    it('closes on an oversized message with 1009 and passes one at the limit', async () => {
      const s = await start({ transport: { maxPayload: 1024 } });
      const j = await join(s, '/big');
      const inbound: [string | Buffer, boolean][] = [];
      s.registry.on('message', (_session, data, isBinary) => inbound.push([data, isBinary]));
      const atLimit = next(s.registry, 'message');
      j.client.ws.send('y'.repeat(1024));
      await atLimit;
      const closed = next(s.registry, 'close');
      j.client.ws.send('x'.repeat(1025));
      const [, code] = await closed;
      expect(code).toBe(1009);
      expect((await within(j.client.closed, 5000, 'client close')).code).toBe(protocolCode(1009));
      expect(inbound).toEqual([['y'.repeat(1024), false]]);
    });

    it('closes on invalid UTF-8 in a text message with 1007; text and binary arrive as such', async () => {
      const s = await start();
      const j = await join(s, '/utf8');
      const inbound: [string | Buffer, boolean][] = [];
      s.registry.on('message', (_session, data, isBinary) => inbound.push([data, isBinary]));
      const two = new Promise<void>((resolve) =>
        s.registry.on('message', () => inbound.length === 2 && resolve()),
      );
      j.client.ws.send('héllo');
      j.client.ws.send(Buffer.from([0xff, 0x00]));
      await within(two, 5000, 'two inbound messages');
      const closed = next(s.registry, 'close');
      j.client.ws.send(Buffer.from([0x68, 0xff, 0xfe]), { binary: false });
      const [, code] = await closed;
      expect(code).toBe(1007);
      expect((await within(j.client.closed, 5000, 'client close')).code).toBe(protocolCode(1007));
      expect(inbound).toEqual([
        ['héllo', false],
        [Buffer.from([0xff, 0x00]), true],
      ]);
    });

    defineStallTests(ctx);
    defineDoorTests(ctx);
    defineDoorSecurityTests(ctx);
    defineSlowConsumerTests(ctx);
    defineCrossNodeSlowTests(ctx);
    defineTurnTests(ctx);

    it('registry.close() closes every session with 1001 and resolves once they are gone', async () => {
      const s = await start();
      const clients = await connectMany(leftovers, `${s.url}/bye`, 20);
      const codes: number[] = [];
      s.registry.on('close', (_s, code) => codes.push(code));
      await s.registry.close();
      expect(s.registry.count()).toBe(0);
      expect(codes).toEqual(Array(20).fill(1001));
      const seen = await within(Promise.all(clients.map((c) => c.closed)), 5000, 'clients closed');
      expect(seen.map((c) => c.code)).toEqual(Array(20).fill(1001));
      expect(() => s.registry.publish('bye', 'late')).toThrow(/closed/);
    });

    it('leaves no open handle after registry.close() and the server close (a child process exits by itself)', async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', childScript, t.name], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      leftovers.add(() => child.exitCode === null && child.kill('SIGKILL'));
      const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const code = await within(exit, 20_000, `the child to exit by itself (stdout: ${out}; stderr: ${err})`);
      expect(err).not.toMatch(/Error/);
      expect(code).toBe(0);
      expect(JSON.parse(out)).toEqual({
        messages: Array(5).fill('hello'),
        codes: Array(5).fill(1001),
        sessions: 0,
      });
    }, 30_000);

    it('a session closed by a subscribe listener while it opens leaves no ghost in any channel', async () => {
      const s = await start({ transport: { authenticate: () => ({ channels: ['g1', 'g2', 'g3'] }) } });
      const events: string[] = [];
      s.registry.on('subscribe', (session, channel) => {
        events.push(`subscribe:${channel}`);
        if (channel === 'g1') session.close(4005, 'not now');
      });
      s.registry.on('open', () => events.push('open'));
      const closed = next(s.registry, 'close');
      s.registry.on('close', (session, code) => events.push(`close:${code}:${session.channels.size}`));
      const client = await connect(leftovers, `${s.url}/ghost`);
      await within(closed, 5000, 'close event');
      expect(await within(client.closed, 5000, 'client closed')).toMatchObject({ code: 4005 });
      expect(events.slice(0, 2)).toEqual(['subscribe:g1', 'open']);
      expect(events.filter((e) => e.startsWith('close:'))).toEqual(['close:4005:0']);
      expect(s.registry.channels()).toEqual([]);
      s.registry.publish(['g1', 'g2', 'g3'], 'after');
      expect(s.registry.stats()).toMatchObject({ sessions: 0, channels: 0, delivered: 0 });
    });

    it('throws on bad options, naming the option', async () => {
      const cases: [Record<string, unknown>, RegExp, ErrorConstructor][] = [
        [{ maxPayload: 0 }, /maxPayload/, RangeError],
        [{ maxPayload: 'big' }, /maxPayload/, TypeError],
        [{ heartbeat: { interval: 'x' } }, /heartbeat\.interval/, TypeError],
        [{ heartbeat: { every: 1 } }, /every/, TypeError],
        [{ backpressure: { policy: 'nope' } }, /backpressure\.policy/, TypeError],
        [{ backpressure: { limit: -1 } }, /backpressure\.limit/, RangeError],
        [{ backpressure: { closeCode: 1005 } }, /backpressure\.closeCode/, RangeError],
        [{ path: 'no-slash' }, /path/, TypeError],
        [{ authenticate: 5 }, /authenticate/, TypeError],
        [{ channels: 'a' }, /channels/, TypeError],
        [{ bogus: true }, /bogus/, TypeError],
        [{ origins: 5 }, /origins/, TypeError],
        [{ origins: ['example.com'] }, /origins/, TypeError],
        [{ origins: ['https://a.test/path'] }, /origins/, TypeError],
        [{ maxSessions: 0 }, /maxSessions/, RangeError],
        [{ maxSessionsPerAddress: 'x' }, /maxSessionsPerAddress/, TypeError],
        [{ addressHeader: 'no spaces' }, /addressHeader/, TypeError],
        [{ handshakeTimeout: 0 }, /handshakeTimeout/, RangeError],
      ];
      for (const [options, name, type] of cases) {
        const attempt = t.start({ transport: options });
        await expect(attempt, JSON.stringify(options)).rejects.toThrow(name);
        await expect(attempt).rejects.toBeInstanceOf(type);
      }
      await expect(t.start({ registry: { closeTimeout: -1 } })).rejects.toThrow(/closeTimeout/);
    });
  });
}

/** The sequence number a suite message starts with (`<n>:...`). */
export function seqOf(message: Message | string): number {
  const text = typeof message === 'string' ? message : String(message.data);
  return Number(text.slice(0, text.indexOf(':')));
}

export type { SessionRegistry };
