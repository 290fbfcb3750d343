/**
 * Cross-node fan-out bench: sessions spread over two nodes, every publish on node A, through Redis and through
 * NATS, beside the same sessions on a single node without a broker, in one run.
 *
 *   npx tsx bench/cross-node.ts [--sessions 400] [--messages 1000] [--paced 300]
 *
 * Each scenario runs two phases over real ws sockets on 127.0.0.1 (clients in this process):
 *  - burst: `messages` publishes, 20 per event-loop turn; deliveries/s = sessions x messages / (first publish to
 *    last delivery);
 *  - paced: `paced` publishes, one every 2 ms; publish-to-receive latency p50/p99 over every delivery, and over
 *    the deliveries to node B only (the ones that crossed the broker).
 * Needs Redis on 127.0.0.1:6379 and NATS on 127.0.0.1:4222 (a scenario whose server is down is reported as
 * skipped). Every phase is bounded by a deadline; the JSON goes to bench/results/cross-node.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';
import { SessionRegistry } from '../src/index.js';
import type { Broker } from '../src/index.js';
import { natsBroker } from '../brokers/nats.js';
import { redisBroker } from '../brokers/redis.js';
import { wsTransport } from '../transports/ws.js';

const args = new Map<string, number>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), Number(process.argv[i + 1]));
const SESSIONS = args.get('sessions') ?? 400;
const MESSAGES = args.get('messages') ?? 1000;
const PACED = args.get('paced') ?? 300;
const BURST = 20;
const PHASE_DEADLINE_MS = 30_000;
const RUN = `${process.pid}-${Date.now().toString(36)}`;

interface Node {
  registry: SessionRegistry;
  url: string;
  close(): Promise<void>;
}

async function startNode(broker?: Broker): Promise<Node> {
  const registry = new SessionRegistry(broker === undefined ? {} : { broker });
  registry.on('error', (err) => console.error('registry error:', err.message));
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  // A large buffer limit: the bench measures throughput, not the backpressure policy.
  wsTransport(registry, {
    server,
    path: '/:channel',
    heartbeat: false,
    backpressure: { limit: 64 * 1024 * 1024 },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    registry,
    url: `ws://127.0.0.1:${port}`,
    async close() {
      await registry.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Clients record, per delivery, the latency from the publish timestamp carried in the payload. */
class Receivers {
  readonly sockets: WebSocket[] = [];
  received = 0;
  lastAt = 0;
  latencies: number[] = [];
  remote: number[] = [];
  #target = 0;
  #done: (() => void) | null = null;

  async open(url: string, n: number, remote: boolean): Promise<void> {
    const opened: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const ws = new WebSocket(`${url}/bench`);
      this.sockets.push(ws);
      ws.on('message', (data) => {
        const now = performance.now();
        const text = (data as Buffer).toString();
        const sent = Number(text.slice(text.indexOf(':') + 1));
        const ms = now - sent;
        this.latencies.push(ms);
        if (remote) this.remote.push(ms);
        this.received++;
        this.lastAt = now;
        if (this.received >= this.#target && this.#done !== null) {
          this.#done();
          this.#done = null;
        }
      });
      opened.push(
        new Promise((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        }),
      );
    }
    await Promise.all(opened);
  }

  reset(): void {
    this.received = 0;
    this.latencies = [];
    this.remote = [];
  }

  /** Resolves true once `target` deliveries arrived, false at the deadline. */
  until(target: number): Promise<boolean> {
    this.#target = target;
    if (this.received >= target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#done = null;
        resolve(false);
      }, PHASE_DEADLINE_MS);
      this.#done = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  close(): void {
    for (const ws of this.sockets) ws.terminate();
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Result {
  scenario: string;
  sessionsA: number;
  sessionsB: number;
  messages: number;
  deliveries: number;
  deliveriesPerSecond: number;
  burstP50: number;
  burstP99: number;
  pacedP50: number;
  pacedP99: number;
  pacedRemoteP50: number | null;
  pacedRemoteP99: number | null;
  complete: boolean;
  brokerFailed: number;
}

async function scenario(
  name: string,
  makeBroker: (() => Promise<{ broker: Broker; close(): Promise<void> }>) | null,
) {
  const made = makeBroker === null ? null : [await makeBroker(), await makeBroker()];
  const a = await startNode(made?.[0]?.broker);
  const b = made === null ? null : await startNode(made[1]?.broker);
  const receivers = new Receivers();
  try {
    const onA = b === null ? SESSIONS : Math.ceil(SESSIONS / 2);
    await receivers.open(a.url, onA, false);
    if (b !== null) await receivers.open(b.url, SESSIONS - onA, true);
    if (made !== null)
      await Promise.all(made.map((m) => (m.broker as Broker & { idle(): Promise<void> }).idle()));

    // Warm-up, so that connection setup and JIT do not land in the figures.
    for (let i = 0; i < 50; i++) a.registry.publish('bench', `w:${performance.now()}`);
    let complete = await receivers.until(50 * SESSIONS);

    receivers.reset();
    const start = performance.now();
    for (let i = 0; i < MESSAGES; i += BURST) {
      for (let k = i; k < Math.min(MESSAGES, i + BURST); k++)
        a.registry.publish('bench', `${k}:${performance.now()}`);
      await tick();
    }
    complete = (await receivers.until(MESSAGES * SESSIONS)) && complete;
    const deliveries = receivers.received;
    const seconds = (receivers.lastAt - start) / 1000;
    const burstP50 = percentile(receivers.latencies, 50);
    const burstP99 = percentile(receivers.latencies, 99);

    receivers.reset();
    for (let i = 0; i < PACED; i++) {
      a.registry.publish('bench', `${i}:${performance.now()}`);
      await wait(2);
    }
    complete = (await receivers.until(PACED * SESSIONS)) && complete;
    const result: Result = {
      scenario: name,
      sessionsA: onA,
      sessionsB: SESSIONS - onA,
      messages: MESSAGES,
      deliveries,
      deliveriesPerSecond: Math.round(deliveries / seconds),
      burstP50,
      burstP99,
      pacedP50: percentile(receivers.latencies, 50),
      pacedP99: percentile(receivers.latencies, 99),
      pacedRemoteP50: b === null ? null : percentile(receivers.remote, 50),
      pacedRemoteP99: b === null ? null : percentile(receivers.remote, 99),
      complete,
      brokerFailed: a.registry.stats().broker.failed,
    };
    return result;
  } finally {
    receivers.close();
    await a.close();
    await b?.close();
    for (const m of made ?? []) await m.close();
  }
}

async function redisUp(): Promise<boolean> {
  const probe = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

async function main(): Promise<void> {
  const results: (Result | { scenario: string; skipped: string })[] = [];
  console.log(
    `cross-node bench: ${SESSIONS} sessions, ${MESSAGES} burst publishes, ${PACED} paced publishes`,
  );
  results.push(await scenario('single node (no broker)', null));

  if (await redisUp()) {
    results.push(
      await scenario('2 nodes via Redis', async () => {
        const client = new Redis({ host: '127.0.0.1', port: 6379 });
        return {
          broker: redisBroker({ client, prefix: `fanout-bench:${RUN}:` }),
          close: async () => void client.disconnect(),
        };
      }),
    );
  } else results.push({ scenario: '2 nodes via Redis', skipped: 'Redis not reachable on 127.0.0.1:6379' });

  let nc: NatsConnection | null = null;
  try {
    nc = await natsConnect({ servers: '127.0.0.1:4222', reconnect: false });
    await nc.close();
    results.push(
      await scenario('2 nodes via NATS', async () => {
        const conn = await natsConnect({ servers: '127.0.0.1:4222' });
        return {
          broker: natsBroker({ connection: conn, prefix: `fanout-bench.${RUN}.` }),
          close: () => conn.close(),
        };
      }),
    );
  } catch (err) {
    if (nc !== null) throw err;
    results.push({ scenario: '2 nodes via NATS', skipped: 'NATS not reachable on 127.0.0.1:4222' });
  }

  const fmt = (n: number | null) => (n === null || Number.isNaN(n) ? '-' : n.toFixed(2));
  const rows = results.map((r) =>
    'skipped' in r
      ? [r.scenario, 'skipped: ' + r.skipped, '', '', '', '', '', '']
      : [
          r.scenario,
          `${r.sessionsA}/${r.sessionsB}`,
          r.deliveriesPerSecond.toLocaleString('en-US'),
          `${fmt(r.burstP50)} / ${fmt(r.burstP99)}`,
          `${fmt(r.pacedP50)} / ${fmt(r.pacedP99)}`,
          `${fmt(r.pacedRemoteP50)} / ${fmt(r.pacedRemoteP99)}`,
          String(r.brokerFailed),
          r.complete ? 'yes' : 'NO (deadline)',
        ],
  );
  const header = [
    'scenario',
    'sessions A/B',
    'deliveries/s (burst)',
    'burst p50/p99 ms',
    'paced p50/p99 ms',
    'paced node B p50/p99 ms',
    'broker failed',
    'complete',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const row of rows) console.log(line(row));

  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'cross-node.json');
  mkdirSync(dirname(out), { recursive: true });
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    sessions: SESSIONS,
    messages: MESSAGES,
    paced: PACED,
  };
  writeFileSync(out, JSON.stringify({ ...meta, results }, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

await main();
