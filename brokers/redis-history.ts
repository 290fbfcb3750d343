// Types only: the user's own client is what runs, so fanout never loads ioredis itself.
import type { Redis } from 'ioredis';
import {
  Message,
  assertInteger,
  assertKnownKeys,
  assertObject,
  newEpoch,
  readDataHeader,
  type History,
  type HistoryContext,
  type HistoryEntry,
  type HistoryRead,
  type StreamPosition,
} from '../src/index.js';
import { Deadlines, Interest } from './common.js';
import { assertWireName } from './envelope.js';

export interface RedisHistoryOptions {
  /** Your ioredis client (standalone). It runs the scripts; a subscriber is derived with `duplicate()`. */
  client: Redis;
  /** Prepended to every key and pub/sub channel. Default `fanout:`. */
  prefix?: string;
  /** Most messages kept per channel (XADD MAXLEN); 0 keeps none (positions only). Default 100. */
  size?: number;
  /**
   * Longest a message is kept, in ms. A channel idle for that long loses its keys (its epoch too: the next
   * publish starts a new epoch). Default 120000.
   */
  ttl?: number;
  /** How long a publish or a read may take, in ms. Default 2000. */
  timeout?: number;
}

const WHERE = 'fanout redis history';

/** The Redis history engine. */
export interface RedisHistoryEngine extends History {
  readonly prefix: string;
  /** The CLIENT SETNAME of its subscriber connection (to find it in CLIENT LIST). */
  readonly connectionName: string;
}

// Assigns the next position, stores the frame and publishes it, in one atomic step: every node sees the same
// positions, and pub/sub order is offset order. KEYS: meta hash, stream, this engine's last publish on the
// channel. ARGV: body, kind ('t'|'b'), size, ttl, epoch candidate, channel as JSON, pub/sub channel, publish
// sequence number.
// Once only: ioredis sends a command again after a reconnect when its reply was lost (autoResendUnfulfilledCommands),
// and one connection runs its commands in order, so a publish whose number is not above the last one this engine
// stored on the channel already ran: it is not stored or published again.
const PUBLISH = `
local seq = tonumber(ARGV[8])
if seq <= tonumber(redis.call('GET', KEYS[3]) or '0') then return 0 end
redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[4])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('DEL', KEYS[2])
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local frame = ARGV[2] .. '\\30[1,"m",' .. ARGV[6] .. ',"' .. epoch .. '",' .. string.format('%d', offset) .. ']\\n' .. ARGV[1]
local ttl = tonumber(ARGV[4])
if tonumber(ARGV[3]) > 0 then
  local now = redis.call('TIME')
  local ms = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('%d', offset) .. '-0', 'f', frame, 't', ms)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PUBLISH', ARGV[7], frame)
return offset
`;

// The current position (creating the epoch of a channel never used) and, with a position, what follows it,
// read atomically. KEYS: meta, stream. ARGV: epoch candidate, ttl, since epoch ('' for none), since offset.
// Returns { epoch, offset, now ms, status, entries }.
const READ = `
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'offset', 0)
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local now = redis.call('TIME')
local ms = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
local at = string.format('%d', offset)
if ARGV[3] == '' then return { epoch, at, ms, 'ok' } end
local since = tonumber(ARGV[4])
if since ~= 0 and ARGV[3] ~= epoch then return { epoch, at, ms, 'epoch' } end
if since > offset then return { epoch, at, ms, 'future' } end
if since == offset then return { epoch, at, ms, 'ok' } end
return { epoch, at, ms, 'ok', redis.call('XRANGE', KEYS[2], string.format('%d', since + 1) .. '-0', '+') }
`;

/**
 * Fleet-wide stream history in Redis (ioredis, standalone): per channel a hash `<prefix>stream-meta:<channel>`
 * (epoch, offset) and a Redis Stream `<prefix>stream:<channel>` (XADD MAXLEN `size`, entry id `<offset>-0`).
 * One Lua script per publish increments the offset, XADDs the frame and PUBLISHes it on
 * `<prefix>stream:<channel>`, so every node sees the same positions and receives the messages in offset order;
 * any node serves a recovery with XRANGE. Both keys expire after `ttl` without a publish, taking the epoch with
 * the data, so a client can never be handed a replay from a history that was lost. Use it as the registry's
 * `streams.history` (with or without a broker for the raw channels).
 */
export function redisHistory(options: RedisHistoryOptions): RedisHistoryEngine {
  assertObject(options, 'options');
  assertKnownKeys(options, ['client', 'prefix', 'size', 'ttl', 'timeout'], 'redisHistory');
  const client = options.client;
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof client.duplicate !== 'function' ||
    typeof client.eval !== 'function'
  ) {
    throw new TypeError('The "client" option must be an ioredis client (new Redis(...))');
  }
  const prefix = options.prefix ?? 'fanout:';
  if (typeof prefix !== 'string') throw new TypeError('The "prefix" option must be a string');
  assertWireName(prefix, 'prefix');
  const size = options.size === undefined ? 100 : assertInteger(options.size, 'size', 0, 10_000_000);
  const ttl = options.ttl === undefined ? 120_000 : assertInteger(options.ttl, 'ttl', 1, 2 ** 31 - 1);
  const timeout =
    options.timeout === undefined ? 2000 : assertInteger(options.timeout, 'timeout', 1, 600_000);
  return new RedisHistory(client, prefix, size, ttl, timeout);
}

class RedisHistory implements RedisHistoryEngine {
  readonly fleet = true;
  readonly prefix: string;
  readonly connectionName = `fanout-history-${newEpoch()}`;
  /** This engine's name in the once-only check of its publishes, and the number of its last publish. */
  readonly #writer = newEpoch();
  #seq = 0;
  /** The last position delivered on each followed channel: duplicates are dropped, gaps filled after an outage. */
  readonly #delivered = new Map<string, StreamPosition>();
  /**
   * Per followed channel, the lowest position a read gave one of this node's sessions: where an outage fill
   * starts when nothing was delivered live yet (every session there is at that position or past it).
   */
  readonly #base = new Map<string, StreamPosition>();
  /** The reads under way per channel (an outage fill waits for them: each may report a session's position). */
  readonly #reads = new Map<string, Set<Promise<unknown>>>();
  /** Channels being filled from the Stream after a subscriber outage, with the live messages held meanwhile. */
  readonly #filling = new Map<string, Fill>();
  readonly #client: Redis;
  readonly #size: number;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #deadlines: Deadlines;
  readonly #interest: Interest;
  readonly #active = new Set<string>();
  #subscriber: Redis | null = null;
  #context: HistoryContext | null = null;
  #closed = false;

  constructor(client: Redis, prefix: string, size: number, ttl: number, timeout: number) {
    this.#client = client;
    this.prefix = prefix;
    this.#size = size;
    this.#ttl = ttl;
    this.#timeout = timeout;
    this.#deadlines = new Deadlines(timeout);
    this.#interest = new Interest((channel, on) => this.#apply(channel, on));
  }

  start(context: HistoryContext): void {
    if (this.#context !== null) throw new Error(`${WHERE}: already started (one history per registry)`);
    this.#context = context;
    if (this.#client.status === 'wait') this.#client.connect().catch((err: unknown) => context.error(err));
    const sub = this.#client.duplicate({
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
      lazyConnect: false,
      connectionName: this.connectionName,
    });
    this.#subscriber = sub;
    const channelPrefix = `${this.prefix}stream:`;
    sub.on('messageBuffer', (key: Buffer, data: Buffer) => {
      const name = key.toString('utf8');
      if (!name.startsWith(channelPrefix)) return;
      this.#receive(name.slice(channelPrefix.length), data);
    });
    sub.on('ready', () => {
      if (this.#closed) return;
      for (const channel of this.#interest.desired) {
        this.#interest
          .reconcile(channel)
          .then(() => this.#fill(channel))
          .catch((err: unknown) => context.error(err));
      }
    });
    sub.on('close', () => {
      if (this.#closed) return;
      if (this.#active.size > 0) {
        context.error(new Error(`${WHERE}: subscriber connection lost; live stream delivery is paused`));
      }
      // Pub/sub keeps nothing for a disconnected subscriber: once it is subscribed again, what was published
      // meanwhile is read from the Stream and delivered before the live messages held in the meantime. Every
      // followed channel is filled, also one that delivered nothing live yet (its sessions are at positions
      // their reads gave them).
      for (const channel of this.#interest.desired)
        if (!this.#filling.has(channel)) this.#filling.set(channel, fill());
      this.#active.clear();
    });
    sub.on('error', () => {});
    this.#interest.open();
  }

  publish(channel: string, payload: Message): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${WHERE}: closed`));
    const key = this.#key(channel);
    const body = payload.binary ? payload.bytes : Buffer.from(payload.data as string, 'utf8');
    const script = this.#client.eval(
      PUBLISH,
      3,
      `${this.prefix}stream-meta:${channel}`,
      key,
      `${this.prefix}stream-writer:${channel}:${this.#writer}`,
      body,
      payload.binary ? 'b' : 't',
      this.#size,
      this.#ttl,
      newEpoch(),
      JSON.stringify(channel),
      key,
      ++this.#seq,
    ) as Promise<unknown>;
    return this.#deadlines.wrap(
      script.then(() => undefined),
      () => new Error(`${WHERE}: publish on ${JSON.stringify(channel)} not confirmed in ${this.#timeout} ms`),
    );
  }

  subscribe(channel: string): Promise<void> {
    return this.#interest.want(channel, true);
  }

  unsubscribe(channel: string): Promise<void> {
    this.#forget(channel);
    return this.#interest.want(channel, false);
  }

  async read(channel: string, since: StreamPosition | null): Promise<HistoryRead> {
    // During an outage fill a position read now could not be followed live from where it is: wait for the fill
    // (the registry bounds the wait with its recovery timeout).
    for (let f = this.#filling.get(channel); f !== undefined; f = this.#filling.get(channel)) await f.done;
    let reads = this.#reads.get(channel);
    if (reads === undefined) this.#reads.set(channel, (reads = new Set()));
    const reading = this.#read(channel, since);
    reads.add(reading);
    try {
      const result = await reading;
      if (result.position !== null && this.#interest.desired.has(channel)) {
        const base = this.#base.get(channel);
        if (
          base === undefined ||
          base.epoch !== result.position.epoch ||
          result.position.offset < base.offset
        )
          this.#base.set(channel, result.position);
      }
      return result;
    } finally {
      reads.delete(reading);
      if (reads.size === 0 && this.#reads.get(channel) === reads) this.#reads.delete(channel);
    }
  }

  async #read(channel: string, since: StreamPosition | null): Promise<HistoryRead> {
    const reply = (await this.#deadlines.wrap(
      this.#client.callBuffer('EVAL', [
        READ,
        2,
        `${this.prefix}stream-meta:${channel}`,
        this.#key(channel),
        newEpoch(),
        this.#ttl,
        since === null ? '' : since.epoch,
        since === null ? 0 : since.offset,
      ]) as Promise<unknown>,
      () => new Error(`${WHERE}: read of ${JSON.stringify(channel)} not answered in ${this.#timeout} ms`),
    )) as [Buffer, Buffer, Buffer, Buffer, [Buffer, Buffer[]][] | undefined];
    const position = { epoch: reply[0].toString(), offset: Number(reply[1].toString()) };
    const status = reply[3].toString();
    if (status !== 'ok') return { ok: false, position, reason: status as 'epoch' | 'future' };
    if (since === null || since.offset === position.offset) return { ok: true, position, entries: [] };
    const oldest = Number(reply[2].toString()) - this.#ttl;
    const entries: HistoryEntry[] = [];
    let expect = since.offset + 1;
    for (const [, fields] of reply[4] ?? []) {
      const f = fieldMap(fields);
      const frame = f.get('f');
      const at = Number(f.get('t')?.toString());
      const decoded = frame === undefined ? null : decode(frame);
      // Entries older than the ttl count as gone; a hole means the history cannot fill the gap.
      if (decoded === null || decoded.offset !== expect || !(at >= oldest)) break;
      entries.push(decoded);
      expect++;
    }
    if (expect !== position.offset + 1) return { ok: false, position, reason: 'too-old' };
    return { ok: true, position, entries };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const channel of [...this.#filling.keys()]) this.#forget(channel);
    await this.#deadlines.idle();
    this.#deadlines.clear(new Error(`${WHERE}: closed`));
    const sub = this.#subscriber;
    if (sub === null) return;
    if (sub.status === 'ready') await sub.quit().catch(() => sub.disconnect());
    else sub.disconnect();
  }

  #key(channel: string): string {
    return `${this.prefix}stream:${channel}`;
  }

  #receive(channel: string, data: Buffer): void {
    const context = this.#context;
    if (context === null || this.#closed) return;
    const entry = decode(data);
    const header = entry === null ? null : readDataHeader(entry.frame.bytes);
    if (entry === null || header === null || header.channel !== channel) {
      context.error(new Error(`${WHERE}: ignored a malformed message on ${JSON.stringify(channel)}`));
      return;
    }
    const filling = this.#filling.get(channel);
    if (filling !== undefined) filling.held.push({ position: header.position, frame: entry.frame });
    else this.#deliver(channel, header.position, entry.frame);
  }

  #deliver(channel: string, position: StreamPosition, frame: Message): void {
    const last = this.#delivered.get(channel);
    if (last !== undefined && last.epoch === position.epoch && position.offset <= last.offset) return;
    this.#delivered.set(channel, position);
    try {
      (this.#context as HistoryContext).deliver(channel, position, frame);
    } catch (err) {
      (this.#context as HistoryContext).error(err);
    }
  }

  /**
   * After an outage: delivers what the Stream holds past the last position this node's sessions are known to
   * have, then the live messages held meanwhile. When the Stream no longer holds it (or cannot be read), every
   * session of the channel is told `unrec` instead of being left with a silent gap.
   */
  async #fill(channel: string): Promise<void> {
    const filling = this.#filling.get(channel);
    if (filling === undefined) return;
    const context = this.#context as HistoryContext;
    // A read that was under way when the connection dropped may still give a session its position.
    const reads = this.#reads.get(channel);
    if (reads !== undefined) await Promise.allSettled([...reads]);
    if (this.#filling.get(channel) !== filling) return;
    const from = this.#delivered.get(channel) ?? this.#base.get(channel);
    let missed: HistoryRead | null = null;
    if (from !== undefined) {
      try {
        missed = await this.#read(channel, from);
      } catch (err) {
        context.error(err);
      }
    }
    if (this.#filling.get(channel) !== filling) return;
    this.#filling.delete(channel);
    if (missed?.ok === true) {
      for (const entry of missed.entries) {
        const header = readDataHeader(entry.frame.bytes);
        if (header !== null) this.#deliver(channel, header.position, entry.frame);
      }
    } else if (from !== undefined) {
      const reason = missed === null ? 'unavailable' : missed.reason;
      const position = missed?.position ?? null;
      context.error(
        new Error(
          `${WHERE}: what ${JSON.stringify(channel)} published during the outage cannot be delivered (${reason}); its sessions are sent unrec`,
        ),
      );
      try {
        context.lost(channel, position, reason);
      } catch (err) {
        context.error(err);
      }
      // Live messages up to the position the sessions were just given are not theirs to receive anymore.
      if (position !== null) this.#delivered.set(channel, position);
    }
    for (const m of filling.held) this.#deliver(channel, m.position, m.frame);
    filling.resolve();
  }

  /** Drops what this engine keeps for `channel` (no session of this node follows it anymore). */
  #forget(channel: string): void {
    this.#delivered.delete(channel);
    this.#base.delete(channel);
    const filling = this.#filling.get(channel);
    this.#filling.delete(channel);
    filling?.resolve();
  }

  async #apply(channel: string, on: boolean): Promise<void> {
    const sub = this.#subscriber;
    if (sub === null || this.#closed) return;
    if (sub.status !== 'ready') {
      if (!on) return; // a new connection starts with no subscription
      // Still connecting: the subscription is confirmed once it is ready (the recovery waits for it).
      await this.#deadlines.wrap(
        new Promise<void>((resolve) => sub.once('ready', () => resolve())),
        () => new Error(`${WHERE}: the subscriber is not connected after ${this.#timeout} ms`),
      );
      if (this.#closed || !this.#interest.desired.has(channel)) return;
    }
    if (on === this.#active.has(channel)) return;
    const key = this.#key(channel);
    await this.#deadlines.wrap(
      on ? sub.subscribe(key) : sub.unsubscribe(key),
      () => new Error(`${WHERE}: Redis did not confirm the subscription of ${key} in ${this.#timeout} ms`),
    );
    if (on) this.#active.add(channel);
    else {
      this.#active.delete(channel);
      this.#forget(channel);
    }
  }
}

/** A channel being filled after an outage: the live messages held meanwhile, and when it is done. */
interface Fill {
  readonly held: { position: StreamPosition; frame: Message }[];
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

function fill(): Fill {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  return { held: [], done, resolve };
}

/** A stored or published frame: its kind byte (`t` text, `b` binary), then the frame. */
function decode(data: Buffer): HistoryEntry | null {
  const kind = data[0];
  if (kind !== 0x74 && kind !== 0x62) return null;
  const bytes = data.subarray(1);
  const header = readDataHeader(bytes);
  if (header === null) return null;
  const frame =
    kind === 0x62 ? new Message(Buffer.from(bytes), true) : new Message(bytes.toString('utf8'), false);
  return { offset: header.position.offset, frame };
}

function fieldMap(fields: Buffer[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2)
    out.set((fields[i] as Buffer).toString(), fields[i + 1] as Buffer);
  return out;
}
