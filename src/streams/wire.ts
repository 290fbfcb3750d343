import { Message } from '../message.js';

/**
 * The stream wire format (docs/streams.md, "Wire protocol"). Every frame of a stream channel starts with the
 * record separator U+001E, then a header: a JSON array whose first element is the protocol version. A data frame
 * has a body after a line feed: the payload exactly as published (text, or the bytes of a binary frame).
 *
 * ```
 * data         \x1e[1,"m",channel,epoch,offset]\n<payload>
 * subscribed   \x1e[1,"sub",channel,epoch,offset]
 * recovered    \x1e[1,"rec",channel,epoch,offset,count]
 * unrecoverable\x1e[1,"unrec",channel,epoch|null,offset|null,reason]
 * ```
 *
 * Raw channels never carry this: their frames are the payloads alone.
 */
export const WIRE_VERSION = 1;
/** The first character of every stream frame (never the first character of JSON text). */
export const FRAME_MARK = '\u001e';

/** A place in a channel's stream: `offset` counts publishes, `epoch` names the history they belong to. */
export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

/** Why a channel could not be recovered. */
export type UnrecoverableReason =
  /** The channel's history was reset since (restart of an in-memory history, expiry, a flushed engine). */
  | 'epoch'
  /** The history no longer holds the message after the client's position (count or age limit). */
  | 'too-old'
  /** The client's offset is past the channel's current offset in that epoch (a position never issued). */
  | 'future'
  /** The position sent for this channel is malformed. */
  | 'invalid'
  /** The history could not be read (engine down or too slow). */
  | 'unavailable';

const encoder = new TextEncoder();

/** The JSON text of a channel name, cached (names repeat on every publish). Bounded: names come from users. */
const names = new Map<string, string>();
function jsonName(channel: string): string {
  let text = names.get(channel);
  if (text === undefined) {
    text = JSON.stringify(channel);
    if (names.size >= 10_000) names.clear();
    names.set(channel, text);
  }
  return text;
}

/**
 * What every data header of one channel in one epoch starts with (up to the offset). An engine that publishes
 * often on a channel keeps it and passes it to {@link dataFrame}, so a publish costs one concatenation.
 */
export function dataPrefix(channel: string, epoch: string): string {
  return `${FRAME_MARK}[${WIRE_VERSION},"m",${jsonName(channel)},${JSON.stringify(epoch)},`;
}

/** The header of a data frame, line feed included. */
export function dataHeader(channel: string, position: StreamPosition): string {
  return `${dataPrefix(channel, position.epoch)}${position.offset}]\n`;
}

/**
 * Builds the wire frame of one publish, once: every session of the channel is sent this same Message.
 * `prefix`: `dataPrefix(channel, position.epoch)` when the caller keeps it.
 */
export function dataFrame(
  channel: string,
  position: StreamPosition,
  payload: Message,
  prefix: string = dataPrefix(channel, position.epoch),
): Message {
  const header = `${prefix}${position.offset}]\n`;
  if (!payload.binary) return new Message(header + (payload.data as string), false);
  const head = encoder.encode(header);
  const body = payload.bytes;
  const out = Buffer.allocUnsafe(head.length + body.length);
  out.set(head, 0);
  body.copy(out, head.length);
  return new Message(out, true);
}

export function subscribedFrame(channel: string, position: StreamPosition): Message {
  return control([`"sub"`, jsonName(channel), JSON.stringify(position.epoch), String(position.offset)]);
}

export function recoveredFrame(channel: string, position: StreamPosition, count: number): Message {
  return control([
    `"rec"`,
    jsonName(channel),
    JSON.stringify(position.epoch),
    String(position.offset),
    String(count),
  ]);
}

export function unrecoverableFrame(
  channel: string,
  position: StreamPosition | null,
  reason: UnrecoverableReason,
): Message {
  return control([
    `"unrec"`,
    jsonName(channel),
    position === null ? 'null' : JSON.stringify(position.epoch),
    position === null ? 'null' : String(position.offset),
    JSON.stringify(reason),
  ]);
}

function control(fields: string[]): Message {
  return new Message(`${FRAME_MARK}[${WIRE_VERSION},${fields.join(',')}]`, false);
}

/** What {@link readDataHeader} finds at the start of a data frame. */
export interface DataHeader {
  readonly channel: string;
  readonly position: StreamPosition;
}

/**
 * Reads the header of a data frame (text or bytes) built by {@link dataFrame}, e.g. one a history engine
 * stored. Returns null for anything else.
 */
export function readDataHeader(frame: string | Uint8Array): DataHeader | null {
  let line: string;
  if (typeof frame === 'string') {
    const end = frame.indexOf('\n');
    if (frame.charCodeAt(0) !== 0x1e || end === -1) return null;
    line = frame.slice(1, end);
  } else {
    const end = frame.indexOf(0x0a);
    if (frame[0] !== 0x1e || end === -1) return null;
    line = Buffer.from(frame.buffer, frame.byteOffset + 1, end - 1).toString('utf8');
  }
  let header: unknown;
  try {
    header = JSON.parse(line);
  } catch {
    return null;
  }
  if (!Array.isArray(header) || header[0] !== WIRE_VERSION || header[1] !== 'm') return null;
  const [, , channel, epoch, offset] = header as unknown[];
  if (typeof channel !== 'string' || typeof epoch !== 'string' || !isOffset(offset)) return null;
  return { channel, position: { epoch, offset } };
}

export function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** The largest `since` query parameters read from one upgrade request; further ones are ignored. */
export const MAX_SINCE = 256;
const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Reads the positions a reconnecting client states in its upgrade request: `since=<epoch>:<offset>:<channel>`,
 * once per channel (the channel last, so it may contain `:`). Returns channel -> position, or 'invalid' for a
 * value that names a channel but is malformed. Values naming no channel are ignored. Never throws.
 */
export function parseSince(query: URLSearchParams): Map<string, StreamPosition | 'invalid'> {
  const out = new Map<string, StreamPosition | 'invalid'>();
  let n = 0;
  for (const value of query.getAll('since')) {
    if (++n > MAX_SINCE) break;
    const a = value.indexOf(':');
    const b = a === -1 ? -1 : value.indexOf(':', a + 1);
    if (b === -1 || b === value.length - 1) continue;
    const channel = value.slice(b + 1);
    const epoch = value.slice(0, a);
    const digits = value.slice(a + 1, b);
    const offset = /^(0|[1-9][0-9]{0,15})$/.test(digits) ? Number(digits) : NaN;
    if (out.has(channel)) {
      out.set(channel, 'invalid'); // two different claims for one channel: trust neither
      continue;
    }
    out.set(channel, EPOCH.test(epoch) && isOffset(offset) ? { epoch, offset } : 'invalid');
  }
  return out;
}

/** Formats one `since` query value (the inverse of {@link parseSince} for one channel). */
export function formatSince(channel: string, position: StreamPosition): string {
  return `${position.epoch}:${position.offset}:${channel}`;
}
