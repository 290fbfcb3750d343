import uWS from 'uWebSockets.js';
import { SessionRegistry } from '../../src/index.js';
import { assertNativeUws, uwsHeartbeatBound, uwsTransport } from '../../transports/uws.js';
import type { Started, StartOptions, TransportUnderTest } from './harness.js';
import { once } from './harness.js';

/** Listens on 127.0.0.1, port 0: the listen socket (to close) and the port it got. */
export async function listenUws(
  app: uWS.TemplatedApp,
): Promise<{ socket: uWS.us_listen_socket; port: number }> {
  const socket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) =>
      s === false ? reject(new Error('uWS could not listen on 127.0.0.1, port 0')) : resolve(s),
    ),
  );
  return { socket, port: uWS.us_socket_local_port(socket) };
}

const UWS_HEARTBEAT = { interval: 4000, timeout: 4000 };

export const uwsHarness: TransportUnderTest = {
  name: 'uws',
  async start<TData>(options: StartOptions = {}): Promise<Started<TData>> {
    // Fail loudly rather than test the pure-JS imitation.
    assertNativeUws(uWS);
    const registry = new SessionRegistry<TData>(options.registry);
    registry.on('error', () => {});
    const app = uWS.App();
    try {
      uwsTransport(registry, { app, ...options.transport });
    } catch (err) {
      await registry.close();
      throw err;
    }
    const { socket: listenSocket, port } = await listenUws(app);
    const close = once(async () => {
      await registry.close();
      uWS.us_listen_socket_close(listenSocket);
    });
    return { url: `ws://127.0.0.1:${port}`, registry, close };
  },
  heartbeat: { options: UWS_HEARTBEAT, bound: uwsHeartbeatBound(UWS_HEARTBEAT) },
  differences: {
    'protocol-error-without-close-frame':
      'uWS closes the TCP connection from C++ on an oversized message, invalid UTF-8 or an invalid frame, before ' +
      'any JS runs (no close frame can be sent; see docs/transports.md); the transport maps the close handler ' +
      'reason to 1009/1007 for the registry',
    'backpressure-batched':
      'uWS pub/sub queues up to 32 messages under 16 KiB per socket before writing them, so getBufferedAmount() ' +
      'lags by that batch; the transport checks it after every publish',
    'heartbeat-rounded':
      'uWS has idleTimeout in seconds (>= 8, 4 s ticks): interval + timeout is rounded up to a multiple of 4 s',
  },
};
