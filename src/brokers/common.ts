import type { BrokerContext } from './broker.js';
import { decodeEnvelope } from './envelope.js';
import { assertInteger, assertKnownKeys, assertObject } from '../options.js';

/** @internal Validates a broker factory's options object and its `timeout`. */
export function brokerOptions(
  options: unknown,
  where: string,
  known: readonly string[],
): Record<string, unknown> & { timeout: number } {
  assertObject(options, 'options');
  assertKnownKeys(options, [...known, 'timeout'], where);
  const timeout =
    options['timeout'] === undefined ? 2000 : assertInteger(options['timeout'], 'timeout', 1, 600_000);
  return { ...options, timeout };
}

/**
 * @internal Delivers one received envelope: echoes of this node are skipped, anything malformed or not naming
 * the channel that carried it is reported through `context.error` and ignored. Never throws.
 */
export function receive(context: BrokerContext, via: string, bytes: Uint8Array, where: string): void {
  let envelope;
  try {
    envelope = decodeEnvelope(bytes, context.nodeId);
    if (envelope !== null && !envelope.channels.includes(via)) {
      throw new Error(`its channels do not include ${JSON.stringify(via)}`);
    }
  } catch (err) {
    context.error(
      new Error(
        `${where}: ignored a malformed message on channel ${JSON.stringify(via)}: ${(err as Error).message}`,
      ),
    );
    return;
  }
  if (envelope === null) return;
  try {
    context.deliver(envelope.channels, via, envelope.message);
  } catch (err) {
    // Inside the client library's event handler: a throw here would reach ioredis/NATS internals.
    context.error(err);
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
    const previous = this.#chains.get(channel) ?? this.#gate;
    const next = previous.then(() => this.#apply(channel, this.desired.has(channel)));
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(channel, settled);
    void settled.then(() => {
      if (this.#chains.get(channel) === settled) this.#chains.delete(channel);
    });
    return next;
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
