// A TCP proxy in front of a private broker server that a test can stall: while paused it reads nothing on to
// either side (bytes wait, in order, as they would in the socket buffers of a hung server) and resume() hands
// them on. It replaces SIGSTOP: in one CI run a server stopped that way forwarded publishes during the pause (the
// cause was not pinned down; the kernel resumes a stopped process whose process group becomes orphaned). A proxy
// holds for exactly as long as the test says.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

type Target = { port: number; host: string } | { path: string };

interface Pipe {
  from: net.Socket;
  to: net.Socket;
  held: Buffer[];
}

export class StallProxy {
  readonly #target: Target;
  readonly #server: net.Server;
  readonly #pipes = new Set<Pipe>();
  readonly #sockets = new Set<net.Socket>();
  #paused = false;
  #swallowing = false;

  private constructor(target: Target) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Listens on 127.0.0.1, port 0, in front of `target`. */
  static async start(target: Target): Promise<StallProxy> {
    const proxy = new StallProxy(target);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** The server hangs: nothing reaches it and nothing comes back, every connection stays open. */
  pause(): void {
    this.#paused = true;
  }

  /** The server goes on: what was held is handed on, in order. */
  resume(): void {
    this.#paused = false;
    for (const pipe of this.#pipes) {
      for (const chunk of pipe.held) pipe.to.write(chunk);
      pipe.held.length = 0;
    }
  }

  /**
   * The server runs what it gets but its answers are lost on the way back: bytes to the server go on, bytes from
   * it are thrown away until cut().
   */
  swallowReplies(): void {
    this.#swallowing = true;
  }

  /** Every connection through the proxy drops (as a network failure would); new ones go through normally. */
  cut(): void {
    this.#swallowing = false;
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(this.#target);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.#sockets.add(from);
      const pipe: Pipe = { from, to, held: [] };
      this.#pipes.add(pipe);
      const fromServer = from === upstream;
      from.on('data', (chunk: Buffer) => {
        if (fromServer && this.#swallowing) return;
        if (this.#paused) pipe.held.push(chunk);
        else to.write(chunk);
      });
      from.on('error', () => {});
      from.on('close', () => {
        this.#pipes.delete(pipe);
        this.#sockets.delete(from);
        to.destroy();
      });
    }
  }
}
