/**
 * Micro-benchmarks of the registry alone, with in-memory sessions (no sockets): what the registry's own
 * bookkeeping costs per subscribe, per publish and per recipient. Run with benchmark.js.
 */
import Benchmark from 'benchmark';
import { Registry } from 'prom-client';
import { bindPrometheus } from '../metrics/prometheus.js';
import { attachTransport, SessionRegistry } from '../src/registry.js';
import { BaseSession, type SendResult } from '../src/session.js';
import { fanoutLoop, type Transport, type TransportHost } from '../src/transport.js';
import type { Message } from '../src/message.js';

/** A session that accepts every message and only counts it. */
class MemorySession extends BaseSession<undefined> {
  readonly transport = 'memory';
  received = 0;
  get bufferedAmount(): number {
    return 0;
  }
  protected write(_message: Message): SendResult {
    this.received++;
    return 'sent';
  }
  protected doClose(code: number, reason: string): void {
    this.host.closed(this, code, reason);
  }
  terminate(): void {
    this.host.closed(this, 1006, '');
  }
}

const memoryTransport: Transport = {
  name: 'memory',
  fanout: (message, sessions, except) => fanoutLoop(message, sessions, except),
  close: async () => {},
};

function setup(metrics = false): { registry: SessionRegistry; host: TransportHost<undefined> } {
  const registry = new SessionRegistry();
  registry.on('error', () => {});
  const host = attachTransport(registry, memoryTransport) as TransportHost<undefined>;
  if (metrics) bindPrometheus(registry, { register: new Registry() });
  return { registry, host };
}

function open(host: TransportHost<undefined>, channels: string[]): MemorySession {
  const s = new MemorySession({
    host,
    data: undefined,
    params: {},
    remoteAddress: '127.0.0.1',
    backpressure: host.options.backpressure,
  });
  host.open(s, channels);
  return s;
}

export interface MicroRow {
  name: string;
  opsPerSec: number;
  /** Relative margin of error, percent. */
  rme: number;
  samples: number;
  /** Deliveries per second when one op delivers to many sessions. */
  deliveriesPerSec?: number;
}

/** Runs the suite; each case for at most `maxTime` seconds. */
export function runMicro(maxTime: number, progress: (name: string) => void): Promise<MicroRow[]> {
  const big = setup();
  const crowd: MemorySession[] = [];
  for (let i = 0; i < 100_000; i++)
    crowd.push(open(big.host, i % 2 === 0 ? ['all', 'even'] : ['all', 'odd']));
  const one = crowd[0]!;
  const churn = setup();
  for (let i = 0; i < 10_000; i++) open(churn.host, ['busy']);
  const mover = open(churn.host, ['home']);
  const payload = JSON.stringify({ type: 'alarm', zone: 3, level: 'high', at: 1_700_000_000_000 });
  // What binding the Prometheus metrics costs a publish (a fixed cost per publish: it shows on small channels).
  const small = [false, true].map((metrics) => {
    const s = setup(metrics);
    for (let i = 0; i < 100; i++) open(s.host, i === 0 ? ['one', 'hundred'] : ['hundred']);
    return s.registry;
  }) as [SessionRegistry, SessionRegistry];
  const recipients: Record<string, number> = {
    'publish to 1 session': 1,
    'publish to 1 session, metrics bound': 1,
    'publish to 100 sessions': 100,
    'publish to 100 sessions, metrics bound': 100,
    'publish to 100k sessions (one channel)': 100_000,
    'publish to 100k sessions except one': 99_999,
    'publish to 2 channels of 50k (union, 100k sessions)': 100_000,
  };

  const suite = new Benchmark.Suite('registry');
  suite
    .add('publish to 1 session', () => small[0].publish('one', payload), { maxTime })
    .add('publish to 1 session, metrics bound', () => small[1].publish('one', payload), { maxTime })
    .add('publish to 100 sessions', () => small[0].publish('hundred', payload), { maxTime })
    .add('publish to 100 sessions, metrics bound', () => small[1].publish('hundred', payload), { maxTime })
    .add(
      'subscribe + unsubscribe (channel of 10k)',
      () => {
        churn.registry.subscribe(mover, 'busy');
        churn.registry.unsubscribe(mover, 'busy');
      },
      { maxTime },
    )
    .add(
      'open + close a session (1 channel of 10k)',
      () => {
        const s = open(churn.host, ['busy']);
        churn.host.closed(s, 1000, '');
      },
      { maxTime },
    )
    .add('publish to 100k sessions (one channel)', () => big.registry.publish('all', payload), { maxTime })
    .add('publish to 100k sessions except one', () => big.registry.publish('all', payload, { except: one }), {
      maxTime,
    })
    .add(
      'publish to 2 channels of 50k (union, 100k sessions)',
      () => big.registry.publish(['even', 'odd'], payload),
      {
        maxTime,
      },
    );

  return new Promise((resolve, reject) => {
    const rows: MicroRow[] = [];
    suite.on('cycle', (event: Benchmark.Event) => {
      const b = event.target as unknown as Benchmark;
      const name = String(b.name);
      const per = recipients[name];
      rows.push({
        name,
        opsPerSec: b.hz ?? 0,
        rme: b.stats?.rme ?? 0,
        samples: b.stats?.sample.length ?? 0,
        ...(per === undefined ? {} : { deliveriesPerSec: (b.hz ?? 0) * per }),
      });
      progress(name);
    });
    suite.on('error', (event: Benchmark.Event) => reject((event.target as unknown as Benchmark).error));
    suite.on('complete', () => {
      if (one.received === 0) reject(new Error('micro-benchmark: the sessions received nothing'));
      else resolve(rows);
    });
    suite.run({ async: true });
  });
}
