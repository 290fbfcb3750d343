import { assertKnownKeys, assertObject, describe } from '../assert.js';
import { memoryHistory, type History } from './history.js';

/** Which channels are streams: exact names, patterns, or a predicate. */
export type StreamMatcher = string | RegExp | readonly (string | RegExp)[] | ((channel: string) => boolean);

/** The registry's `streams` option. */
export interface StreamOptions {
  /**
   * The stream channels: a name, a RegExp, an array of them, or a predicate. Every other channel stays raw
   * (plain payloads, no envelope, no position).
   */
  channels: StreamMatcher;
  /**
   * Where positions and history live. Default: `memoryHistory()` (100 messages, two minutes per channel, this
   * process only). With a broker it must be a fleet engine (`redisHistory`, `natsHistory`).
   */
  history?: History;
  /**
   * Longest a session waits for its recovery (history read) before it is told `unavailable`, in ms.
   * Default 5000.
   */
  recoveryTimeout?: number;
}

export interface ResolvedStreamOptions {
  readonly isStream: (channel: string) => boolean;
  readonly history: History;
  readonly recoveryTimeout: number;
}

export function resolveStreamOptions(value: unknown, hasBroker: boolean): ResolvedStreamOptions | undefined {
  if (value === undefined) return undefined;
  assertObject(value, 'streams');
  assertKnownKeys(value, ['channels', 'history', 'recoveryTimeout'], '"streams"');
  const isStream = matcher(value['channels']);
  const history = value['history'] ?? memoryHistory();
  assertObject(history, 'streams.history');
  for (const m of ['start', 'publish', 'subscribe', 'unsubscribe', 'read', 'close']) {
    if (typeof history[m] !== 'function')
      throw new TypeError(`The "streams.history" option must implement ${m}()`);
  }
  if (hasBroker && history['fleet'] !== true) {
    throw new TypeError(
      'The "streams.history" option must be a fleet history (redisHistory, natsHistory) when a broker is set: ' +
        'an in-memory history gives each node its own positions',
    );
  }
  const timeout = value['recoveryTimeout'] ?? 5000;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 600_000) {
    throw new RangeError(
      `The "streams.recoveryTimeout" option must be an integer between 1 and 600000; got ${describe(timeout)}`,
    );
  }
  return Object.freeze({ isStream, history: history as unknown as History, recoveryTimeout: timeout });
}

function matcher(value: unknown): (channel: string) => boolean {
  if (typeof value === 'function') {
    const predicate = value as (channel: string) => boolean;
    return (channel) => predicate(channel) === true;
  }
  const list = typeof value === 'string' || value instanceof RegExp ? [value] : value;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(
      `The "streams.channels" option must be a channel name, a RegExp, an array of them or a function; got ${describe(value)}`,
    );
  }
  const names = new Set<string>();
  const patterns: RegExp[] = [];
  for (const item of list) {
    if (typeof item === 'string' && item.length > 0) names.add(item);
    else if (item instanceof RegExp) patterns.push(new RegExp(item.source, item.flags.replace(/[gy]/g, '')));
    else {
      throw new TypeError(
        `The "streams.channels" option must hold non-empty names and RegExps; got ${describe(item)}`,
      );
    }
  }
  if (patterns.length === 0) return (channel) => names.has(channel);
  return (channel) => names.has(channel) || patterns.some((p) => p.test(channel));
}
