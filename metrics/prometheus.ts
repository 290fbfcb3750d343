/**
 * Prometheus metrics for a SessionRegistry, through prom-client (an optional peer dependency: only this module
 * imports it). Almost every figure is read from `registry.stats()` when Prometheus scrapes, so binding adds no
 * work to a publish or a send; the one exception is the fan-out duration histogram (two clock reads and one
 * allocation-free observation per publish, see duration.ts; nothing at all when metrics are not bound). Labels are bounded: a transport
 * name, a drop reason, an HTTP status, a close code class; never a session or a channel name.
 */
import { Counter, Gauge, register as globalRegister, type Metric, type Registry } from 'prom-client';
import { SessionRegistry, type RegistryStats, type Session, type UpgradeRequest } from '../src/index.js';
import { assertKnownKeys, assertObject, describe } from '../src/index.js';
import { DurationHistogram } from './duration.js';

export interface PrometheusOptions {
  /** The prom-client Registry to register the metrics in. Default: prom-client's global `register`. */
  register?: Registry;
  /**
   * Buckets of `fanout_publish_duration_seconds`, in seconds, increasing. Default 10 µs to 1 s:
   * `DEFAULT_FANOUT_BUCKETS`.
   */
  buckets?: readonly number[];
}

/** What `bindPrometheus` returns. */
export interface PrometheusBinding {
  /** The prom-client Registry the metrics are in. */
  readonly register: Registry;
  /** The metric names, all starting with `fanout_`. */
  readonly names: readonly string[];
  /** Removes the metrics from the Registry and stops observing the SessionRegistry. Idempotent. */
  unbind(): void;
}

export const DEFAULT_FANOUT_BUCKETS: readonly number[] = Object.freeze([
  0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
]);

/**
 * The close code as a bounded label value: the code itself for the codes RFC 6455 and IANA define
 * (1000-1015), `3xxx` for codes registered for libraries, `4xxx` for application codes.
 */
export function closeCodeClass(code: number): string {
  if (code >= 1000 && code <= 1015) return String(code);
  if (code >= 3000 && code <= 3999) return '3xxx';
  if (code >= 4000 && code <= 4999) return '4xxx';
  return 'other';
}

type Read = (stats: RegistryStats) => number;

/**
 * Registers fanout's metrics for `registry` in a prom-client Registry. One SessionRegistry per prom-client
 * Registry: binding a second one to the same Registry throws (the names would collide).
 */
export function bindPrometheus(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  registry: SessionRegistry<any, any>,
  options: PrometheusOptions = {},
): PrometheusBinding {
  if (!(registry instanceof SessionRegistry)) {
    throw new TypeError(`The "registry" argument must be a SessionRegistry; got ${describe(registry)}`);
  }
  const raw: unknown = options;
  assertObject(raw, 'options');
  assertKnownKeys(raw, ['register', 'buckets'], 'bindPrometheus');
  const register = options.register ?? globalRegister;
  if (typeof (register as Partial<Registry> | null)?.registerMetric !== 'function') {
    throw new TypeError(`The "register" option must be a prom-client Registry; got ${describe(register)}`);
  }
  const buckets = options.buckets === undefined ? DEFAULT_FANOUT_BUCKETS : assertBuckets(options.buckets);
  if (register.getSingleMetric('fanout_sessions') !== undefined) {
    throw new Error(
      'This prom-client Registry already has fanout metrics: bind one SessionRegistry per Registry',
    );
  }

  const registers = [register];
  const names: string[] = [];
  // Read at scrape time: a snapshot per metric costs a few objects per scrape and is never stale.
  const stats = (): RegistryStats => registry.stats();

  const counter = (name: string, help: string, read: Read): void => {
    names.push(name);
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(Math.max(0, read(stats())));
      },
    });
  };
  const gauge = (name: string, help: string, read: Read): void => {
    names.push(name);
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(stats()));
      },
    });
  };

  // Sessions per transport, kept from open/close events (a scrape never walks the sessions).
  const perTransport = new Map<string, number>();
  for (const session of registry.sessions()) {
    perTransport.set(session.transport, (perTransport.get(session.transport) ?? 0) + 1);
  }
  names.push('fanout_sessions');
  new Gauge({
    name: 'fanout_sessions',
    help: 'Open sessions, by transport.',
    labelNames: ['transport'],
    registers,
    collect() {
      this.reset();
      for (const [transport, n] of perTransport) this.set({ transport }, n);
    },
  });
  gauge('fanout_channels', 'Channels with at least one session.', (s) => s.channels);
  gauge('fanout_held_messages', 'Keyed messages held now for sessions that are behind.', (s) => s.held);
  gauge(
    'fanout_coalescing_publishes',
    'Publishes held now for busy channels (coalesceWindow), fanned out within the window.',
    (s) => s.coalescing,
  );
  counter('fanout_sessions_opened_total', 'Sessions opened.', (s) => s.opened);
  counter('fanout_published_total', 'Calls to publish on this node.', (s) => s.published);
  counter(
    'fanout_delivered_total',
    'Messages handed to a session socket, one per recipient.',
    (s) => s.delivered,
  );
  counter(
    'fanout_delivered_bytes_total',
    'Payload bytes of the delivered messages.',
    (s) => s.bytesDelivered,
  );
  names.push('fanout_dropped_total');
  new Counter({
    name: 'fanout_dropped_total',
    help: 'Messages not delivered to a session, by reason (backpressure, closed, error).',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const by = stats().droppedBy;
      for (const reason of Object.keys(by) as (keyof typeof by)[]) this.inc({ reason }, by[reason]);
    },
  });
  counter(
    'fanout_skipped_total',
    'Volatile messages not sent to a session because it was behind.',
    (s) => s.skipped,
  );
  counter(
    'fanout_conflated_total',
    'Keyed messages held for a session that was behind and replaced by a newer one with the same key.',
    (s) => s.conflated,
  );
  counter(
    'fanout_backpressure_closes_total',
    'Sessions closed by the "close" backpressure policy.',
    (s) => s.closedForBackpressure,
  );
  counter(
    'fanout_inbound_limited_total',
    'Sessions closed for passing their inbound limit.',
    (s) => s.inboundLimited,
  );
  counter('fanout_errors_total', 'Failures isolated and reported through the error event.', (s) => s.errors);
  counter('fanout_broker_published_total', 'Publishes the broker accepted.', (s) => s.broker.published);
  counter('fanout_broker_failed_total', 'Publishes that could not reach the broker.', (s) => s.broker.failed);
  counter(
    'fanout_broker_unconfirmed_total',
    'Publishes handed to the broker connection but not confirmed in time (they may arrive late or never).',
    (s) => s.broker.unconfirmed,
  );
  counter(
    'fanout_broker_received_total',
    'Copies of publishes received from other nodes (one per channel this node is subscribed to).',
    (s) => s.broker.received,
  );
  counter(
    'fanout_broker_duplicates_total',
    'Second copies of a publish from another node (a broker client that sent it again): not delivered again.',
    (s) => s.broker.duplicates,
  );
  counter(
    'fanout_broker_malformed_total',
    'Messages on a broker channel that were not valid publishes (ignored, reported through error).',
    (s) => s.broker.malformed,
  );

  names.push('fanout_rejected_total', 'fanout_closes_total', 'fanout_publish_duration_seconds');
  const rejected = new Counter({
    name: 'fanout_rejected_total',
    help: 'Upgrades refused before the 101, by HTTP status (counted from when metrics were bound).',
    labelNames: ['status'],
    registers,
  });
  const closes = new Counter({
    name: 'fanout_closes_total',
    help:
      'Sessions closed, by close code: 1000-1015 as such, 3xxx and 4xxx for library and application codes ' +
      '(counted from when metrics were bound).',
    labelNames: ['code'],
    registers,
  });
  const duration = new DurationHistogram(
    'fanout_publish_duration_seconds',
    "How long one publish's local fan-out took (every transport's share; not the broker's).",
    buckets,
  );
  register.registerMetric(duration as unknown as Metric);

  const onOpen = (session: Session): void => {
    perTransport.set(session.transport, (perTransport.get(session.transport) ?? 0) + 1);
  };
  const onClose = (session: Session, code: number): void => {
    // Kept at 0 rather than deleted: the series stays (bounded by the number of transports).
    perTransport.set(session.transport, Math.max(0, (perTransport.get(session.transport) ?? 1) - 1));
    closes.inc({ code: closeCodeClass(code) });
  };
  const onReject = (_request: UpgradeRequest | null, status: number): void => {
    rejected.inc({ status: String(status) });
  };
  registry.on('open', onOpen);
  registry.on('close', onClose);
  registry.on('reject', onReject);
  const stopObserving = registry.observeFanout((seconds) => duration.observe(seconds));

  let bound = true;
  return {
    register,
    names,
    unbind() {
      if (!bound) return;
      bound = false;
      stopObserving();
      registry.off('open', onOpen);
      registry.off('close', onClose);
      registry.off('reject', onReject);
      for (const name of names) register.removeSingleMetric(name);
    },
  };
}

function assertBuckets(value: unknown): readonly number[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(`The "buckets" option must be a non-empty array of seconds; got ${describe(value)}`);
  }
  let previous = 0;
  for (const b of value) {
    if (typeof b !== 'number' || !Number.isFinite(b) || b <= previous) {
      throw new RangeError('The "buckets" option must hold positive, finite numbers in increasing order');
    }
    previous = b;
  }
  return value as readonly number[];
}
