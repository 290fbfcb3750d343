/**
 * What the transport factories accept as arguments: a first argument that is not a registry, and a ws transport
 * that would never see an upgrade, are TypeErrors naming the argument; a ws transport without `server` whose
 * upgrades come from the user's own listener (`noServer: true`) works.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import uWS from 'uWebSockets.js';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry } from '../../src/index.js';
import { uwsTransport } from '../../transports/uws.js';
import { wsTransport } from '../../transports/ws.js';
import { connect, Leftovers, next, upgradeStatus } from './clients.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

describe('transport factories: arguments', () => {
  it('a registry argument that is not a SessionRegistry throws a TypeError naming "registry"', () => {
    const server = http.createServer();
    for (const bad of [{}, null, undefined, { options: { backpressure: {} } }]) {
      expect(() => wsTransport(bad as never, { server })).toThrow(TypeError);
      expect(() => wsTransport(bad as never, { server })).toThrow(/"registry"/);
      expect(() => uwsTransport(bad as never, { app: uWS.App() })).toThrow(TypeError);
      expect(() => uwsTransport(bad as never, { app: uWS.App() })).toThrow(/"registry"/);
    }
  });

  it('ws: neither server, wss nor noServer throws a TypeError naming "server" and "noServer"', () => {
    const registry = new SessionRegistry();
    expect(() => wsTransport(registry, {})).toThrow(TypeError);
    expect(() => wsTransport(registry, {})).toThrow(/"server".*"noServer: true"/);
    expect(() => wsTransport(registry)).toThrow(/"server"/);
    expect(() => wsTransport(registry, { path: '/a/:channel' })).toThrow(/"server"/);
    expect(() => wsTransport(registry, { server: http.createServer(), noServer: true })).toThrow(
      /"server" and "noServer"/,
    );
    expect(() => wsTransport(registry, { noServer: 'yes' as never })).toThrow(/"noServer"/);
    expect(registry.stats().sessions).toBe(0);
  });

  it('uws: no app throws a TypeError naming "app"', () => {
    const registry = new SessionRegistry();
    expect(() => uwsTransport(registry, {} as never)).toThrow(TypeError);
    expect(() => uwsTransport(registry, {} as never)).toThrow(/"app"/);
  });

  it('ws with noServer: true serves the upgrades the user hands to handleUpgrade()', async () => {
    const registry = new SessionRegistry();
    const transport = wsTransport(registry, { noServer: true, path: '/alarms/:channel' });
    const server = http.createServer();
    server.on('upgrade', (req, socket, head) => {
      void transport.handleUpgrade(req, socket, head).then((handled) => {
        if (!handled) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    leftovers.add(async () => {
      await registry.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const { port } = server.address() as AddressInfo;
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/elsewhere`)).toBe(404);
    const opened = next(registry, 'open');
    const client = await connect(leftovers, `ws://127.0.0.1:${port}/alarms/fire`);
    await opened;
    registry.publish('fire', 'zone 3');
    expect(await client.received(1)).toEqual(['zone 3']);
  });
});
