import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SessionRegistry } from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';
import type { Started, StartOptions, TransportUnderTest } from './harness.js';
import { once } from './harness.js';

export const wsHarness: TransportUnderTest = {
  name: 'ws',
  async start<TData>(options: StartOptions = {}): Promise<Started<TData>> {
    const registry = new SessionRegistry<TData>(options.registry);
    registry.on('error', () => {});
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    try {
      wsTransport(registry, { server, ...options.transport });
    } catch (err) {
      await registry.close();
      throw err;
    }
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const close = once(async () => {
      await registry.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { url: `ws://127.0.0.1:${port}`, registry, close };
  },
  // ws pings every interval and terminates a peer whose pong is not back after timeout: a silent peer is
  // gone within interval (until the next ping) + timeout.
  heartbeat: { options: { interval: 200, timeout: 400 }, bound: 600 },
  differences: {},
};
