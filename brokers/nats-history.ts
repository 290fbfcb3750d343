// Types only: the user's own JetStream manager is what runs, so fanout never loads the NATS packages itself.
import type { ConsumerMessages, DeliverPolicy, JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import {
  Message,
  assertInteger,
  assertKnownKeys,
  assertObject,
  dataFrame,
  newEpoch,
  readDataHeader,
  type History,
  type HistoryContext,
  type HistoryEntry,
  type HistoryRead,
  type StreamPosition,
} from '../src/index.js';
import { Deadlines, Interest, chainOn } from './common.js';
import { channelToken } from './nats.js';

export interface NatsHistoryOptions {
  /** Your JetStream manager: `await jetstreamManager(nc)` from `@nats-io/jetstream` (v3). */
  manager: JetStreamManager;
  /** The JetStream stream that holds every channel's history (created or updated on start). Default `FANOUT`. */
  stream?: string;
  /** Subject prefix: a channel's subject is this plus its escaped name (`channelToken`). Default `fanout-h.`. */
  prefix?: string;
  /** Most messages kept per channel (max_msgs_per_subject); 0 keeps one (its position) but replays none. Default 100. */
  size?: number;
  /** Longest a message is kept, in ms (max_age). A channel with none left starts a new epoch. Default 120000. */
  ttl?: number;
  /** How long a publish, a read or a subscription may take, in ms. Default 2000. */
  timeout?: number;
}

const WHERE = 'fanout nats history';
const PREFIX = /^(?:[^\s.*>]+\.)+$/;
const STREAM = /^[A-Za-z0-9_-]{1,64}$/;
/** Publishes that lose a race with another node retry with the new last position, at most this often. */
const RETRIES = 10;

interface Last {
  seq: number;
  position: StreamPosition;
}

/**
 * Fleet-wide stream history in NATS JetStream. One stream holds every channel (`<prefix><channel token>`), with
 * `max_msgs_per_subject` = `size` and `max_age` = `ttl`. A JetStream sequence is per stream, not per subject, so
 * the per-channel offset is carried in the frame itself: a publish reads the channel's last message (cached
 * after the first), builds the frame with the next offset and publishes it with
 * `expect.lastSubjectSequence`; when another node published first, JetStream refuses it and the publish
 * retries from the new last message. So offsets are consecutive per channel on every node. Each node follows
 * the channels it has sessions in with an ordered consumer (in stream order, recreated by the client after a
 * gap); a recovery reads the channel's messages with another one.
 */
export function natsHistory(options: NatsHistoryOptions): History {
  assertObject(options, 'options');
  assertKnownKeys(options, ['manager', 'stream', 'prefix', 'size', 'ttl', 'timeout'], 'natsHistory');
  const manager = options.manager;
  if (
    typeof manager !== 'object' ||
    manager === null ||
    typeof manager.jetstream !== 'function' ||
    typeof manager.streams !== 'object'
  ) {
    throw new TypeError('The "manager" option must be a JetStreamManager (await jetstreamManager(nc))');
  }
  const stream = options.stream ?? 'FANOUT';
  if (typeof stream !== 'string' || !STREAM.test(stream)) {
    throw new TypeError('The "stream" option must be 1..64 of A-Z a-z 0-9 _ -');
  }
  const prefix = options.prefix ?? 'fanout-h.';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new TypeError('The "prefix" option must be NATS subject tokens each followed by "."');
  }
  const size = options.size === undefined ? 100 : assertInteger(options.size, 'size', 0, 10_000_000);
  const ttl = options.ttl === undefined ? 120_000 : assertInteger(options.ttl, 'ttl', 1000, 2 ** 31 - 1);
  const timeout =
    options.timeout === undefined ? 2000 : assertInteger(options.timeout, 'timeout', 1, 600_000);
  return new NatsHistory(manager, stream, prefix, size, ttl, timeout);
}

class NatsHistory implements History {
  readonly fleet = true;
  readonly #jsm: JetStreamManager;
  readonly #js: JetStreamClient;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #size: number;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #deadlines: Deadlines;
  readonly #interest: Interest;
  readonly #live = new Map<string, { messages: ConsumerMessages | null }>();
  readonly #last = new Map<string, Last>();
  readonly #chains = new Map<string, Promise<void>>();
  #ready: Promise<void> | null = null;
  #context: HistoryContext | null = null;
  #closed = false;

  constructor(
    jsm: JetStreamManager,
    stream: string,
    prefix: string,
    size: number,
    ttl: number,
    timeout: number,
  ) {
    this.#jsm = jsm;
    this.#js = jsm.jetstream();
    this.#stream = stream;
    this.#prefix = prefix;
    this.#size = size;
    this.#ttl = ttl;
    this.#timeout = timeout;
    this.#deadlines = new Deadlines(timeout);
    this.#interest = new Interest((channel, on) => this.#apply(channel, on));
  }

  start(context: HistoryContext): void {
    if (this.#context !== null) throw new Error(`${WHERE}: already started (one history per registry)`);
    this.#context = context;
    this.#ready = this.#ensureStream();
    this.#ready.catch((err: unknown) => context.error(err));
    this.#interest.open();
  }

  publish(channel: string, payload: Message): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${WHERE}: closed`));
    // One publish at a time per channel on this node: they would only race each other for the next offset.
    return chainOn(this.#chains, channel, Promise.resolve(), () =>
      this.#deadlines.wrap(
        this.#publish(channel, payload),
        () =>
          new Error(`${WHERE}: publish on ${JSON.stringify(channel)} not confirmed in ${this.#timeout} ms`),
      ),
    );
  }

  subscribe(channel: string): Promise<void> {
    return this.#interest.want(channel, true);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.#interest.want(channel, false);
  }

  read(channel: string, since: StreamPosition | null): Promise<HistoryRead> {
    return this.#deadlines.wrap(
      this.#read(channel, since),
      () => new Error(`${WHERE}: read of ${JSON.stringify(channel)} not answered in ${this.#timeout} ms`),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#deadlines.idle();
    this.#deadlines.clear(new Error(`${WHERE}: closed`));
    for (const live of this.#live.values()) await live.messages?.close().catch(() => undefined);
    this.#live.clear();
  }

  subject(channel: string): string {
    return this.#prefix + channelToken(channel);
  }

  async #ensureStream(): Promise<void> {
    const config = {
      subjects: [`${this.#prefix}>`],
      max_msgs_per_subject: Math.max(1, this.#size),
      max_age: this.#ttl * 1_000_000, // nanoseconds
    };
    try {
      await this.#jsm.streams.info(this.#stream);
      await this.#jsm.streams.update(this.#stream, config);
    } catch (err) {
      if (!/not found/i.test(String((err as Error).message))) throw err;
      await this.#jsm.streams.add({ name: this.#stream, ...config });
    }
  }

  async #publish(channel: string, payload: Message): Promise<void> {
    await this.#ready;
    const subject = this.subject(channel);
    for (let attempt = 0; attempt < RETRIES; attempt++) {
      const last = this.#last.get(channel) ?? (await this.#lastOf(channel));
      const position = { epoch: last.position.epoch, offset: last.position.offset + 1 };
      const frame = dataFrame(channel, position, payload);
      try {
        const ack = await this.#js.publish(subject, encodeFrame(frame), {
          expect: { lastSubjectSequence: last.seq },
        });
        this.#last.set(channel, { seq: ack.seq, position });
        return;
      } catch (err) {
        this.#last.delete(channel);
        // Another node published first (or the last message expired): read the new last one and try again.
        if (!/wrong last sequence/i.test(String((err as Error).message))) throw err;
      }
    }
    throw new Error(`${WHERE}: publish on ${JSON.stringify(channel)} lost ${RETRIES} races in a row`);
  }

  /** The channel's last stored message, or a fresh epoch at offset 0 when it has none (any more). */
  async #lastOf(channel: string): Promise<Last> {
    const stored = await this.#jsm.streams.getMessage(this.#stream, { last_by_subj: this.subject(channel) });
    const entry = stored === null ? null : decodeFrame(stored.data);
    if (stored === null || entry === null)
      return { seq: stored?.seq ?? 0, position: { epoch: newEpoch(), offset: 0 } };
    const header = readDataHeader(entry.frame.bytes);
    if (header === null) return { seq: stored.seq, position: { epoch: newEpoch(), offset: 0 } };
    return { seq: stored.seq, position: header.position };
  }

  async #read(channel: string, since: StreamPosition | null): Promise<HistoryRead> {
    await this.#ready;
    // A channel with no message (never published, or all expired) has a fresh epoch each time it is read:
    // offset 0 ("nothing seen yet") matches any epoch, so that is harmless.
    const last = await this.#lastOf(channel);
    const position = last.position;
    if (since === null || (since.offset === 0 && position.offset === 0))
      return { ok: true, position, entries: [] };
    if (since.offset !== 0 && since.epoch !== position.epoch) return { ok: false, position, reason: 'epoch' };
    if (since.offset === position.offset) return { ok: true, position, entries: [] };
    if (since.offset > position.offset) return { ok: false, position, reason: 'future' };
    if (this.#size === 0 || position.offset - since.offset > this.#size)
      return { ok: false, position, reason: 'too-old' };
    const consumer = await this.#js.consumers.get(this.#stream, {
      filter_subjects: this.subject(channel),
      deliver_policy: 'all' as DeliverPolicy,
    });
    const entries: HistoryEntry[] = [];
    let expect = since.offset + 1;
    const messages = await consumer.fetch({ max_messages: this.#size, expires: this.#timeout });
    try {
      for await (const m of messages) {
        if (m.seq > last.seq) break;
        const entry = decodeFrame(m.data);
        const header = entry === null ? null : readDataHeader(entry.frame.bytes);
        if (entry === null || header === null || header.position.epoch !== position.epoch) continue;
        if (header.position.offset < expect) continue;
        if (header.position.offset !== expect) break; // a hole: the history cannot fill the gap
        entries.push(entry);
        expect++;
        if (m.seq === last.seq) break;
      }
    } finally {
      await messages.close().catch(() => undefined);
    }
    if (expect !== position.offset + 1) return { ok: false, position, reason: 'too-old' };
    return { ok: true, position, entries };
  }

  async #apply(channel: string, on: boolean): Promise<void> {
    if (this.#closed) return;
    const live = this.#live.get(channel);
    if (!on) {
      if (live !== undefined) {
        this.#live.delete(channel);
        await live.messages?.close().catch(() => undefined);
      }
      return;
    }
    if (live !== undefined) return;
    await this.#deadlines.wrap(
      this.#follow(channel),
      () => new Error(`${WHERE}: could not follow ${JSON.stringify(channel)} in ${this.#timeout} ms`),
    );
  }

  /**
   * Follows a channel from the stream's next sequence: every message stored after this resolves is delivered,
   * whenever the consumer itself is created on the server.
   */
  async #follow(channel: string): Promise<void> {
    await this.#ready;
    const info = await this.#jsm.streams.info(this.#stream);
    const consumer = await this.#js.consumers.get(this.#stream, {
      filter_subjects: this.subject(channel),
      deliver_policy: 'by_start_sequence' as DeliverPolicy,
      opt_start_seq: info.state.last_seq + 1,
    });
    const context = this.#context as HistoryContext;
    const live: { messages: ConsumerMessages | null } = { messages: null };
    this.#live.set(channel, live);
    const messages = await consumer.consume({
      callback: (m) => {
        if (this.#live.get(channel) !== live) return;
        const entry = decodeFrame(m.data);
        const header = entry === null ? null : readDataHeader(entry.frame.bytes);
        if (entry === null || header === null || header.channel !== channel) {
          context.error(new Error(`${WHERE}: ignored a malformed message on ${JSON.stringify(channel)}`));
          return;
        }
        this.#last.set(channel, { seq: m.seq, position: header.position });
        try {
          context.deliver(channel, header.position, entry.frame);
        } catch (err) {
          context.error(err);
        }
      },
    });
    live.messages = messages;
    if (this.#closed || this.#live.get(channel) !== live) await messages.close().catch(() => undefined);
  }
}

/** A stored frame: its kind byte (`t` text, `b` binary), then the frame. */
function encodeFrame(frame: Message): Uint8Array {
  const bytes = frame.bytes;
  const out = Buffer.allocUnsafe(bytes.length + 1);
  out[0] = frame.binary ? 0x62 : 0x74;
  bytes.copy(out, 1);
  return out;
}

function decodeFrame(data: Uint8Array): HistoryEntry | null {
  const kind = data[0];
  if (kind !== 0x74 && kind !== 0x62) return null;
  const bytes = Buffer.from(data.buffer, data.byteOffset + 1, data.byteLength - 1);
  const header = readDataHeader(bytes);
  if (header === null) return null;
  const frame =
    kind === 0x62 ? new Message(Buffer.from(bytes), true) : new Message(bytes.toString('utf8'), false);
  return { offset: header.position.offset, frame };
}
