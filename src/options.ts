import { randomUUID } from 'node:crypto';
import type { Broker } from './broker.js';
import type { Authenticate, ChannelResolver } from './upgrade.js';
import {
  assertCloseCode,
  assertFunction,
  assertInteger,
  assertKnownKeys,
  assertObject,
  describe,
} from './assert.js';
import { resolveDoorOptions, type OriginPolicy, type ResolvedDoorOptions } from './door.js';
import { DEFAULT_INBOUND_LIMIT, type InboundLimitOptions } from './inbound.js';
import { resolveStreamOptions, type ResolvedStreamOptions, type StreamOptions } from './streams/options.js';

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
  /**
   * Buffered bytes above which a session is *behind* (at most `limit`): a `volatile` message is skipped for it
   * and a keyed message is held, replacing the held one with the same key, until it catches up. Default: half
   * of `limit`.
   */
  softLimit: number;
  /**
   * The most keyed messages held for one session that is behind (its memory is bounded by this many message
   * references); a message with a new key past it is sent as if it had no key. 0 turns conflation off.
   * Default 1024.
   */
  maxKeys: number;
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
  /** Stream channels: positions, history and recovery (docs/streams.md). Default: none, every channel raw. */
  streams?: StreamOptions;
}

export interface ResolvedRegistryOptions {
  readonly backpressure: Readonly<BackpressureOptions>;
  readonly closeTimeout: number;
  readonly broker: Broker | undefined;
  readonly nodeId: string;
  readonly streams: ResolvedStreamOptions | undefined;
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
  /**
   * Browser origins allowed besides the server's own (docs/security.md). An upgrade that carries `Origin` is
   * accepted when it is the same host and port as the request's `Host`, or allowed here; any other gets 403.
   * Requests without `Origin` (servers, native apps) are not affected. Exact origins, wildcard subdomains
   * (`'https://*.example.com'`), `'*'` for any, or a function. Default: none (same origin only).
   */
  origins?: OriginPolicy;
  /** Most sessions (and handshakes in progress) this transport holds; past it, 503. Default: no limit. */
  maxSessions?: number;
  /** Most sessions (and handshakes in progress) per client address; past it, 429. Default: no limit. */
  maxSessionsPerAddress?: number;
  /**
   * Takes the client's address from this header (its last entry) instead of the socket: set it only behind a
   * proxy you run that always sets it, e.g. `'x-forwarded-for'`. It becomes `session.remoteAddress`.
   */
  addressHeader?: string;
  /** Longest time `authenticate` may take, in ms; past it the upgrade gets 503 and an `error`. Default 10000. */
  handshakeTimeout?: number;
  /**
   * How much one session may send (a token bucket for messages and one for bytes); past it the session is
   * closed with 1008 and counted in `stats().inboundLimited`. `false` turns it off. Default
   * `DEFAULT_INBOUND_LIMIT` (100 messages/s with bursts of 200, 1 MiB/s with bursts of 2 MiB).
   */
  inboundLimit?: Partial<InboundLimitOptions> | false;
}

export const DEFAULT_BACKPRESSURE: Readonly<BackpressureOptions> = Object.freeze({
  limit: 1024 * 1024,
  policy: 'close',
  closeCode: 1013,
  softLimit: 512 * 1024,
  maxKeys: 1024,
});

export const DEFAULT_HEARTBEAT: Readonly<HeartbeatOptions> = Object.freeze({
  interval: 30_000,
  timeout: 10_000,
});

export const DEFAULT_TRANSPORT = Object.freeze({ path: '/:channel', maxPayload: 64 * 1024 });

/** The `coalesceWindow` default of the transports, in ms. */
export const DEFAULT_COALESCE_WINDOW = 5;
/** The largest `coalesceWindow`, in ms: a window is meant to be a few milliseconds. */
export const MAX_COALESCE_WINDOW = 100;

/** A transport's `coalesceWindow` option (ms, 0 to 100; undefined: the default); errors name the option. */
export function resolveCoalesceWindow(value: unknown): number {
  const window = value ?? DEFAULT_COALESCE_WINDOW;
  if (typeof window !== 'number' || Number.isNaN(window)) {
    throw new TypeError('The "coalesceWindow" option must be a number of milliseconds');
  }
  if (!(window >= 0 && window <= MAX_COALESCE_WINDOW)) {
    throw new RangeError(
      `The "coalesceWindow" option must be between 0 and ${MAX_COALESCE_WINDOW} ms; got ${window}`,
    );
  }
  return window;
}

export function resolveBackpressure(
  value: unknown,
  base: Readonly<BackpressureOptions>,
  name = 'backpressure',
): Readonly<BackpressureOptions> {
  if (value === undefined) return base;
  assertObject(value, name);
  assertKnownKeys(value, ['limit', 'policy', 'closeCode', 'softLimit', 'maxKeys'], `"${name}"`);
  const out = { ...base };
  if (value['limit'] !== undefined) {
    out.limit = assertInteger(value['limit'], `${name}.limit`, 1);
    // A soft limit left unset follows the limit it is given with.
    if (value['softLimit'] === undefined) out.softLimit = Math.floor(out.limit / 2);
  }
  if (value['softLimit'] !== undefined) {
    out.softLimit = assertInteger(value['softLimit'], `${name}.softLimit`, 0, out.limit);
  }
  if (value['maxKeys'] !== undefined) {
    out.maxKeys = assertInteger(value['maxKeys'], `${name}.maxKeys`, 0, 1_000_000);
  }
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
  assertKnownKeys(
    options,
    ['backpressure', 'closeTimeout', 'broker', 'nodeId', 'streams'],
    'SessionRegistry',
  );
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
    streams: resolveStreamOptions(options['streams'], broker !== undefined),
  });
}

export interface ResolvedTransportOptions<TData> {
  readonly path: string | readonly string[];
  readonly authenticate: Authenticate<TData> | undefined;
  readonly channels: ChannelResolver | undefined;
  readonly heartbeat: Readonly<HeartbeatOptions> | false;
  readonly maxPayload: number;
  readonly backpressure: Readonly<BackpressureOptions>;
  /** Origins, caps and the handshake bound (the upgrade gate's). */
  readonly door: ResolvedDoorOptions;
  readonly inboundLimit: Readonly<InboundLimitOptions> | false;
}

/**
 * Validates `inboundLimit`: `false`, or an object of positive integers; `byteBurst` must let a message of
 * `maxPayload` bytes through (unset, it grows to `maxPayload` when that is larger than the default).
 */
export function resolveInboundLimit(
  value: unknown,
  maxPayload: number,
  name = 'inboundLimit',
): Readonly<InboundLimitOptions> | false {
  if (value === false) return false;
  if (value === undefined) value = {};
  assertObject(value, name);
  const keys = ['messagesPerSecond', 'messageBurst', 'bytesPerSecond', 'byteBurst'] as const;
  assertKnownKeys(value, keys, `"${name}"`);
  const out = { ...DEFAULT_INBOUND_LIMIT, byteBurst: Math.max(DEFAULT_INBOUND_LIMIT.byteBurst, maxPayload) };
  for (const key of keys) {
    if (value[key] !== undefined) out[key] = assertInteger(value[key], `${name}.${key}`, 1);
  }
  if (out.byteBurst < maxPayload) {
    throw new RangeError(
      `The "${name}.byteBurst" option must be at least maxPayload (${maxPayload}); got ${out.byteBurst}`,
    );
  }
  return Object.freeze(out);
}

/** Validates the options every transport shares; `extra` lists the transport's own keys. */
export function resolveTransportOptions<TData>(
  options: Record<string, unknown>,
  registryBackpressure: Readonly<BackpressureOptions>,
  where: string,
  extra: readonly string[],
): ResolvedTransportOptions<TData> {
  assertKnownKeys(options, [...TRANSPORT_KEYS, ...extra], where);
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
    door: resolveDoorOptions(options),
    inboundLimit: resolveInboundLimit(options['inboundLimit'], maxPayload),
  };
}

const TRANSPORT_KEYS = [
  'path',
  'authenticate',
  'channels',
  'heartbeat',
  'maxPayload',
  'backpressure',
  'origins',
  'maxSessions',
  'maxSessionsPerAddress',
  'addressHeader',
  'handshakeTimeout',
  'inboundLimit',
];
