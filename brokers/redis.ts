// The published declarations use Node's types (Buffer, http): consumers get them without `types: ["node"]`.
/// <reference types="node" preserve="true" />
// Types only: the user's own client is what runs, so fanout never loads ioredis itself.
import type { Redis } from 'ioredis';
import { UnconfirmedPublishError, type Broker, type BrokerContext } from '../src/index.js';
import { BrokerBase, type LinkState } from './base.js';
import { assertClient, brokerOptions, receive, type CommonBrokerOptions, type MaxPending } from './common.js';
import { assertWireName } from './envelope.js';

export interface RedisBrokerOptions {
  /**
   * Your ioredis client (standalone). It publishes; the broker derives its subscriber with
   * `client.duplicate()` (a subscribed connection cannot publish) and closes only that one.
   */
  client: Redis;
  /** Prepended to every channel name to form the Redis channel, so apps can share one Redis. Default `fanout:`. */
  prefix?: string;
  /**
   * How long a publish may wait for the client to be ready and for Redis to confirm it, in ms. Not written by
   * then: it fails (`stats().broker.failed`); written but not confirmed: it is unconfirmed
   * (`stats().broker.unconfirmed`). Also bounds subscribe/unsubscribe commands. Default 2000.
   */
  timeout?: number;
  /**
   * What may wait for Redis at once (publishes not yet confirmed, including unconfirmed ones the client still
   * holds); past it a publish fails at once. Default `{ messages: 10000, bytes: 16 MiB }`.
   */
  maxPending?: MaxPending;
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
 * parked in ioredis' offline queue); it waits at most `timeout` ms for that, then fails. A publish written to a
 * hung connection, or just before it dropped, is unconfirmed after `timeout`: Redis may still process it when
 * it resumes, and ioredis resends it after a reconnect when the user's client keeps
 * `autoResendUnfulfilledCommands` (its default), so it may reach the other nodes late.
 */
export function redisBroker(options: RedisBrokerOptions): RedisBroker {
  const opts = brokerOptions(options, 'redisBroker', ['client', 'prefix']);
  const client = opts['client'] as Redis;
  assertClient(
    client,
    'client',
    { duplicate: 'function', publish: 'function', status: 'string' },
    'an ioredis client (new Redis(...))',
  );
  const prefix = opts['prefix'] === undefined ? 'fanout:' : opts['prefix'];
  if (typeof prefix !== 'string') throw new TypeError('The "prefix" option must be a string');
  assertWireName(prefix, 'prefix');
  return new RedisBrokerImpl(client, prefix, opts);
}

class RedisBrokerImpl extends BrokerBase implements RedisBroker {
  readonly prefix: string;
  readonly #client: Redis;
  /** Channels subscribed on the current subscriber connection. */
  readonly #active = new Set<string>();
  #subscriber: Redis | null = null;
  /** Bumped on every subscriber disconnect: a command that straddles one says nothing about the new connection. */
  #epoch = 0;
  /** Rejects when the current subscriber connection closes: its unanswered commands will never be answered. */
  #lost = lostSignal();
  #down = false;
  readonly #onReady = () => this.ready();

  constructor(client: Redis, prefix: string, options: CommonBrokerOptions) {
    super(WHERE, options);
    this.#client = client;
    this.prefix = prefix;
  }

  protected attach(context: BrokerContext): void {
    this.#client.on('ready', this.#onReady);
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
      if (this.closed) return;
      this.#down = false;
      for (const channel of this.interest.desired) {
        this.interest.reconcile(channel).catch((err: unknown) => context.error(err));
      }
    });
    sub.on('close', () => {
      this.#epoch++;
      this.#active.clear();
      this.#lost.reject(new Error(`${WHERE}: subscriber connection closed`));
      this.#lost = lostSignal();
      if (!this.closed && !this.#down) {
        this.#down = true;
        context.error(
          new Error(`${WHERE}: subscriber connection lost; cross-node delivery to this node is paused`),
        );
      }
    });
    // Without a listener ioredis prints every reconnect failure; one report per outage is enough.
    sub.on('error', (err: Error) => {
      if (!this.closed && !this.#down) context.error(err);
    });
  }

  protected async listening(): Promise<void> {
    const sub = this.#subscriber;
    // The `ready` handler (registered first) queues the resubscriptions before this wait ends.
    if (sub !== null && sub.status !== 'ready' && !this.closed)
      await new Promise((resolve) => sub.once('ready', resolve));
  }

  protected state(): LinkState {
    const status = this.#client.status;
    if (status === 'ready') return 'ready';
    return status === 'end' || status === 'close' ? 'closed' : 'waiting';
  }

  protected send(channels: readonly string[], envelope: Buffer): Promise<void> {
    const client = this.#client;
    const sent =
      channels.length === 1
        ? client.publish(this.prefix + (channels[0] as string), envelope)
        : Promise.all(channels.map((c) => client.publish(this.prefix + c, envelope)));
    return sent.then(noop, unconfirmed);
  }

  protected async release(): Promise<void> {
    this.#client.off('ready', this.#onReady);
    const sub = this.#subscriber;
    if (sub === null) return;
    // quit() waits for Redis when connected; disconnect() when it is not (quit would wait for a reconnect).
    if (sub.status === 'ready') await sub.quit().catch(() => sub.disconnect());
    else sub.disconnect();
  }

  protected async apply(channel: string, on: boolean): Promise<void> {
    const sub = this.#subscriber;
    // Not connected: the `ready` handler reconciles every wanted channel.
    if (sub === null || sub.status !== 'ready' || this.closed) return;
    if (on === this.#active.has(channel)) return;
    const epoch = this.#epoch;
    const key = this.prefix + channel;
    // ioredis never answers commands that were in flight on a closed connection (autoResendUnfulfilledCommands
    // is off on the subscriber): race them with the close, so the chain does not wait out the timeout.
    const command = Promise.race([on ? sub.subscribe(key) : sub.unsubscribe(key), this.#lost.promise]);
    try {
      await this.deadlines.wrap(
        command,
        () =>
          new Error(
            `${WHERE}: Redis did not confirm ${on ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} ${key} in ${this.timeout} ms`,
          ),
      );
    } catch (err) {
      if (epoch !== this.#epoch || this.closed) return; // the reconnect resubscribes
      // Unknown outcome: assume the opposite, so the next reconcile sends the command again (both idempotent).
      if (on) this.#active.delete(channel);
      else this.#active.add(channel);
      throw err;
    }
    if (epoch !== this.#epoch) return;
    if (on) this.#active.add(channel);
    else this.#active.delete(channel);
  }
}

function noop(): void {}

/** A written PUBLISH that failed: refused by Redis (a reply error: not sent), or lost with its connection. */
function unconfirmed(err: unknown): never {
  if (err instanceof Error && err.name === 'ReplyError') throw err;
  throw new UnconfirmedPublishError(
    `${WHERE}: publish written but not confirmed (${err instanceof Error ? err.message : String(err)}); it may arrive late or never`,
  );
}

function lostSignal(): { promise: Promise<never>; reject: (err: Error) => void } {
  let reject!: (err: Error) => void;
  const promise = new Promise<never>((_resolve, r) => (reject = r));
  promise.catch(noop); // nobody may be racing it when it fires
  return { promise, reject };
}
