import http from 'node:http';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import { SessionRegistry, type RegistryOptions, type Session } from '../../src/index.js';
import { wsTransport, type WsTransport, type WsTransportOptions } from '../../transports/ws.js';
import type { Leftovers } from '../transports/clients.js';

export { Leftovers, connect, upgradeStatus, type Client } from '../transports/clients.js';

export interface WsFixture<TData = unknown> {
  registry: SessionRegistry<TData>;
  transport: WsTransport;
  server: http.Server;
  url: string;
}

/** An http server on 127.0.0.1, port 0, with a registry and the ws transport. */
export async function startWs<TData = unknown>(
  leftovers: Leftovers,
  options: WsTransportOptions<TData> = {},
  registryOptions?: RegistryOptions,
): Promise<WsFixture<TData>> {
  const registry = new SessionRegistry<TData>(registryOptions);
  registry.on('error', () => {});
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const transport = wsTransport(registry, { server, ...options });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  leftovers.add(async () => {
    await registry.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { registry, transport, server, url: `ws://127.0.0.1:${port}` };
}

/**
 * Counts the `socket.write` calls on the server side of a ws `session` from now on (the transport's writes: one
 * per flush of what it held for the session). Returns the count so far.
 */
export function countWrites(session: Session): () => number {
  const socket = (session as unknown as { ws: { _socket: net.Socket } }).ws._socket;
  let writes = 0;
  const write = socket.write.bind(socket);
  socket.write = ((...args: Parameters<typeof write>) => {
    writes++;
    return write(...args);
  }) as typeof socket.write;
  return () => writes;
}
