import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';

type Server = HttpServer | HttpsServer;

interface Routed {
  match(path: string): unknown;
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean>;
  /** Counts and reports an upgrade whose path no transport on the server owns. */
  unrouted(status: number, reason: string): void;
}

interface Router {
  readonly transports: Routed[];
  readonly listener: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

// One upgrade listener per server, shared by every transport attached to it, so that a path none of them owns
// is answered 404 exactly once (several listeners would each have to guess whether another one matched).
const routers = new WeakMap<Server, Router>();

export function attachRoute(server: Server, transport: Routed): void {
  let router = routers.get(server);
  if (router === undefined) {
    const transports: Routed[] = [];
    const listener = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
      void route(transports, request, socket, head);
    };
    router = { transports, listener };
    routers.set(server, router);
    server.on('upgrade', listener);
  }
  router.transports.push(transport);
}

export function detachRoute(server: Server, transport: Routed): void {
  const router = routers.get(server);
  if (router === undefined) return;
  const i = router.transports.indexOf(transport);
  if (i !== -1) router.transports.splice(i, 1);
  if (router.transports.length === 0) {
    server.off('upgrade', router.listener);
    routers.delete(server);
  }
}

async function route(transports: readonly Routed[], request: IncomingMessage, socket: Duplex, head: Buffer) {
  socket.on('error', ignoreError);
  try {
    for (const transport of transports) {
      if (!(await transport.handleUpgrade(request, socket, head))) continue;
      // The transport answered: it guards the socket from here on (ws does once it took it), and a listener
      // left here would stay on every open socket.
      socket.off('error', ignoreError);
      return;
    }
    transports[0]?.unrouted(404, 'Not Found');
    rejectHandshake(socket, 404, 'Not Found');
  } catch {
    // handleUpgrade reports its own failures; whatever escaped still gets an answer.
    rejectHandshake(socket, 500, STATUS_CODES[500] ?? 'Internal Server Error');
  }
}

function ignoreError(): void {}

/** Answers an upgrade request with an HTTP error (and the refusal's headers) and closes the connection. */
export function rejectHandshake(
  socket: Duplex,
  status: number,
  reason: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = reason || STATUS_CODES[status] || 'Error';
  socket.once('finish', () => socket.destroy());
  let extra = '';
  for (const [name, value] of Object.entries(headers)) extra += `${name}: ${value}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${extra}` +
      `Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
      body,
  );
}
