// Types only: the user's own connection is what runs, so fanout never loads the NATS client itself.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Broker, BrokerContext } from './broker.js';
import type { Message } from '../message.js';
import { Deadlines, Interest, brokerOptions, receive } from './common.js';
import { assertWireName, encodeEnvelope } from './envelope.js';

export interface NatsBrokerOptions {
  /** Your connection from `connect()` of `@nats-io/transport-node` (v3). It is used, never closed. */
  connection: NatsConnection;
  /**
   * Subject prefix: empty, or tokens each followed by a dot. The subject of a channel is `prefix` followed by
   * the channel name as one token, escaped by {@link channelToken}. Default `fanout.`.
   */
  prefix?: string;
  /**
   * How long a publish may wait for the connection and for the server to confirm it (a coalesced flush), in
   * ms; past that it fails (counted in `stats().broker.failed`). Also bounds subscribe confirmations. Default 2000.
   */
  timeout?: number;
}

/** The NATS broker, with a way for tests and health checks to wait until every interest change is confirmed. */
export interface NatsBroker extends Broker {
  readonly prefix: string;
  /** The subject a channel travels on. */
  subject(channel: string): string;
  /** Resolves once connected and every queued subscribe/unsubscribe has been confirmed by the server. */
  idle(): Promise<void>;
}

const WHERE = 'fanout nats broker';
const PREFIX = /^(?:[^\s.*>]+\.)*$/;
const PLAIN = /^[A-Za-z0-9_-]$/;

/**
 * Escapes a channel name into one NATS subject token, reversibly: ASCII letters, digits, `_` and `-` stay; every
 * other UTF-8 byte becomes `%XX` (uppercase hex). So `.`, `*`, `>`, `%`, spaces and non-ASCII never reach the
 * subject raw: `alarms.eu west` becomes `alarms%2Eeu%20west`.
 */
export function channelToken(channel: string): string {
  assertWireName(channel, 'channel');
  let out = '';
  for (const ch of channel) {
    if (PLAIN.test(ch)) out += ch;
    else
      for (const byte of Buffer.from(ch, 'utf8'))
        out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The inverse of {@link channelToken}. Throws a TypeError for a token it cannot have produced. */
export function tokenChannel(token: string): string {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+$/.test(token))
    throw new TypeError(`Not a channel token: ${JSON.stringify(token)}`);
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '%') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  const channel = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  if (channelToken(channel) !== token) throw new TypeError(`Not a channel token: ${JSON.stringify(token)}`);
  return channel;
}

/**
 * Cross-node broadcast over NATS core pub/sub (`@nats-io/transport-node` v3). A node subscribes to a channel's
 * subject only while it has local sessions in it; the NATS client restores its subscriptions after a reconnect.
 * At most once: NATS core keeps nothing for a disconnected node.
 *
 * The NATS client buffers publishes made while disconnected and discards that buffer when it reconnects, so
 * this broker never publishes while it knows the connection is down (it waits up to `timeout` for the
 * reconnect, then fails), and confirms every publish with a flush (one PING per batch of publishes made in the
 * same tick): a publish resolves only once the server has processed it.
 */
export function natsBroker(options: NatsBrokerOptions): NatsBroker {
  const opts = brokerOptions(options, 'natsBroker', ['connection', 'prefix']);
  const nc = opts['connection'] as NatsConnection;
  if (
    typeof nc !== 'object' ||
    nc === null ||
    typeof nc.publish !== 'function' ||
    typeof nc.subscribe !== 'function' ||
    typeof nc.status !== 'function'
  ) {
    throw new TypeError('The "connection" option must be a NatsConnection (await connect(...))');
  }
  const prefix = opts['prefix'] === undefined ? 'fanout.' : opts['prefix'];
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new TypeError(
      `The "prefix" option must be empty or NATS subject tokens each followed by "." (no spaces, "*" or ">"); got ${JSON.stringify(prefix)}`,
    );
  }
  return new NatsBrokerImpl(nc, prefix, opts.timeout);
}

class NatsBrokerImpl implements NatsBroker {
  readonly prefix: string;
  readonly #nc: NatsConnection;
  readonly #timeout: number;
  readonly #deadlines: Deadlines;
  readonly #interest: Interest;
  readonly #subs = new Map<string, Subscription>();
  readonly #subjects = new Map<string, string>();
  #context: BrokerContext | null = null;
  #connected = true;
  #closed = false;
  #status: AsyncIterable<unknown> | null = null;
  #flushing: Promise<void> | null = null;
  #reconnected: Promise<void> | null = null;
  #markReconnected: (() => void) | null = null;
  readonly #started: Promise<void>;
  #markStarted!: () => void;

  constructor(nc: NatsConnection, prefix: string, timeout: number) {
    this.#nc = nc;
    this.prefix = prefix;
    this.#timeout = timeout;
    this.#deadlines = new Deadlines(timeout);
    this.#interest = new Interest((channel, on) => this.#apply(channel, on));
    this.#started = new Promise((resolve) => (this.#markStarted = resolve));
  }

  subject(channel: string): string {
    let subject = this.#subjects.get(channel);
    if (subject === undefined) {
      subject = this.prefix + channelToken(channel);
      if (this.#subjects.size >= 10_000) this.#subjects.clear(); // bounded: channel names come from users
      this.#subjects.set(channel, subject);
    }
    return subject;
  }

  start(context: BrokerContext): void {
    if (this.#context !== null) throw new Error(`${WHERE}: already started (one broker per registry)`);
    this.#context = context;
    const status = this.#nc.status();
    this.#status = status;
    void this.#watch(status, context).catch((err: unknown) => context.error(err));
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
    if (!this.#connected) await this.#whenReconnected();
    await this.#interest.idle();
    // After a reconnect the client resent its subscriptions; the PONG proves the server has them.
    if (!this.#closed && !this.#nc.isClosed()) {
      await this.#deadlines.wrap(
        this.#flush(),
        () => new Error(`${WHERE}: no flush reply in ${this.#timeout} ms`),
      );
    }
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
    if (this.#nc.isClosed())
      return Promise.reject(new Error(`${WHERE}: the NATS connection is closed; publish not sent`));
    // The registry starts its broker a microtask after construction; a publish before that waits for it.
    if (context === null) {
      return this.#deadlines.wrap(
        this.#started.then(() => this.#publish(channels, message)),
        () => new Error(`${WHERE}: not started within ${this.#timeout} ms; publish not sent`),
      );
    }
    const envelope = encodeEnvelope(context.nodeId, channels, message);
    if (this.#connected) return this.#deadlines.wrap(this.#send(channels, envelope), () => this.#timedOut());
    let expired = false;
    return this.#deadlines.wrap(
      this.#whenReconnected().then(() => (expired ? undefined : this.#send(channels, envelope))),
      () => this.#timedOut(),
      () => (expired = true),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Publishes in flight settle first (each within `timeout`): closing must not turn them into failures.
    await this.#deadlines.idle();
    this.#deadlines.clear(new Error(`${WHERE}: closed`));
    (this.#status as { stop?: () => void } | null)?.stop?.();
    if (!this.#nc.isClosed()) for (const sub of this.#subs.values()) sub.unsubscribe();
    this.#subs.clear();
  }

  async #watch(status: AsyncIterable<unknown>, context: BrokerContext): Promise<void> {
    for await (const s of status) {
      const event = s as { type: string; error?: unknown };
      if (event.type === 'disconnect') {
        if (this.#connected && !this.#closed) {
          context.error(
            new Error(`${WHERE}: connection lost; cross-node delivery is paused until NATS is back`),
          );
        }
        this.#connected = false;
      } else if (event.type === 'reconnect') {
        this.#connected = true;
        this.#markReconnected?.();
      } else if (event.type === 'error' && !this.#closed) {
        context.error(event.error);
      }
    }
  }

  #apply(channel: string, on: boolean): Promise<void> {
    const context = this.#context;
    if (context === null || this.#closed || this.#nc.isClosed()) return Promise.resolve();
    const sub = this.#subs.get(channel);
    if (on && sub === undefined) {
      const subject = this.subject(channel);
      this.#subs.set(
        channel,
        this.#nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err !== null) context.error(err);
            else receive(context, channel, msg.data, WHERE);
          },
        }),
      );
    } else if (!on && sub !== undefined) {
      this.#subs.delete(channel);
      sub.unsubscribe();
    } else return Promise.resolve();
    // While disconnected the client sends its subscriptions itself when it reconnects.
    if (!this.#connected) return Promise.resolve();
    return this.#deadlines.wrap(
      this.#flush(),
      () =>
        new Error(
          `${WHERE}: NATS did not confirm the ${on ? '' : 'un'}subscription of ${channel} in ${this.#timeout} ms`,
        ),
    );
  }

  #send(channels: readonly string[], envelope: Buffer): Promise<void> {
    for (const channel of channels) this.#nc.publish(this.subject(channel), envelope);
    return this.#flush();
  }

  /** One flush for every publish of this tick: its PONG proves the server processed all of them. */
  #flush(): Promise<void> {
    return (this.#flushing ??= Promise.resolve().then(() => {
      this.#flushing = null;
      return this.#nc.flush();
    }));
  }

  #whenReconnected(): Promise<void> {
    return (this.#reconnected ??= new Promise<void>((resolve) => {
      this.#markReconnected = () => {
        this.#reconnected = null;
        this.#markReconnected = null;
        resolve();
      };
    }));
  }

  #timedOut(): Error {
    return new Error(
      `${WHERE}: publish not confirmed by NATS within ${this.#timeout} ms (${this.#connected ? 'connected' : 'disconnected'})`,
    );
  }
}
