import { assertInteger, assertKnownKeys, assertObject, type BrokerContext } from '../src/index.js';
import { decodeEnvelope } from './envelope.js';

/** Bounds on what may wait for the broker at once; past either, a publish fails at once. */
export interface MaxPending {
  /** Publishes. Default 10,000. */
  messages?: number;
  /** Bytes of their envelopes (counted once per channel). Default 16 MiB. */
  bytes?: number;
}

export const DEFAULT_MAX_PENDING: Readonly<Required<MaxPending>> = Object.freeze({
  messages: 10_000,
  bytes: 16 * 1024 * 1024,
});

/** @internal What every broker factory shares, validated. */
export interface CommonBrokerOptions {
  timeout: number;
  maxPending: Readonly<Required<MaxPending>>;
}

/** @internal Validates a broker factory's options object, its `timeout` and its `maxPending`. */
export function brokerOptions(
  options: unknown,
  where: string,
  known: readonly string[],
): Record<string, unknown> & CommonBrokerOptions {
  assertObject(options, 'options');
  assertKnownKeys(options, [...known, 'timeout', 'maxPending'], where);
  const timeout =
    options['timeout'] === undefined ? 2000 : assertInteger(options['timeout'], 'timeout', 1, 600_000);
  let maxPending = DEFAULT_MAX_PENDING;
  const max = options['maxPending'];
  if (max !== undefined) {
    assertObject(max, 'maxPending');
    assertKnownKeys(max, ['messages', 'bytes'], '"maxPending"');
    maxPending = Object.freeze({
      messages:
        max['messages'] === undefined
          ? DEFAULT_MAX_PENDING.messages
          : assertInteger(max['messages'], 'maxPending.messages', 1, 10_000_000),
      bytes:
        max['bytes'] === undefined
          ? DEFAULT_MAX_PENDING.bytes
          : assertInteger(max['bytes'], 'maxPending.bytes', 1024, 2 ** 40),
    });
  }
  return { ...options, timeout, maxPending };
}

/**
 * @internal Throws a TypeError naming `option` unless `value` is an object with these members (by `typeof`):
 * the user's client is checked before anything is wired to it.
 */
export function assertClient(
  value: unknown,
  option: string,
  members: Record<string, 'function' | 'string'>,
  expected: string,
): void {
  const ok =
    typeof value === 'object' &&
    value !== null &&
    Object.entries(members).every(([key, type]) => typeof (value as Record<string, unknown>)[key] === type);
  if (!ok) throw new TypeError(`The "${option}" option must be ${expected}`);
}

/**
 * @internal Delivers one received envelope: echoes of this node are skipped, anything malformed or not naming
 * the channel that carried it is counted and reported through `context.malformed` and ignored. Runs inside the
 * client library's event handler: never throws.
 */
export function receive(context: BrokerContext, via: string, bytes: Uint8Array, where: string): void {
  let envelope;
  try {
    envelope = decodeEnvelope(bytes, context.nodeId);
    if (envelope !== null && !envelope.channels.includes(via)) {
      throw new Error(`its channels do not include ${JSON.stringify(via)}`);
    }
  } catch (err) {
    report(
      context,
      new Error(
        `${where}: ignored a malformed message on channel ${JSON.stringify(via)}: ${(err as Error).message}`,
      ),
      true,
    );
    return;
  }
  if (envelope === null) return;
  try {
    context.deliver(envelope.id, envelope.channels, via, envelope.message);
  } catch (err) {
    report(context, err, false);
  }
}

/** Reports without ever throwing into the client library (a third-party context may throw). */
function report(context: BrokerContext, err: unknown, malformed: boolean): void {
  try {
    if (malformed) context.malformed(err);
    else context.error(err);
  } catch {
    // Nothing left to tell; the client library must keep running.
  }
}

/**
 * @internal Serializes interest changes per channel. The registry says what it wants (`want`); each change
 * queues one reconcile on the channel's chain, and a reconcile applies the state wanted *when it runs*, so a
 * quick subscribe/unsubscribe/subscribe ends in the last state, never in a lost or leaked subscription.
 * Nothing runs before `open()` (the broker's start).
 */
export class Interest {
  readonly desired = new Set<string>();
  readonly #chains = new Map<string, Promise<void>>();
  readonly #apply: (channel: string, on: boolean) => Promise<void>;
  readonly #gate: Promise<void>;
  #open!: () => void;

  constructor(apply: (channel: string, on: boolean) => Promise<void>) {
    this.#apply = apply;
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  /** Lets queued reconciles run (call once the broker has started). */
  open(): void {
    this.#open();
  }

  /** Records the wanted state and queues its reconcile; resolves when that reconcile finished. */
  want(channel: string, on: boolean): Promise<void> {
    if (on) this.desired.add(channel);
    else this.desired.delete(channel);
    return this.reconcile(channel);
  }

  /** Queues a reconcile of `channel` to the wanted state. */
  reconcile(channel: string): Promise<void> {
    return chainOn(this.#chains, channel, this.#gate, () => this.#apply(channel, this.desired.has(channel)));
  }

  /** Resolves once no reconcile is queued or running. */
  async idle(): Promise<void> {
    for (let i = 0; i < 10_000 && this.#chains.size > 0; i++) await Promise.all(this.#chains.values());
  }
}

/**
 * @internal Bounds promises in time with one timer for all of them (publishes are many; a timer each would
 * cost more than the publish). Entries expire in insertion order because they all get the same timeout.
 */
export class Deadlines {
  readonly #ms: number;
  readonly #entries = new Set<Pending>();
  #timer: NodeJS.Timeout | null = null;
  #drained: (() => void) | null = null;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /**
   * Settles like `promise`, or rejects with `error()` after the timeout; `onExpire` runs then (so work still
   * waiting to start can be cancelled).
   */
  wrap<T>(promise: Promise<T>, error: () => Error, onExpire?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { at: performance.now() + this.#ms, reject, error, onExpire };
      this.#entries.add(entry);
      if (this.#timer === null) this.#schedule(this.#ms);
      promise.then(
        (value) => {
          if (this.#settle(entry)) resolve(value);
        },
        (err: unknown) => {
          if (this.#settle(entry)) reject(err);
        },
      );
    });
  }

  /** Resolves once nothing is pending (each entry settles or expires within the timeout). */
  idle(): Promise<void> {
    if (this.#entries.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#drained;
      this.#drained = () => {
        previous?.();
        resolve();
      };
    });
  }

  #settle(entry: Pending): boolean {
    if (!this.#entries.delete(entry)) return false;
    if (this.#entries.size === 0 && this.#drained !== null) {
      const drained = this.#drained;
      this.#drained = null;
      queueMicrotask(drained);
    }
    return true;
  }

  /** Rejects everything pending with `error` and stops the timer. */
  clear(error: Error): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const entry of [...this.#entries]) {
      this.#settle(entry);
      expire(entry, error);
    }
  }

  #schedule(delay: number): void {
    this.#timer = setTimeout(() => this.#sweep(), Math.max(1, Math.ceil(delay)));
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = null;
    const now = performance.now();
    for (const entry of this.#entries) {
      if (entry.at > now) {
        this.#schedule(entry.at - now);
        return;
      }
      this.#settle(entry);
      expire(entry, entry.error());
    }
  }
}

interface Pending {
  at: number;
  reject: (err: Error) => void;
  error: () => Error;
  onExpire: (() => void) | undefined;
}

function expire(entry: Pending, error: Error): void {
  entry.onExpire?.();
  entry.reject(error);
}

/**
 * @internal Runs `step` after everything already chained on `key` (or after `start` when nothing is), so the
 * steps of one key run one at a time, in call order; a failed step does not stop the next. The key is
 * forgotten once its last step settled. Resolves or rejects like `step`.
 */
export function chainOn<T>(
  chains: Map<string, Promise<void>>,
  key: string,
  start: Promise<void>,
  step: () => Promise<T>,
): Promise<T> {
  const next = (chains.get(key) ?? start).then(step);
  const settled = next.then(
    () => undefined,
    () => undefined,
  );
  chains.set(key, settled);
  void settled.then(() => {
    if (chains.get(key) === settled) chains.delete(key);
  });
  return next;
}
