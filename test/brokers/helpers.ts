import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'ws';
import { SessionRegistry, type Broker } from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';

import { Leftovers } from '../transports/clients.js';

export { Leftovers };

export interface Node {
  name: string;
  registry: SessionRegistry;
  url: string;
  errors: Error[];
}

/** A registry with the ws transport on an http server at 127.0.0.1, port 0. Sessions join `?c=` channels. */
export async function startNode(leftovers: Leftovers, name: string, broker: Broker): Promise<Node> {
  const registry = new SessionRegistry({ broker, nodeId: name });
  const errors: Error[] = [];
  registry.on('error', (err) => errors.push(err));
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  wsTransport(registry, {
    server,
    path: '/s',
    authenticate: (req) => ({ data: req.query.get('id'), channels: req.query.getAll('c') }),
    heartbeat: false,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  leftovers.add(async () => {
    await registry.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { name, registry, url: `ws://127.0.0.1:${port}/s`, errors };
}

export interface Client {
  ws: WebSocket;
  /** Text frames as their text, binary frames as `bin:<hex>`. */
  messages: string[];
  /** Resolves once `pred(messages)` holds; rejects after `ms`. */
  until(pred: (messages: string[]) => boolean, what: string, ms?: number): Promise<string[]>;
}

let clients = 0;

/** A real ws client in `channels` on `node`; resolves once the node has registered the session. */
export function connect(leftovers: Leftovers, node: Node, channels: readonly string[]): Promise<Client> {
  const id = `client-${++clients}`;
  const query = [`id=${id}`, ...channels.map((c) => `c=${encodeURIComponent(c)}`)].join('&');
  return new Promise<Client>((resolve, reject) => {
    const ws = new WebSocket(`${node.url}?${query}`);
    const messages: string[] = [];
    const waiters = new Set<() => void>();
    ws.on('message', (data, isBinary) => {
      messages.push(isBinary ? `bin:${(data as Buffer).toString('hex')}` : (data as Buffer).toString());
      for (const check of [...waiters]) check();
    });
    leftovers.add(() => ws.terminate());
    const until = (pred: (m: string[]) => boolean, what: string, ms = 5000) =>
      new Promise<string[]>((res, rej) => {
        const check = () => {
          if (!pred(messages)) return;
          waiters.delete(check);
          clearTimeout(timer);
          res(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          rej(new Error(`${node.name}: timed out waiting for ${what}; got ${JSON.stringify(messages)}`));
        }, ms);
        waiters.add(check);
        check();
      });
    // `open` on the server side fires before the client sees the 101 completing; wait for both.
    const opened = new Promise<void>((res) => {
      const onOpen = (s: { data: unknown }) => {
        if (s.data === id) {
          node.registry.off('open', onOpen);
          res();
        }
      };
      node.registry.on('open', onOpen);
    });
    ws.once('open', () => {
      void opened.then(() => resolve({ ws, messages, until }));
    });
    ws.once('error', reject);
  });
}

/** The arguments of the next `event` on `emitter` that satisfies `pred`; rejects after `ms`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- typed emitters (eventemitter3, ioredis) differ
type AnyEmitter = { on(e: any, fn: any): unknown; off(e: any, fn: any): unknown };

export function nextEvent<T extends unknown[]>(
  emitter: AnyEmitter,
  event: string,
  pred: (...args: T) => boolean = () => true,
  ms = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, fn);
      reject(new Error(`timed out waiting for "${event}"`));
    }, ms);
    const fn = (...args: T) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      emitter.off(event, fn);
      resolve(args);
    };
    emitter.on(event, fn);
  });
}

/** Polls `check` (no event exists for it) until it returns true; rejects after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 5000,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000; i++) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** A server process the test owns: started, stopped and restarted by the test. */
export class ServerProcess {
  #child: ChildProcess | null = null;
  readonly #command: string;
  readonly #ready: RegExp;
  #output = '';

  constructor(command: string, ready: RegExp) {
    this.#command = command;
    this.#ready = ready;
  }

  /** Starts the server and resolves with the output line matching `ready` once it is seen. */
  start(args: readonly string[], ms = 10_000): Promise<RegExpMatchArray> {
    if (this.#child !== null) throw new Error('already running');
    const child = spawn(this.#command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#output = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.#command} not ready: ${this.#output}`)), ms);
      const onData = (chunk: Buffer) => {
        this.#output += chunk.toString();
        const match = this.#output.match(this.#ready);
        if (match !== null) {
          clearTimeout(timer);
          resolve(match);
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        this.#child = null;
        reject(new Error(`${this.#command} exited with ${String(code)}: ${this.#output}`));
      });
    });
  }

  /** SIGTERM, then waits for the process to be gone. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    this.#child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

export const run = `${process.pid}-${Date.now().toString(36)}`;
