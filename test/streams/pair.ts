import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import type { RedisHistoryEngine } from '../../brokers/redis-history.js';
import { SessionRegistry, type History } from '../../src/index.js';
import { wsTransport } from '../../transports/ws.js';
import { within, type Leftovers } from '../transports/clients.js';

export interface Pair {
  /** Node A: serves ws sessions at `url`. */
  a: SessionRegistry;
  /** Node B: no transport, publishes only. */
  b: SessionRegistry;
  /** What either node reported through `error`. */
  errors: Error[];
  /** The `alarms` stream channel on node A. */
  url: string;
}

/**
 * Two nodes on one fleet history with `alarms` a stream channel: A with the ws transport on 127.0.0.1, port 0
 * (path `/:channel`, no heartbeat), B without one. Both are closed after the test.
 */
export async function startPair(leftovers: Leftovers, historyA: History, historyB: History): Promise<Pair> {
  const a = new SessionRegistry({ streams: { channels: 'alarms', history: historyA } });
  const b = new SessionRegistry({ streams: { channels: 'alarms', history: historyB } });
  const errors: Error[] = [];
  a.on('error', (err) => errors.push(err));
  b.on('error', (err) => errors.push(err));
  const server = http.createServer();
  wsTransport(a, { server, path: '/:channel', heartbeat: false });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  leftovers.add(async () => {
    await a.close();
    await b.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { a, b, errors, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/alarms` };
}

/**
 * Kills the Redis subscriber connection of `history` (found by its name in CLIENT LIST) through `admin`, and
 * resolves once `node` reported the outage through `error` (within `ms`).
 */
export async function killSubscriber(
  admin: Redis,
  history: RedisHistoryEngine,
  node: SessionRegistry,
  ms: number,
): Promise<void> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  const line = list.split('\n').find((l) => l.includes(`name=${history.connectionName} `));
  const id = /\bid=(\d+)/.exec(line ?? '')?.[1];
  expect(id).toBeDefined();
  const lost = new Promise<void>((resolve) => node.once('error', () => resolve()));
  await admin.call('CLIENT', 'KILL', 'ID', id as string);
  await within(lost, ms, 'the outage report');
}
