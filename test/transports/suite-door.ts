/**
 * The door: what every transport refuses before the 101, through the core's one upgrade decision (the transport
 * kit's UpgradeGate): handshake checks, origin, caps, a bounded authenticate. Raw requests over real sockets.
 */
import { expect, it } from 'vitest';
import { next, rawUpgrade, upgradeStatus, within } from './clients.js';
import type { SuiteContext } from './suite.js';

export function defineDoorTests(ctx: SuiteContext): void {
  const { start } = ctx;

  it('checks the handshake before the hooks: 426 with Sec-WebSocket-Version: 13, 400 for a bad key; counted', async () => {
    let hooks = 0;
    const s = await start({
      transport: {
        authenticate: () => {
          hooks++;
          return true;
        },
      },
    });
    const rejects: [string | null, number][] = [];
    s.registry.on('reject', (request, status) => rejects.push([request?.path ?? null, status]));
    const v99 = await rawUpgrade(`${s.url}/v99`, { 'Sec-WebSocket-Version': '99' });
    expect(v99.status).toBe(426);
    expect(v99.headers['sec-websocket-version']).toBe('13');
    expect((await rawUpgrade(`${s.url}/v8`, { 'Sec-WebSocket-Version': '8' })).status).toBe(426);
    const unanswered = ctx.t.differences['handshake-key-closed-unanswered'] !== undefined;
    for (const key of [null, 'short']) {
      const status = (await rawUpgrade(`${s.url}/badkey`, { 'Sec-WebSocket-Key': key })).status;
      expect(status).toBe(unanswered ? 0 : 400);
    }
    const ok = await rawUpgrade(`${s.url}/fine`);
    expect(ok.status).toBe(101);
    expect(hooks).toBe(1);
    const badKeys: [string, number][] = unanswered
      ? []
      : [
          ['/badkey', 400],
          ['/badkey', 400],
        ];
    expect(rejects).toEqual([['/v99', 426], ['/v8', 426], ...badKeys]);
    expect(s.registry.stats()).toMatchObject({ rejected: 2 + badKeys.length, opened: 1 });
  });
}

export function defineDoorSecurityTests(ctx: SuiteContext): void {
  const { start, join } = ctx;

  it('origin: same-origin and Origin-less upgrades pass, a foreign or opaque Origin gets 403 (counted, reject)', async () => {
    const s = await start();
    const rejects: [string | null, number][] = [];
    s.registry.on('reject', (request, status) => rejects.push([request?.headers['origin'] ?? null, status]));
    const own = `http://${new URL(s.url).host}`;
    expect((await rawUpgrade(`${s.url}/none`)).status).toBe(101);
    expect((await rawUpgrade(`${s.url}/same`, { Origin: own })).status).toBe(101);
    expect((await rawUpgrade(`${s.url}/same-https`, { Origin: own.replace('http:', 'https:') })).status).toBe(
      101,
    );
    expect((await rawUpgrade(`${s.url}/foreign`, { Origin: 'https://evil.example' })).status).toBe(403);
    expect((await rawUpgrade(`${s.url}/port`, { Origin: `${own}1` })).status).toBe(403);
    expect((await rawUpgrade(`${s.url}/opaque`, { Origin: 'null' })).status).toBe(403);
    // A browser client (ws sends Origin when asked to) from another site is refused before the 101.
    expect(await upgradeStatus(`${s.url}/ws`, { Origin: 'https://evil.example' })).toBe(403);
    expect(rejects).toEqual([
      ['https://evil.example', 403],
      [`${own}1`, 403],
      ['null', 403],
      ['https://evil.example', 403],
    ]);
    expect(s.registry.stats()).toMatchObject({ rejected: 4, opened: 3 });
  });

  it('origin: the origins option allows exact origins, wildcard subdomains and a function decides', async () => {
    const s = await start({ transport: { origins: ['https://app.test', 'https://*.example.com'] } });
    const status = async (origin: string) => (await rawUpgrade(`${s.url}/o`, { Origin: origin })).status;
    expect(await status('https://app.test')).toBe(101);
    expect(await status('https://APP.test:443')).toBe(101);
    expect(await status('http://app.test')).toBe(403);
    expect(await status('https://a.example.com')).toBe(101);
    expect(await status('https://a.b.example.com')).toBe(101);
    expect(await status('https://example.com')).toBe(403);
    expect(await status('https://badexample.com')).toBe(403);
    expect(await status('https://a.example.com:8443')).toBe(403);

    const seen: string[] = [];
    const f = await start({
      transport: {
        origins: (origin: string, request: { path: string }) => {
          seen.push(`${origin} ${request.path}`);
          if (origin === 'https://boom.test') throw new Error('origin hook failed');
          return origin === 'https://fn.test';
        },
      },
    });
    const errors: string[] = [];
    f.registry.on('error', (err) => errors.push(err.message));
    expect((await rawUpgrade(`${f.url}/f`, { Origin: 'https://fn.test' })).status).toBe(101);
    expect((await rawUpgrade(`${f.url}/f`, { Origin: 'https://other.test' })).status).toBe(403);
    expect((await rawUpgrade(`${f.url}/f`, { Origin: 'https://boom.test' })).status).toBe(500);
    expect((await rawUpgrade(`${f.url}/f`, { Origin: `http://${new URL(f.url).host}` })).status).toBe(101);
    expect(seen).toEqual(['https://fn.test /f', 'https://other.test /f', 'https://boom.test /f']);
    expect(errors).toEqual(['origin hook failed']);
    expect(f.registry.stats()).toMatchObject({ rejected: 2 });
  });

  it('caps: past maxSessions 503, past maxSessionsPerAddress 429 (address from the trusted header); released on close', async () => {
    const s = await start({ transport: { maxSessions: 3 } });
    const a = await join(s, '/cap');
    await join(s, '/cap');
    await join(s, '/cap');
    expect(await upgradeStatus(`${s.url}/cap`)).toBe(503);
    const closed = next(s.registry, 'close', (x) => x.id === a.session.id);
    a.client.ws.close();
    await closed;
    await join(s, '/cap');
    expect(await upgradeStatus(`${s.url}/cap`)).toBe(503);
    expect(s.registry.stats()).toMatchObject({ rejected: 2, opened: 4, sessions: 3 });

    const p = await start({ transport: { maxSessionsPerAddress: 2, addressHeader: 'X-Forwarded-For' } });
    const rejects: [string | undefined, number, string][] = [];
    p.registry.on('reject', (request, status, reason) =>
      rejects.push([request?.remoteAddress, status, reason]),
    );
    const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
    const x1 = await join(p, '/per', from('10.0.0.1'));
    expect(x1.session.remoteAddress).toBe('10.0.0.1');
    await join(p, '/per', from('10.0.0.1'));
    // The client's own entries come first and are not trusted: the proxy's (last) entry counts.
    expect(await upgradeStatus(`${p.url}/per`, { 'x-forwarded-for': '10.0.0.9, 10.0.0.1' })).toBe(429);
    expect(await upgradeStatus(`${p.url}/per`, { 'x-forwarded-for': '10.0.0.1' })).toBe(429);
    const other = await join(p, '/per', from('10.0.0.2'));
    expect(other.session.remoteAddress).toBe('10.0.0.2');
    const x1Closed = next(p.registry, 'close', (x) => x.id === x1.session.id);
    x1.session.close();
    await x1Closed;
    await join(p, '/per', from('10.0.0.1'));
    expect(rejects).toEqual([
      ['10.0.0.1', 429, 'Too many sessions from this address'],
      ['10.0.0.1', 429, 'Too many sessions from this address'],
    ]);
    expect(p.registry.stats()).toMatchObject({ rejected: 2, sessions: 3 });
  });

  it('caps: a handshake in progress holds its place; a refused or timed-out one gives it back', async () => {
    let release!: () => void;
    const gate = new Promise<boolean>((resolve) => (release = () => resolve(false)));
    let called!: () => void;
    const waiting = new Promise<void>((resolve) => (called = resolve));
    const s = await start({
      transport: {
        maxSessions: 1,
        authenticate: (req: { path: string }) => {
          if (req.path !== '/slow') return true;
          called();
          return gate;
        },
      },
    });
    const slow = upgradeStatus(`${s.url}/slow`);
    await within(waiting, 5000, 'authenticate to be called');
    expect(await upgradeStatus(`${s.url}/busy`)).toBe(503);
    release();
    expect(await slow).toBe(401);
    await join(s, '/after');
    expect(s.registry.stats()).toMatchObject({ rejected: 2, opened: 1 });
  });

  it('bounds authenticate: a hook that never settles gets 503 and an error after handshakeTimeout; its place is freed', async () => {
    const s = await start({
      transport: {
        handshakeTimeout: 300,
        maxSessions: 1,
        authenticate: (req: { path: string }) => (req.path === '/hang' ? new Promise(() => {}) : true),
      },
    });
    const errors: string[] = [];
    s.registry.on('error', (err) => errors.push(err.message));
    const rejects: [string | undefined, number][] = [];
    s.registry.on('reject', (request, status) => rejects.push([request?.path, status]));
    expect(await upgradeStatus(`${s.url}/hang`)).toBe(503);
    expect(errors).toEqual([expect.stringMatching(/handshakeTimeout/)]);
    await join(s, '/after');
    expect(rejects).toEqual([['/hang', 503]]);
    expect(s.registry.stats()).toMatchObject({ rejected: 1, opened: 1, errors: 1 });
  });
}
