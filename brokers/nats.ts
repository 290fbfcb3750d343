// The published declarations use Node's types (Buffer, http): consumers get them without `types: ["node"]`.
/// <reference types="node" preserve="true" />
// Types only: the user's own connection is what runs, so fanout never loads the NATS client itself.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { UnconfirmedPublishError, type Broker, type BrokerContext } from '../src/index.js';
import { BrokerBase, type LinkState } from './base.js';
import { assertClient, brokerOptions, receive, type CommonBrokerOptions, type MaxPending } from './common.js';
import { assertWireName } from './envelope.js';

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
   * ms. Not written by then: it fails (`stats().broker.failed`); written but not confirmed: it is unconfirmed
   * (`stats().broker.unconfirmed`). Also bounds subscribe confirmations. Default 2000.
   */
  timeout?: number;
  /**
   * What may wait for NATS at once (publishes not yet confirmed, including unconfirmed ones the client still
   * holds); past it a publish fails at once. Default `{ messages: 10000, bytes: 16 MiB }`.
   */
  maxPending?: MaxPending;
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
 * same tick): a publish resolves only once the server has processed it. One written to a hung server is
 * unconfirmed after `timeout`; the server processes it, late, if it resumes before the client gives up on it.
 */
export function natsBroker(options: NatsBrokerOptions): NatsBroker {
  const opts = brokerOptions(options, 'natsBroker', ['connection', 'prefix']);
  const nc = opts['connection'] as NatsConnection;
  assertClient(
    nc,
    'connection',
    { publish: 'function', subscribe: 'function', status: 'function' },
    'a NatsConnection (await connect(...))',
  );
  const prefix = opts['prefix'] === undefined ? 'fanout.' : opts['prefix'];
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new TypeError(
      `The "prefix" option must be empty or NATS subject tokens each followed by "." (no spaces, "*" or ">"); got ${JSON.stringify(prefix)}`,
    );
  }
  return new NatsBrokerImpl(nc, prefix, opts);
}

class NatsBrokerImpl extends BrokerBase implements NatsBroker {
  readonly prefix: string;
  readonly #nc: NatsConnection;
  readonly #subs = new Map<string, Subscription>();
  readonly #subjects = new Map<string, string>();
  #connected = true;
  #status: AsyncIterable<unknown> | null = null;
  #flushing: Promise<void> | null = null;

  constructor(nc: NatsConnection, prefix: string, options: CommonBrokerOptions) {
    super(WHERE, options);
    this.#nc = nc;
    this.prefix = prefix;
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

  protected attach(context: BrokerContext): void {
    const status = this.#nc.status();
    this.#status = status;
    void this.#watch(status, context).catch((err: unknown) => context.error(err));
  }

  protected async listening(): Promise<void> {
    if (!this.#connected) await this.whenReady();
    await this.interest.idle();
    // After a reconnect the client resent its subscriptions; the PONG proves the server has them.
    if (!this.closed && !this.#nc.isClosed()) {
      await this.deadlines.wrap(
        this.#flush(),
        () => new Error(`${WHERE}: no flush reply in ${this.timeout} ms`),
      );
    }
  }

  protected state(): LinkState {
    if (this.#nc.isClosed()) return 'closed';
    return this.#connected ? 'ready' : 'waiting';
  }

  protected send(channels: readonly string[], envelope: Buffer): Promise<void> {
    // A throw here (payload over the server's max_payload, a closed connection) means nothing was written.
    for (const channel of channels) this.#nc.publish(this.subject(channel), envelope);
    return this.#flush().catch((err: unknown) => {
      throw new UnconfirmedPublishError(
        `${WHERE}: publish written but not confirmed (${err instanceof Error ? err.message : String(err)}); it may arrive late or never`,
      );
    });
  }

  protected async release(): Promise<void> {
    (this.#status as { stop?: () => void } | null)?.stop?.();
    if (!this.#nc.isClosed()) for (const sub of this.#subs.values()) sub.unsubscribe();
    this.#subs.clear();
  }

  async #watch(status: AsyncIterable<unknown>, context: BrokerContext): Promise<void> {
    for await (const s of status) {
      const event = s as { type: string; error?: unknown };
      if (event.type === 'disconnect') {
        if (this.#connected && !this.closed) {
          context.error(
            new Error(`${WHERE}: connection lost; cross-node delivery is paused until NATS is back`),
          );
        }
        this.#connected = false;
      } else if (event.type === 'reconnect') {
        this.#connected = true;
        this.ready();
      } else if (event.type === 'error' && !this.closed) {
        context.error(event.error);
      }
    }
  }

  protected apply(channel: string, on: boolean): Promise<void> {
    const context = this.context;
    if (context === null || this.closed || this.#nc.isClosed()) return Promise.resolve();
    const sub = this.#subs.get(channel);
    if (on && sub === undefined) {
      const subject = this.subject(channel);
      this.#subs.set(
        channel,
        this.#nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err === null) receive(context, channel, msg.data, WHERE);
            else {
              try {
                context.error(err);
              } catch {
                // Inside the NATS client's dispatch: nothing may escape.
              }
            }
          },
        }),
      );
    } else if (!on && sub !== undefined) {
      this.#subs.delete(channel);
      sub.unsubscribe();
    } else return Promise.resolve();
    // While disconnected the client sends its subscriptions itself when it reconnects.
    if (!this.#connected) return Promise.resolve();
    return this.deadlines.wrap(
      this.#flush(),
      () =>
        new Error(
          `${WHERE}: NATS did not confirm the ${on ? '' : 'un'}subscription of ${channel} in ${this.timeout} ms`,
        ),
    );
  }

  /** One flush for every publish of this tick: its PONG proves the server processed all of them. */
  #flush(): Promise<void> {
    return (this.#flushing ??= Promise.resolve().then(() => {
      this.#flushing = null;
      return this.#nc.flush();
    }));
  }
}
