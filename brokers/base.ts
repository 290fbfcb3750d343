import {
  UnconfirmedPublishError,
  type Broker,
  type BrokerBacklog,
  type BrokerContext,
  type Message,
} from '../src/index.js';
import { Deadlines, Interest, type CommonBrokerOptions } from './common.js';
import { PublishIds, encodeEnvelope } from './envelope.js';

/** Whether the engine's connection can take a publish now, may later, or never will. */
export type LinkState = 'ready' | 'waiting' | 'closed';

/**
 * @internal The skeleton every broker shares, so that each engine writes only its own wiring: one start, calls
 * made before it queued, interest changes serialized per channel, a publish written only while the connection
 * is up and bounded in time (`timeout`) and in what may wait at once (`maxPending`), each publish ending as
 * confirmed, failed (known not sent) or unconfirmed (sent, no confirmation in time), and a close that lets the
 * publishes in flight settle first.
 */
export abstract class BrokerBase implements Broker {
  protected readonly where: string;
  protected readonly timeout: number;
  protected readonly deadlines: Deadlines;
  protected readonly interest: Interest;
  protected context: BrokerContext | null = null;
  protected closed = false;
  readonly #max: CommonBrokerOptions['maxPending'];
  readonly #ids = new PublishIds();
  #pending = 0;
  #pendingBytes = 0;
  readonly #started: Promise<void>;
  #markStarted!: () => void;
  #ready: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(where: string, options: CommonBrokerOptions) {
    this.where = where;
    this.timeout = options.timeout;
    this.#max = options.maxPending;
    this.deadlines = new Deadlines(options.timeout);
    this.interest = new Interest((channel, on) => this.apply(channel, on));
    this.#started = new Promise((resolve) => (this.#markStarted = resolve));
  }

  /** Wires the engine to `context` (subscriber, status events). Called once, by `start`. */
  protected abstract attach(context: BrokerContext): void;
  /** Subscribes (`on`) or unsubscribes `channel` now, if connected; resolves once the server confirmed it. */
  protected abstract apply(channel: string, on: boolean): Promise<void>;
  /** Whether the publishing connection can take a publish. */
  protected abstract state(): LinkState;
  /**
   * Writes `envelope` on the subject of each channel; resolves once the server confirmed it. Throws or rejects
   * with a plain error when it was not written, with {@link UnconfirmedPublishError} when it may have been.
   */
  protected abstract send(channels: readonly string[], envelope: Buffer): Promise<void>;
  /** Resolves when the receiving side is connected and has restored its subscriptions (for `idle`). */
  protected abstract listening(): Promise<void>;
  /** Releases what the broker created, once the publishes in flight settled. */
  protected abstract release(): Promise<void>;

  /** The engine calls this each time its publishing connection becomes ready (again). */
  protected ready(): void {
    const waiting = this.#ready;
    this.#ready = null;
    waiting?.resolve();
  }

  /** Resolves the next time the publishing connection becomes ready (never rejects). */
  protected whenReady(): Promise<void> {
    if (this.#ready === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#ready = { promise, resolve };
    }
    return this.#ready.promise;
  }

  start(context: BrokerContext): void {
    if (this.context !== null) throw new Error(`${this.where}: already started (one broker per registry)`);
    this.context = context;
    this.attach(context);
    this.interest.open();
    this.#markStarted();
  }

  subscribe(channel: string): Promise<void> {
    return this.interest.want(channel, true);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.interest.want(channel, false);
  }

  /** Resolves once connected and every queued subscribe/unsubscribe has been applied and confirmed. */
  async idle(): Promise<void> {
    await this.#started;
    if (this.closed) return;
    await this.listening();
    await this.interest.idle();
  }

  backlog(): BrokerBacklog {
    return { messages: this.#pending, bytes: this.#pendingBytes };
  }

  publish(channels: readonly string[], message: Message): Promise<void> {
    try {
      return this.#publish(channels, message);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Publishes in flight settle first (each within `timeout`): closing must not turn them into failures.
    await this.deadlines.idle();
    this.deadlines.clear(new Error(`${this.where}: closed`));
    await this.release();
  }

  #publish(channels: readonly string[], message: Message): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.where}: closed; publish not sent`));
    const context = this.context;
    // The registry starts its broker a microtask after construction; a publish before that waits for it.
    if (context === null) {
      const release = this.#hold(message.bytes.length * channels.length);
      if (release === null) return Promise.reject(this.#full());
      return this.deadlines.wrap(
        this.#started.then(() => {
          release();
          return this.#publish(channels, message);
        }),
        () => new Error(`${this.where}: not started within ${this.timeout} ms; publish not sent`),
        release,
      );
    }
    const state = this.state();
    if (state === 'closed') {
      return Promise.reject(new Error(`${this.where}: the connection is closed; publish not sent`));
    }
    const envelope = encodeEnvelope(context.nodeId, channels, message, this.#ids);
    // Each channel's copy may sit in the client's buffers until the server reads it.
    const release = this.#hold(envelope.length * channels.length);
    if (release === null) return Promise.reject(this.#full());
    let written = false;
    let expired = false;
    const send = (): Promise<void> => {
      if (expired) return Promise.resolve(); // counted when it expired; never sent late
      written = true;
      let sent: Promise<void>;
      try {
        sent = this.send(channels, envelope);
      } catch (err) {
        release();
        throw err;
      }
      // What waits for the broker is held until the client lets go of it, even after the deadline.
      sent.then(release, release);
      return sent;
    };
    return this.deadlines.wrap(
      state === 'ready' ? send() : this.whenReady().then(send),
      () =>
        written
          ? new UnconfirmedPublishError(
              `${this.where}: publish sent but not confirmed within ${this.timeout} ms; it may arrive late or never`,
            )
          : new Error(`${this.where}: not connected within ${this.timeout} ms; publish not sent`),
      () => {
        expired = true;
        if (!written) release();
      },
    );
  }

  /** Counts `bytes` as waiting; returns the function that lets go of them once, or null past `maxPending`. */
  #hold(bytes: number): (() => void) | null {
    if (this.#pending + 1 > this.#max.messages || this.#pendingBytes + bytes > this.#max.bytes) return null;
    this.#pending++;
    this.#pendingBytes += bytes;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#pending--;
      this.#pendingBytes -= bytes;
    };
  }

  #full(): Error {
    return new Error(
      `${this.where}: ${this.#pending} publishes (${this.#pendingBytes} bytes) already wait for the broker ` +
        `(maxPending ${this.#max.messages} / ${this.#max.bytes} bytes); publish not sent`,
    );
  }
}
