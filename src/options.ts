import { randomUUID } from 'node:crypto';
import type { Broker } from './brokers/broker.js';
import type { Authenticate, ChannelResolver } from './upgrade.js';

/** What happens when a session's buffered bytes pass `limit`. */
export interface BackpressureOptions {
  /** Buffered bytes above which a session is slow. Default 1 MiB. */
  limit: number;
  /**
   * `drop`: the message is not sent to that session (counted, `drop` event), the session stays;
   * `close`: the message is dropped and the session is closed with `closeCode` so the client reconnects and
   * resynchronizes. Default `close`.
   */
  policy: 'drop' | 'close';
  /** Close code for the `close` policy. Default 1013 (Try Again Later). */
  closeCode: number;
}

export interface RegistryOptions {
  /** Per-session backpressure, shared by every transport (a transport may override it). */
  backpressure?: Partial<BackpressureOptions>;
  /** How long `close()` waits for closing handshakes before terminating what is left, in ms. Default 3000. */
  closeTimeout?: number;
  /** A broker for more than one node. Default: none (one node, nothing to run). */
  broker?: Broker;
  /** This node's id for the broker's echo suppression. Default: a random UUID. */
  nodeId?: string;
}

export interface ResolvedRegistryOptions {
  readonly backpressure: Readonly<BackpressureOptions>;
  readonly closeTimeout: number;
  readonly broker: Broker | undefined;
  readonly nodeId: string;
}

export interface HeartbeatOptions {
  /** How often a session is pinged, in ms. Default 30000. */
  interval: number;
  /** How long a pong may take before the session is terminated, in ms. Default 10000. */
  timeout: number;
}

/** Options every transport takes, with the same meaning. */
export interface TransportOptions<TData> {
  /** Path pattern(s) with `:params`, e.g. `/alarms/:channel`. Other paths get 404. Default `/:channel`. */
  path?: string | readonly string[];
  /** Decides each upgrade before the 101. Default: accept everyone with `data` undefined. */
  authenticate?: Authenticate<TData>;
  /** The session's channels from its request. Default: the `:channel` parameter, else the path. */
  channels?: ChannelResolver;
  /** Ping and terminate peers that do not answer, or `false` to turn off. */
  heartbeat?: Partial<HeartbeatOptions> | false;
  /** Largest inbound message in bytes; a larger one closes the session with 1009. Default 64 KiB. */
  maxPayload?: number;
  /** Overrides the registry's backpressure for this transport's sessions. */
  backpressure?: Partial<BackpressureOptions>;
}

export const DEFAULT_BACKPRESSURE: Readonly<BackpressureOptions> = Object.freeze({
  limit: 1024 * 1024,
  policy: 'close',
  closeCode: 1013,
});

export const DEFAULT_HEARTBEAT: Readonly<HeartbeatOptions> = Object.freeze({
  interval: 30_000,
  timeout: 10_000,
});

export const DEFAULT_TRANSPORT = Object.freeze({ path: '/:channel', maxPayload: 64 * 1024 });

/** Throws a TypeError naming the first key of `options` that is not in `known`. */
export function assertKnownKeys(options: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option "${key}" for ${where}`);
  }
}

export function assertObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`The "${name}" option must be an object; got ${describe(value)}`);
  }
}

export function assertInteger(
  value: unknown,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`The "${name}" option must be an integer; got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`The "${name}" option must be between ${min} and ${max}; got ${value}`);
  }
  return value;
}

export function assertFunction(value: unknown, name: string): void {
  if (typeof value !== 'function') {
    throw new TypeError(`The "${name}" option must be a function; got ${describe(value)}`);
  }
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return typeof value === 'object' || typeof value === 'function'
    ? `a ${typeof value}`
    : `${typeof value} ${String(value)}`;
}

/** Validates a close code as ws and browsers accept it: 1000, 1001-1014 but reserved ones, 3000-4999. */
export function assertCloseCode(code: unknown, reason: unknown): void {
  if (
    typeof code !== 'number' ||
    !Number.isInteger(code) ||
    !(
      (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
      (code >= 3000 && code <= 4999)
    )
  ) {
    throw new RangeError(`The "code" argument must be a valid WebSocket close code; got ${String(code)}`);
  }
  if (typeof reason !== 'string') throw new TypeError('The "reason" argument must be a string');
  if (Buffer.byteLength(reason) > 123)
    throw new RangeError('The "reason" argument must be at most 123 bytes');
}

export function resolveBackpressure(
  value: unknown,
  base: Readonly<BackpressureOptions>,
  name = 'backpressure',
): Readonly<BackpressureOptions> {
  if (value === undefined) return base;
  assertObject(value, name);
  assertKnownKeys(value, ['limit', 'policy', 'closeCode'], `"${name}"`);
  const out = { ...base };
  if (value['limit'] !== undefined) out.limit = assertInteger(value['limit'], `${name}.limit`, 1);
  if (value['policy'] !== undefined) {
    if (value['policy'] !== 'drop' && value['policy'] !== 'close') {
      throw new TypeError(
        `The "${name}.policy" option must be "drop" or "close"; got ${describe(value['policy'])}`,
      );
    }
    out.policy = value['policy'];
  }
  if (value['closeCode'] !== undefined) {
    const code = assertInteger(value['closeCode'], `${name}.closeCode`, 1000, 4999);
    try {
      assertCloseCode(code, '');
    } catch {
      throw new RangeError(
        `The "${name}.closeCode" option must be a valid WebSocket close code; got ${code}`,
      );
    }
    out.closeCode = code;
  }
  return Object.freeze(out);
}

export function resolveRegistryOptions(options: unknown): ResolvedRegistryOptions {
  if (options === undefined) options = {};
  assertObject(options, 'options');
  assertKnownKeys(options, ['backpressure', 'closeTimeout', 'broker', 'nodeId'], 'SessionRegistry');
  const closeTimeout =
    options['closeTimeout'] === undefined
      ? 3000
      : assertInteger(options['closeTimeout'], 'closeTimeout', 0, 600_000);
  const broker = options['broker'];
  if (broker !== undefined) {
    assertObject(broker, 'broker');
    for (const m of ['start', 'subscribe', 'unsubscribe', 'publish', 'close']) {
      if (typeof broker[m] !== 'function') throw new TypeError(`The "broker" option must implement ${m}()`);
    }
  }
  const nodeId = options['nodeId'];
  if (nodeId !== undefined && (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > 255)) {
    throw new TypeError(`The "nodeId" option must be a non-empty string of at most 255 characters`);
  }
  return Object.freeze({
    backpressure: resolveBackpressure(options['backpressure'], DEFAULT_BACKPRESSURE),
    closeTimeout,
    broker: broker as Broker | undefined,
    nodeId: (nodeId as string | undefined) ?? randomUUID(),
  });
}

export interface ResolvedTransportOptions<TData> {
  readonly path: string | readonly string[];
  readonly authenticate: Authenticate<TData> | undefined;
  readonly channels: ChannelResolver | undefined;
  readonly heartbeat: Readonly<HeartbeatOptions> | false;
  readonly maxPayload: number;
  readonly backpressure: Readonly<BackpressureOptions>;
}

/** Validates the options every transport shares; `extra` lists the transport's own keys. */
export function resolveTransportOptions<TData>(
  options: Record<string, unknown>,
  registryBackpressure: Readonly<BackpressureOptions>,
  where: string,
  extra: readonly string[],
): ResolvedTransportOptions<TData> {
  assertKnownKeys(
    options,
    ['path', 'authenticate', 'channels', 'heartbeat', 'maxPayload', 'backpressure', ...extra],
    where,
  );
  const path = (options['path'] ?? DEFAULT_TRANSPORT.path) as string | readonly string[];
  if (options['authenticate'] !== undefined) assertFunction(options['authenticate'], 'authenticate');
  if (options['channels'] !== undefined) assertFunction(options['channels'], 'channels');
  let heartbeat: Readonly<HeartbeatOptions> | false = DEFAULT_HEARTBEAT;
  const hb = options['heartbeat'];
  if (hb === false) heartbeat = false;
  else if (hb !== undefined) {
    assertObject(hb, 'heartbeat');
    assertKnownKeys(hb, ['interval', 'timeout'], '"heartbeat"');
    heartbeat = Object.freeze({
      interval:
        hb['interval'] === undefined
          ? DEFAULT_HEARTBEAT.interval
          : assertInteger(hb['interval'], 'heartbeat.interval', 10, 2 ** 31 - 1),
      timeout:
        hb['timeout'] === undefined
          ? DEFAULT_HEARTBEAT.timeout
          : assertInteger(hb['timeout'], 'heartbeat.timeout', 10, 2 ** 31 - 1),
    });
  }
  const maxPayload =
    options['maxPayload'] === undefined
      ? DEFAULT_TRANSPORT.maxPayload
      : assertInteger(options['maxPayload'], 'maxPayload', 1, 2 ** 31 - 1);
  return {
    path,
    authenticate: options['authenticate'] as Authenticate<TData> | undefined,
    channels: options['channels'] as ChannelResolver | undefined,
    heartbeat,
    maxPayload,
    backpressure: resolveBackpressure(options['backpressure'], registryBackpressure),
  };
}
