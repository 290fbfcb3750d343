// Private broker servers for tests that pause, resume or kill them (never the shared ones on 6379 / 4222).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as natsConnect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import type { SessionRegistry } from '../../src/index.js';
import { natsBroker } from '../../brokers/nats.js';
import { redisBroker } from '../../brokers/redis.js';
import type { MaxPending } from '../../brokers/common.js';
import type { Leftovers } from './helpers.js';
import { ServerProcess, run, type Node } from './helpers.js';
import { StallProxy } from './stall.js';
import type { TestBroker } from './suite.js';

/** A private broker server the test may pause and resume (never the shared one on 6379 / 4222). */
export interface Own {
  /** The way to the server: pause() hangs it with every connection open, resume() lets it go on. */
  server: StallProxy;
  broker(options: { timeout: number; maxPending?: MaxPending }): Promise<TestBroker>;
}

export interface OwnEngine {
  name: string;
  start(leftovers: Leftovers): Promise<Own>;
}

export const engines: OwnEngine[] = [
  {
    name: 'redis',
    async start(leftovers) {
      const dir = mkdtempSync(join(tmpdir(), 'fanout-redis-'));
      leftovers.add(() => rmSync(dir, { recursive: true, force: true }));
      const path = join(dir, 'r.sock');
      const server = new ServerProcess('redis-server', /ready to accept connections/);
      leftovers.add(() => server.stop());
      await server.start([
        '--port',
        '0',
        '--unixsocket',
        path,
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ]);
      const proxy = await StallProxy.start({ path });
      leftovers.add(() => proxy.close());
      return {
        server: proxy,
        async broker(options) {
          const client = new Redis({ host: '127.0.0.1', port: proxy.port, retryStrategy: () => 20 });
          client.on('error', () => {});
          leftovers.add(() => client.disconnect());
          return redisBroker({ client, prefix: `outage:${run}:`, ...options });
        },
      };
    },
  },
  {
    name: 'nats',
    async start(leftovers) {
      const server = new ServerProcess(
        '/usr/sbin/nats-server',
        /client connections on 127\.0\.0\.1:(\d+)[\s\S]*Server is ready/,
      );
      leftovers.add(() => server.stop());
      const port = Number((await server.start(['-a', '127.0.0.1', '-p', '-1']))[1]);
      const proxy = await StallProxy.start({ host: '127.0.0.1', port });
      leftovers.add(() => proxy.close());
      return {
        server: proxy,
        async broker(options) {
          const nc = await natsConnect({ servers: `127.0.0.1:${proxy.port}`, maxReconnectAttempts: -1 });
          leftovers.add(() => (nc.isClosed() ? undefined : nc.close()));
          return natsBroker({ connection: nc, prefix: `outage.${run}.`, ...options });
        },
      };
    },
  },
];

/** Resolves once `registry` emitted `n` errors matching `pattern` (bounded by `ms`). */
export function errors(registry: SessionRegistry, pattern: RegExp, n: number, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => {
      registry.off('error', onError);
      reject(new Error(`timed out waiting for ${n} errors matching ${pattern} (saw ${seen})`));
    }, ms);
    const onError = (err: Error) => {
      if (pattern.test(err.message) && ++seen === n) {
        clearTimeout(timer);
        registry.off('error', onError);
        resolve();
      }
    };
    registry.on('error', onError);
  });
}

export const idle = (...nodes: Node[]) =>
  Promise.all(nodes.map((n) => (n.registry.options.broker as TestBroker).idle()));

export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
