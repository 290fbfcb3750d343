/**
 * The fleet-wide history suite: nodes that share one engine (Redis or NATS) give the same positions, and a
 * client resumes on another node or after a restart, exactly.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { FanoutClient, type WebSocketClass } from '../../client/index.js';
import { SessionRegistry, type History } from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';
import { connect, Leftovers } from '../transports/clients.js';
import { watchClient } from '../support/fanout-client.js';
import { short } from './frames.js';

const WS = WebSocket as unknown as WebSocketClass;

export interface FleetEngine {
  name: string;
  /** A fresh engine on `prefix` (run-unique), its resources registered in `leftovers`. */
  history(leftovers: Leftovers, prefix: string, options?: { size?: number }): Promise<History>;
}

interface FleetNode {
  registry: SessionRegistry;
  url: string;
  errors: Error[];
  close(): Promise<void>;
}

let runs = 0;
const run = `${process.pid}-${Date.now().toString(36)}`;

export function fleetSuite(engine: FleetEngine): void {
  describe(`fleet-wide stream history: ${engine.name}`, () => {
    const leftovers = new Leftovers();
    afterEach(() => leftovers.dispose());

    async function node(history: History): Promise<FleetNode> {
      const registry = new SessionRegistry({ streams: { channels: /^alarms/, history } });
      const errors: Error[] = [];
      registry.on('error', (err) => errors.push(err));
      const server = http.createServer();
      wsTransport(registry, { server, path: '/:channel', heartbeat: false });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      let closed: Promise<void> | null = null;
      const close = () =>
        (closed ??= (async () => {
          await registry.close();
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        })());
      leftovers.add(close);
      return { registry, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, errors, close };
    }

    /** A FanoutClient that follows `target()` (it reconnects to whatever node that names). */
    function client(target: () => string) {
      // The URL is fixed per client; "another node" is a second client built from the first one's positions.
      const c = new FanoutClient(target(), { WebSocket: WS, reconnect: { initial: 20, max: 200 } });
      leftovers.add(() => c.close());
      return watchClient(c);
    }

    const prefix = () => `fanout-test-${run}-${++runs}`;

    it('every node gives the same positions, in the same order, whichever node published', async () => {
      const p = prefix();
      const a = await node(await engine.history(leftovers, p));
      const b = await node(await engine.history(leftovers, p));
      const onA = client(() => `${a.url}/alarms`);
      const onB = client(() => `${b.url}/alarms`);
      await onA.until('sub', () => onA.events.length === 1);
      await onB.until('sub', () => onB.events.length === 1);
      for (let i = 1; i <= 20; i++) (i % 2 === 0 ? a : b).registry.publish('alarms', `x${i}`);
      await onA.until('20', () => onA.messages.length === 20);
      await onB.until('20', () => onB.messages.length === 20);
      const seq = (w: typeof onA) => w.messages.map((m) => `${m.position?.offset}:${m.data as string}`);
      expect(seq(onA)).toEqual(seq(onB));
      expect(onA.messages.map((m) => m.position?.offset)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      // Each node published its own half, in its own order.
      const texts = onA.texts();
      for (const parity of [0, 1]) {
        const mine = texts.filter((t) => Number(t.slice(1)) % 2 === parity).map((t) => Number(t.slice(1)));
        expect(mine).toEqual([...mine].sort((x, y) => x - y));
      }
      expect(a.errors.concat(b.errors)).toEqual([]);
    });

    it('a client that reconnects to another node resumes there, exactly', async () => {
      const p = prefix();
      const a = await node(await engine.history(leftovers, p));
      const b = await node(await engine.history(leftovers, p));
      const first = client(() => `${a.url}/alarms`);
      await first.until('sub', () => first.events.length === 1);
      for (let i = 1; i <= 5; i++) a.registry.publish('alarms', `a${i}`);
      await first.until('5', () => first.messages.length === 5);
      const positions = first.c.positions();
      first.c.close(); // node A is gone for this client
      // Another client sees when every publish is stored (publishes are asynchronous with a fleet engine).
      const observer = client(() => `${a.url}/alarms`);
      await observer.until('sub', () => observer.events.length === 1);
      for (let i = 6; i <= 12; i++) (i % 2 === 0 ? a : b).registry.publish('alarms', `a${i}`);
      await observer.until('7', () => observer.messages.length === 7);
      // The same client state, now pointed at node B.
      const moved = watchClient(new FanoutClient(`${b.url}/alarms`, { WebSocket: WS, positions }));
      leftovers.add(() => moved.c.close());
      await moved.until('recovered', () => moved.events.length === 1);
      a.registry.publish('alarms', 'a13');
      await moved.until('13', () => moved.messages.length === 8);
      expect(moved.events).toEqual(['rec:12:7']);
      // The two nodes' publishes interleave in the order the engine assigned; each node's own stay in order.
      expect(moved.messages.map((m) => m.position?.offset)).toEqual([6, 7, 8, 9, 10, 11, 12, 13]);
      expect([...moved.texts()].sort()).toEqual(Array.from({ length: 8 }, (_, i) => `a${i + 6}`).sort());
      expect(moved.texts()[7]).toBe('a13');
      expect(moved.messages.map((m) => m.replayed)).toEqual([...Array(7).fill(true), false]);
    });

    it('a restarted node serves the history its predecessor wrote (same epoch, nothing lost)', async () => {
      const p = prefix();
      const a = await node(await engine.history(leftovers, p));
      const c = client(() => `${a.url}/alarms`);
      await c.until('sub', () => c.events.length === 1);
      for (let i = 1; i <= 3; i++) a.registry.publish('alarms', `r${i}`);
      await c.until('3', () => c.messages.length === 3);
      const positions = c.c.positions();
      c.c.close();
      await a.close();
      const a2 = await node(await engine.history(leftovers, p));
      // Publishes are stored asynchronously: an observer shows when all three are in.
      const observer = client(() => `${a2.url}/alarms`);
      await observer.until('sub', () => observer.events.length === 1);
      for (let i = 4; i <= 6; i++) a2.registry.publish('alarms', `r${i}`);
      await observer.until('3', () => observer.messages.length === 3);
      const back = watchClient(new FanoutClient(`${a2.url}/alarms`, { WebSocket: WS, positions }));
      leftovers.add(() => back.c.close());
      await back.until('recovered', () => back.events.length === 1);
      expect(back.events).toEqual(['rec:6:3']);
      expect(back.texts()).toEqual(['r4', 'r5', 'r6']);
    });

    it('publishes racing the replay on another node: no gap, no duplicate at the seam', async () => {
      const p = prefix();
      const a = await node(await engine.history(leftovers, p, { size: 10_000 }));
      const b = await node(await engine.history(leftovers, p, { size: 10_000 }));
      const c = client(() => `${a.url}/alarms`);
      await c.until('sub', () => c.events.length === 1);
      let n = 0;
      for (let i = 0; i < 30; i++) a.registry.publish('alarms', `m${++n}`);
      await c.until('30', () => c.messages.length === 30);
      const positions = c.c.positions();
      c.c.close();
      for (let i = 0; i < 30; i++) a.registry.publish('alarms', `m${++n}`);
      // Node A keeps publishing while the client recovers on node B.
      let pumping = true;
      const pump = (async () => {
        for (let i = 0; i < 300 && pumping; i++) {
          a.registry.publish('alarms', `m${++n}`);
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const moved = watchClient(new FanoutClient(`${b.url}/alarms`, { WebSocket: WS, positions }));
      leftovers.add(() => moved.c.close());
      // Plain WebSockets see every frame the server sends (fanout/client would hide a duplicate).
      const since = `${positions['alarms']?.epoch}:30:alarms`;
      const raw = await Promise.all(
        Array.from({ length: 5 }, () => connect(leftovers, `${b.url}/alarms?since=${since}`)),
      );
      await moved.until('recovered', () => moved.events.length === 1);
      pumping = false;
      await pump;
      await moved.until(`all ${n}`, () => moved.messages.length === n - 30, 20_000);
      expect(moved.texts()).toEqual(Array.from({ length: n - 30 }, (_, i) => `m${i + 31}`));
      for (const r of raw) {
        await r.received(n - 30 + 1, 20_000);
        const data = r.messages.map(short).filter((m) => m.startsWith('m:'));
        expect(data).toEqual(Array.from({ length: n - 30 }, (_, i) => `m:${i + 31}:m${i + 31}`));
      }
      expect(moved.events.filter((e) => !e.startsWith('rec:'))).toEqual([]);
      expect(b.registry.stats().streams).toMatchObject({ recovered: 6, failed: 0 });
    });

    it('history too short and a foreign epoch are unrecoverable, never a partial replay', async () => {
      const p = prefix();
      const a = await node(await engine.history(leftovers, p, { size: 3 }));
      const c = client(() => `${a.url}/alarms`);
      await c.until('sub', () => c.events.length === 1);
      for (let i = 1; i <= 6; i++) a.registry.publish('alarms', `s${i}`);
      await c.until('6', () => c.messages.length === 6);
      const epoch = c.c.positions()['alarms']?.epoch as string;
      for (const [positions, want] of [
        [{ alarms: { epoch, offset: 1 } }, 'unrec:too-old'],
        [{ alarms: { epoch, offset: 3 } }, 'rec:6:3'],
        [{ alarms: { epoch: 'foreign', offset: 3 } }, 'unrec:epoch'],
        [{ alarms: { epoch: 'foreign', offset: 0 } }, 'unrec:too-old'], // offset 0 matches any epoch
        [{ alarms: { epoch, offset: 7 } }, 'unrec:future'],
      ] as const) {
        const w = watchClient(new FanoutClient(`${a.url}/alarms`, { WebSocket: WS, positions }));
        leftovers.add(() => w.c.close());
        await w.until(want, () => w.events.length === 1);
        expect(w.events).toEqual([want]);
        expect(w.messages.length).toBe(want === 'rec:6:3' ? 3 : 0);
        w.c.close();
      }
    });
  });
}
