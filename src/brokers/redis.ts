// Types only: the user's own client is what runs, so fanout never loads ioredis itself.
import type { Redis } from 'ioredis';
import type { Broker, BrokerContext } from './broker.js';
import type { Message } from '../message.js';
import { Deadlines, Interest, brokerOptions, receive } from './common.js';
import { assertWireName, encodeEnvelope } from './envelope.js';

export interface RedisBrokerOptions {
  /**
   * Your ioredis client (standalone). It publishes; the broker derives its subscriber with
   * `client.duplicate()` (a subscribed connection cannot publish) and closes only that one.
   */
  client: Redis;
  /** Prepended to every channel name to form the Redis channel, so apps can share one Redis. Default `fanout:`. */
  prefix?: string;
  /**
   * How long a publish may wait for the client to be ready and for Redis to confirm it, in ms; past that it
   * fails (counted in `stats().broker.failed`). Also bounds subscribe/unsubscribe commands. Default 2000.
   */
  timeout?: number;
}

/** The Redis broker, with a way for tests and health checks to wait until every interest change is applied. */
export interface RedisBroker extends Broker {
  readonly prefix: string;
  /** Resolves once the subscriber is ready and every queued subscribe/unsubscribe has been applied on it. */
  idle(): Promise<void>;
}

const WHERE = 'fanout redis broker';

/**
 * Cross-node broadcast over Redis pub/sub (ioredis). Each channel maps to the Redis channel `prefix + name`;
 * a node subscribes to it only while it has local sessions there. Delivery is at most once: Redis pub/sub
 * keeps nothing for a node that is disconnected.
 *
 * The subscriber is derived with `autoResubscribe: false` and no offline queue: the broker itself resubscribes
 * every wanted channel on each `ready`, so the state after a reconnect is exactly what the registry wants
 * whatever options the user's client carries. A publish is only written while the client is `ready` (never
 * parked in ioredis' offline queue); it waits at most `timeout` ms for that, then fails. One publish written
 * just before the connection dropped is resent by ioredis after the reconnect when the user's client keeps
 * `autoResendUnfulfilledCommands` (its default): if that happens after `timeout`, it was counted failed and
 * still reaches the other nodes, late.
 */
export function redisBroker(options: RedisBrokerOptions): RedisBroker {
  const opts = brokerOptions(options, 'redisBroker', ['client', 'prefix']);
  const client = opts['client'] as Redis;
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof client.duplicate !== 'function' ||
    typeof client.publish !== 'function' ||
    typeof client.status !== 'string'
  ) {
    throw new TypeError('The "client" option must be an ioredis client (new Redis(...))');
  }
  const prefix = opts['prefix'] === undefined ? 'fanout:' : opts['prefix'];
  if (typeof prefix !== 'string') throw new TypeError('The "prefix" option must be a string');
  assertWireName(prefix, 'prefix');
  return new RedisBrokerImpl(client, prefix, opts.timeout);
}

class RedisBrokerImpl implements RedisBroker {
  readonly prefix: string;
  readonly #client: Redis;
  readonly #timeout: number;
  readonly #deadlines: Deadlines;
  readonly #interest: Interest;
  /** Channels subscribed on the current subscriber connection. */
  readonly #active = new Set<string>();
  #context: BrokerContext | null = null;
  #subscriber: Redis | null = null;
  /** Bumped on every subscriber disconnect: a command that straddles one says nothing about the new connection. */
  #epoch = 0;
  /** Rejects when the current subscriber connection closes: its unanswered commands will never be answered. */
  #lost = lostSignal();
  #down = false;
  #closed = false;
  #ready: Promise<void> | null = null;
  #readyListener: (() => void) | null = null;
  readonly #started: Promise<void>;
  #markStarted!: () => void;

  constructor(client: Redis, prefix: string, timeout: number) {
    this.#client = client;
    this.prefix = prefix;
    this.#timeout = timeout;
    this.#deadlines = new Deadlines(timeout);
    this.#interest = new Interest((channel, on) => this.#apply(channel, on));
    this.#started = new Promise((resolve) => (this.#markStarted = resolve));
  }

  start(context: BrokerContext): void {
    if (this.#context !== null) throw new Error(`${WHERE}: already started (one broker per registry)`);
    this.#context = context;
    // lazyConnect clients connect on their first command; this broker never sends one before `ready`.
    if (this.#client.status === 'wait') this.#client.connect().catch((err: unknown) => context.error(err));
    const sub = this.#client.duplicate({
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
      lazyConnect: false,
    });
    this.#subscriber = sub;
    sub.on('messageBuffer', (key: Buffer, data: Buffer) => {
      const name = key.toString('utf8');
      if (!name.startsWith(this.prefix)) return;
      receive(context, name.slice(this.prefix.length), data, WHERE);
    });
    sub.on('ready', () => {
      if (this.#closed) return;
      this.#down = false;
      for (const channel of this.#interest.desired) {
        this.#interest.reconcile(channel).catch((err: unknown) => context.error(err));
      }
    });
    sub.on('close', () => {
      this.#epoch++;
      this.#active.clear();
      this.#lost.reject(new Error(`${WHERE}: subscriber connection closed`));
      this.#lost = lostSignal();
      if (!this.#closed && !this.#down) {
        this.#down = true;
        context.error(
          new Error(`${WHERE}: subscriber connection lost; cross-node delivery to this node is paused`),
        );
      }
    });
    // Without a listener ioredis prints every reconnect failure; one report per outage is enough.
    sub.on('error', (err: Error) => {
      if (!this.#closed && !this.#down) context.error(err);
    });
    this.#interest.open();
    this.#markStarted();
  }

  subscribe(channel: string): Promise<void> {
    return this.#interest.want(channel, true);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.#interest.want(channel, false);
  }

  async idle(): Promise<void> {
    await this.#started;
    const sub = this.#subscriber;
    // The `ready` handler (registered first) queues the resubscriptions before this wait ends.
    if (sub !== null && sub.status !== 'ready' && !this.#closed)
      await new Promise((resolve) => sub.once('ready', resolve));
    await this.#interest.idle();
  }

  publish(channels: readonly string[], message: Message): Promise<void> {
    try {
      return this.#publish(channels, message);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #publish(channels: readonly string[], message: Message): Promise<void> {
    const context = this.#context;
    if (this.#closed) return Promise.reject(new Error(`${WHERE}: closed`));
    // The registry starts its broker a microtask after construction; a publish before that waits for it.
    if (context === null) {
      return this.#deadlines.wrap(
        this.#started.then(() => this.#publish(channels, message)),
        () => new Error(`${WHERE}: not started within ${this.#timeout} ms; publish not sent`),
      );
    }
    const envelope = encodeEnvelope(context.nodeId, channels, message);
    const status = this.#client.status;
    if (status === 'ready')
      return this.#deadlines.wrap(this.#send(channels, envelope), () => this.#timedOut(status));
    if (status === 'end' || status === 'close') {
      return Promise.reject(new Error(`${WHERE}: the Redis client is ${status}; publish not sent`));
    }
    // Connecting or reconnecting: wait for ready, at most `timeout` ms; an expired publish is never sent late.
    let expired = false;
    return this.#deadlines.wrap(
      this.#whenReady().then(() => {
        if (expired) return;
        return this.#send(channels, envelope);
      }),
      () => this.#timedOut(this.#client.status),
      () => (expired = true),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Publishes in flight settle first (each within `timeout`): closing must not turn them into failures.
    await this.#deadlines.idle();
    this.#deadlines.clear(new Error(`${WHERE}: closed`));
    if (this.#readyListener !== null) this.#client.off('ready', this.#readyListener);
    const sub = this.#subscriber;
    if (sub === null) return;
    // quit() waits for Redis when connected; disconnect() when it is not (quit would wait for a reconnect).
    if (sub.status === 'ready') await sub.quit().catch(() => sub.disconnect());
    else sub.disconnect();
  }

  async #apply(channel: string, on: boolean): Promise<void> {
    const sub = this.#subscriber;
    // Not connected: the `ready` handler reconciles every wanted channel.
    if (sub === null || sub.status !== 'ready' || this.#closed) return;
    if (on === this.#active.has(channel)) return;
    const epoch = this.#epoch;
    const key = this.prefix + channel;
    // ioredis never answers commands that were in flight on a closed connection (autoResendUnfulfilledCommands
    // is off on the subscriber): race them with the close, so the chain does not wait out the timeout.
    const command = Promise.race([on ? sub.subscribe(key) : sub.unsubscribe(key), this.#lost.promise]);
    try {
      await this.#deadlines.wrap(
        command,
        () =>
          new Error(
            `${WHERE}: Redis did not confirm ${on ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} ${key} in ${this.#timeout} ms`,
          ),
      );
    } catch (err) {
      if (epoch !== this.#epoch || this.#closed) return; // the reconnect resubscribes
      // Unknown outcome: assume the opposite, so the next reconcile sends the command again (both idempotent).
      if (on) this.#active.delete(channel);
      else this.#active.add(channel);
      throw err;
    }
    if (epoch !== this.#epoch) return;
    if (on) this.#active.add(channel);
    else this.#active.delete(channel);
  }

  #send(channels: readonly string[], envelope: Buffer): Promise<void> {
    const client = this.#client;
    if (channels.length === 1)
      return client.publish(this.prefix + (channels[0] as string), envelope).then(noop);
    return Promise.all(channels.map((c) => client.publish(this.prefix + c, envelope))).then(noop);
  }

  #whenReady(): Promise<void> {
    return (this.#ready ??= new Promise<void>((resolve) => {
      this.#readyListener = () => {
        this.#ready = null;
        this.#readyListener = null;
        resolve();
      };
      this.#client.once('ready', this.#readyListener);
    }));
  }

  #timedOut(status: string): Error {
    return new Error(
      `${WHERE}: publish not confirmed by Redis within ${this.#timeout} ms (client ${status})`,
    );
  }
}

function noop(): void {}

function lostSignal(): { promise: Promise<never>; reject: (err: Error) => void } {
  let reject!: (err: Error) => void;
  const promise = new Promise<never>((_resolve, r) => (reject = r));
  promise.catch(noop); // nobody may be racing it when it fires
  return { promise, reject };
}
