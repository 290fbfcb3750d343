import { Message } from '../message.js';

/**
 * The wire form of one cross-node publish, encoded once and published unchanged on the subject of each of its
 * channels. Big-endian, no padding:
 *
 * ```
 * magic   u8      0xFA
 * version u8      1
 * flags   u8      bit 0: binary payload; other bits must be 0
 * origin  u16 n   then n bytes of UTF-8: the publishing node's id (1..1024 bytes)
 * count   u16 c   then c times: u16 m, m bytes of UTF-8 (a channel name, 1..65535 bytes); c >= 1
 * payload         every remaining byte: the Message bytes (UTF-8 text unless the binary flag is set)
 * ```
 *
 * The channel list travels so that a receiving node can deliver a multi-channel publish once per session.
 */
export const ENVELOPE_MAGIC = 0xfa;
export const ENVELOPE_VERSION = 1;
const FLAG_BINARY = 0x01;
const MAX_ORIGIN = 1024;
const MAX_U16 = 0xffff;

/** A decoded envelope. */
export interface Envelope {
  /** The publishing node's id. */
  readonly origin: string;
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

/** Encodes one publish. Throws TypeError/RangeError for names that cannot be represented. */
export function encodeEnvelope(origin: string, channels: readonly string[], message: Message): Buffer {
  assertWireName(origin, 'node id');
  const originLength = Buffer.byteLength(origin, 'utf8');
  if (originLength === 0 || originLength > MAX_ORIGIN) {
    throw new RangeError(`The node id must be 1..${MAX_ORIGIN} bytes of UTF-8; got ${originLength}`);
  }
  if (channels.length === 0 || channels.length > MAX_U16) {
    throw new RangeError(`A publish crosses nodes with 1..${MAX_U16} channels; got ${channels.length}`);
  }
  const lengths: number[] = [];
  let size = 3 + 2 + originLength + 2;
  for (const channel of channels) {
    assertWireName(channel, 'channel');
    const n = Buffer.byteLength(channel, 'utf8');
    if (n === 0 || n > MAX_U16) {
      throw new RangeError(`A channel name must be 1..${MAX_U16} bytes of UTF-8 to cross nodes; got ${n}`);
    }
    lengths.push(n);
    size += 2 + n;
  }
  const payload = message.bytes;
  const out = Buffer.allocUnsafe(size + payload.length);
  out[0] = ENVELOPE_MAGIC;
  out[1] = ENVELOPE_VERSION;
  out[2] = message.binary ? FLAG_BINARY : 0;
  let at = out.writeUInt16BE(originLength, 3);
  at += out.write(origin, at, 'utf8');
  at = out.writeUInt16BE(channels.length, at);
  for (let i = 0; i < channels.length; i++) {
    at = out.writeUInt16BE(lengths[i] as number, at);
    at += out.write(channels[i] as string, at, 'utf8');
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
  if (buf.length < 8) throw new EnvelopeError(`envelope too short (${buf.length} bytes)`);
  if (buf[0] !== ENVELOPE_MAGIC) throw new EnvelopeError('not a fanout envelope (bad magic byte)');
  if (buf[1] !== ENVELOPE_VERSION) throw new EnvelopeError(`unsupported envelope version ${String(buf[1])}`);
  const flags = buf[2] as number;
  if ((flags & ~FLAG_BINARY) !== 0) throw new EnvelopeError(`unknown envelope flags 0x${flags.toString(16)}`);
  let at = 3;
  const originLength = buf.readUInt16BE(at);
  at += 2;
  if (originLength === 0 || originLength > MAX_ORIGIN) {
    throw new EnvelopeError(`bad origin length ${originLength}`);
  }
  const origin = text(buf, at, originLength, 'origin');
  at += originLength;
  if (origin === self) return null;
  if (at + 2 > buf.length) throw new EnvelopeError('envelope truncated before the channel count');
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
  const binary = (flags & FLAG_BINARY) !== 0;
  const message = binary
    ? new Message(Buffer.from(buf.subarray(at)), true)
    : new Message(text(buf, at, buf.length - at, 'text payload'), false);
  return { origin, channels, message };
}

function text(buf: Buffer, at: number, length: number, what: string): string {
  if (at + length > buf.length) throw new EnvelopeError(`envelope truncated in the ${what}`);
  try {
    return utf8.decode(buf.subarray(at, at + length));
  } catch {
    throw new EnvelopeError(`the ${what} is not valid UTF-8`);
  }
}
