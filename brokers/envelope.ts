import { randomInt } from 'node:crypto';
import { Message } from '../src/index.js';

/**
 * The wire form of one cross-node publish, encoded once and published unchanged on the subject of each of its
 * channels. Big-endian, no padding:
 *
 * ```
 * magic   u8      0xFA
 * version u8      2 or 3
 * flags   u8      bit 0: binary payload; version 3 only: bit 1: volatile, bit 2: keyed; other bits must be 0
 * origin  u16 n   then n bytes of UTF-8: the publishing node's id (1..1024 bytes)
 * stream  u32     drawn at random when the publishing broker is created
 * seq     u48     1, 2, 3, ... per stream
 * count   u16 c   then c times: u16 m, m bytes of UTF-8 (a channel name, 1..65535 bytes); c >= 1
 * key     u16 k   version 3 with the keyed flag only: then k bytes of UTF-8, the conflation key (1..65535 bytes)
 * payload         every remaining byte: the Message bytes (UTF-8 text unless the binary flag is set)
 * ```
 *
 * The channel list and the publish id (origin, stream, seq: the same on every copy of one publish) travel so
 * that a receiving node can deliver a multi-channel publish once per session, from whichever copy comes first.
 * The stream keeps ids apart when a node restarts with the same id. Version 3 adds the `volatile` and `key`
 * publish options, so that every node applies them to its own slow sessions.
 *
 * A publish is written with the lowest version that carries it: version 2 unless it is keyed or volatile, and
 * version 2 is read as before. So during a rolling upgrade nodes of version 2 and 3 exchange plain publishes;
 * a keyed or volatile one from a version 3 node is refused by a version 2 node (counted as malformed there).
 * Version 1 (no stream, no seq) is refused.
 */
export const ENVELOPE_MAGIC = 0xfa;
/** The newest version this node writes (for keyed and volatile publishes) and reads. */
export const ENVELOPE_VERSION = 3;
/** The oldest version this node reads, and the one it writes for a plain publish. */
export const ENVELOPE_MIN_VERSION = 2;
const FLAG_BINARY = 0x01;
const FLAG_VOLATILE = 0x02;
const FLAG_KEYED = 0x04;
/** The flags each version knows, by version. */
const KNOWN_FLAGS = [0, 0, FLAG_BINARY, FLAG_BINARY | FLAG_VOLATILE | FLAG_KEYED];
const MAX_ORIGIN = 1024;
const MAX_U16 = 0xffff;

const MAX_SEQ = 2 ** 48 - 1;

/** The ids of one publisher: a random stream and a sequence number in it. */
export class PublishIds {
  readonly stream = randomInt(0, 2 ** 32 - 1);
  #seq = 0;

  /** The next sequence number (1, 2, ...; a new stream after 2^48 - 1 of them, which never happens). */
  next(): number {
    if (this.#seq === MAX_SEQ) this.#seq = 0;
    return ++this.#seq;
  }
}

const defaultIds = new PublishIds();

/** A decoded envelope. */
export interface Envelope {
  /** The publishing node's id. */
  readonly origin: string;
  /** The publish id, unique across nodes and restarts: `<stream>.<seq>.<origin>`. */
  readonly id: string;
  /** Every channel of the publish, in the publisher's order. */
  readonly channels: readonly string[];
  readonly message: Message;
}

/** Thrown by {@link decodeEnvelope} for bytes that are not a valid envelope. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
}

// Lone surrogates do not survive UTF-8: two different names would become the same bytes.
const LONE_SURROGATE = /\p{Cs}/u;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Throws a TypeError unless `name` can travel as UTF-8 and come back identical. */
export function assertWireName(name: string, what: string): void {
  if (LONE_SURROGATE.test(name)) {
    throw new TypeError(
      `The ${what} ${JSON.stringify(name)} contains a lone surrogate and cannot cross nodes`,
    );
  }
}

/**
 * Encodes one publish with the next id of `ids`. Throws TypeError/RangeError for names that cannot be
 * represented.
 */
export function encodeEnvelope(
  origin: string,
  channels: readonly string[],
  message: Message,
  ids: PublishIds = defaultIds,
): Buffer {
  assertWireName(origin, 'node id');
  const originLength = Buffer.byteLength(origin, 'utf8');
  if (originLength === 0 || originLength > MAX_ORIGIN) {
    throw new RangeError(`The node id must be 1..${MAX_ORIGIN} bytes of UTF-8; got ${originLength}`);
  }
  if (channels.length === 0 || channels.length > MAX_U16) {
    throw new RangeError(`A publish crosses nodes with 1..${MAX_U16} channels; got ${channels.length}`);
  }
  const lengths: number[] = [];
  let size = 3 + 2 + originLength + 4 + 6 + 2;
  for (const channel of channels) {
    assertWireName(channel, 'channel');
    const n = Buffer.byteLength(channel, 'utf8');
    if (n === 0 || n > MAX_U16) {
      throw new RangeError(`A channel name must be 1..${MAX_U16} bytes of UTF-8 to cross nodes; got ${n}`);
    }
    lengths.push(n);
    size += 2 + n;
  }
  const key = message.key;
  let keyLength = 0;
  if (key !== undefined) {
    assertWireName(key, 'key');
    keyLength = Buffer.byteLength(key, 'utf8');
    if (keyLength === 0 || keyLength > MAX_U16) {
      throw new RangeError(`A key must be 1..${MAX_U16} bytes of UTF-8 to cross nodes; got ${keyLength}`);
    }
    size += 2 + keyLength;
  }
  const flags =
    (message.binary ? FLAG_BINARY : 0) |
    (message.volatile ? FLAG_VOLATILE : 0) |
    (key !== undefined ? FLAG_KEYED : 0);
  const payload = message.bytes;
  const out = Buffer.allocUnsafe(size + payload.length);
  out[0] = ENVELOPE_MAGIC;
  out[1] = (flags & ~FLAG_BINARY) === 0 ? ENVELOPE_MIN_VERSION : ENVELOPE_VERSION;
  out[2] = flags;
  let at = out.writeUInt16BE(originLength, 3);
  at += out.write(origin, at, 'utf8');
  at = out.writeUInt32BE(ids.stream, at);
  at = out.writeUIntBE(ids.next(), at, 6);
  at = out.writeUInt16BE(channels.length, at);
  for (let i = 0; i < channels.length; i++) {
    at = out.writeUInt16BE(lengths[i] as number, at);
    at += out.write(channels[i] as string, at, 'utf8');
  }
  if (key !== undefined) {
    at = out.writeUInt16BE(keyLength, at);
    at += out.write(key, at, 'utf8');
  }
  payload.copy(out, at);
  return out;
}

/**
 * Decodes and validates an envelope strictly: magic, version, flags, every length, UTF-8 of every name and of
 * a text payload. Returns `null` without decoding the payload when the origin is `self` (this node's echo).
 * A binary payload is copied, so the result does not alias the receive buffer.
 * @throws EnvelopeError for anything malformed.
 */
export function decodeEnvelope(bytes: Uint8Array, self?: string): Envelope | null {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 21) throw new EnvelopeError(`envelope too short (${buf.length} bytes)`);
  if (buf[0] !== ENVELOPE_MAGIC) throw new EnvelopeError('not a fanout envelope (bad magic byte)');
  const version = buf[1] as number;
  if (version < ENVELOPE_MIN_VERSION || version > ENVELOPE_VERSION) {
    throw new EnvelopeError(`unsupported envelope version ${version}`);
  }
  const flags = buf[2] as number;
  if ((flags & ~(KNOWN_FLAGS[version] as number)) !== 0) {
    throw new EnvelopeError(`unknown envelope flags 0x${flags.toString(16)} for version ${version}`);
  }
  if ((flags & FLAG_VOLATILE) !== 0 && (flags & FLAG_KEYED) !== 0) {
    throw new EnvelopeError('an envelope cannot be both volatile and keyed');
  }
  let at = 3;
  const originLength = buf.readUInt16BE(at);
  at += 2;
  if (originLength === 0 || originLength > MAX_ORIGIN) {
    throw new EnvelopeError(`bad origin length ${originLength}`);
  }
  const origin = text(buf, at, originLength, 'origin');
  at += originLength;
  if (origin === self) return null;
  if (at + 12 > buf.length) throw new EnvelopeError('envelope truncated before the channel count');
  const stream = buf.readUInt32BE(at);
  const seq = buf.readUIntBE(at + 4, 6);
  at += 10;
  const count = buf.readUInt16BE(at);
  at += 2;
  if (count === 0) throw new EnvelopeError('envelope has no channel');
  const channels: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 2 > buf.length) throw new EnvelopeError(`envelope truncated in channel ${i}`);
    const n = buf.readUInt16BE(at);
    at += 2;
    if (n === 0) throw new EnvelopeError(`channel ${i} is empty`);
    channels.push(text(buf, at, n, `channel ${i}`));
    at += n;
  }
  let key: string | undefined;
  if ((flags & FLAG_KEYED) !== 0) {
    if (at + 2 > buf.length) throw new EnvelopeError('envelope truncated before the key');
    const n = buf.readUInt16BE(at);
    at += 2;
    if (n === 0) throw new EnvelopeError('the key is empty');
    key = text(buf, at, n, 'key');
    at += n;
  }
  const volatile = (flags & FLAG_VOLATILE) !== 0;
  const binary = (flags & FLAG_BINARY) !== 0;
  const message = binary
    ? new Message(Buffer.from(buf.subarray(at)), true, key, volatile)
    : new Message(text(buf, at, buf.length - at, 'text payload'), false, key, volatile);
  return { origin, id: `${stream}.${seq}.${origin}`, channels, message };
}

function text(buf: Buffer, at: number, length: number, what: string): string {
  if (at + length > buf.length) throw new EnvelopeError(`envelope truncated in the ${what}`);
  try {
    return utf8.decode(buf.subarray(at, at + length));
  } catch {
    throw new EnvelopeError(`the ${what} is not valid UTF-8`);
  }
}
