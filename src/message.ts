/**
 * A broadcast payload encoded once. Every transport reads the same `data`/`bytes`; a transport that needs a
 * prepared wire form (a ws frame) stores it with {@link Message.prepared}, so it is built once per broadcast,
 * not once per recipient.
 */
export type Payload = string | Uint8Array | ArrayBuffer | object | number | boolean | null;

export class Message {
  /** Text as a string, binary as a Buffer. */
  readonly data: string | Buffer;
  /** True for a binary frame, false for a text frame. */
  readonly binary: boolean;
  /**
   * The conflation key (`publish` option `key`): for a session that is behind, this message replaces the held
   * one with the same key. Undefined for a plain message.
   */
  readonly key: string | undefined;
  /** `publish` option `volatile`: skipped, not queued, for a session that is behind. */
  readonly volatile: boolean;
  #bytes: Buffer | undefined;
  #prepared: Map<symbol, unknown> | undefined;

  constructor(data: string | Buffer, binary: boolean, key?: string, volatile = false) {
    this.data = data;
    this.binary = binary;
    this.key = key;
    this.volatile = volatile;
    if (typeof data !== 'string') this.#bytes = data;
  }

  /** The same payload with other delivery options (a new Message: a Message is never changed once made). */
  with(key: string | undefined, volatile: boolean): Message {
    const copy = new Message(this.data, this.binary, key, volatile);
    copy.#bytes = this.#bytes;
    return copy;
  }

  /** The payload bytes (UTF-8 for text), computed on first use and kept. */
  get bytes(): Buffer {
    return (this.#bytes ??= Buffer.from(this.data as string, 'utf8'));
  }

  /** Payload size in bytes. */
  get byteLength(): number {
    return this.bytes.length;
  }

  /** A transport-specific prepared form, built on first request and cached on this message. */
  prepared<T>(key: symbol, make: (message: Message) => T): T {
    return preparedIn((this.#prepared ??= new Map()), key, make, this);
  }
}

/**
 * Several messages for one session at once, in order: what the registry held for a busy channel and fans out
 * as one batch (`Transport.fanoutMany`). A transport may join their prepared wire forms once per batch.
 */
export class MessageBatch {
  readonly messages: readonly Message[];
  /**
   * An upper bound of the bytes the batch adds to a session's buffer: the payloads plus the largest WebSocket
   * frame header a server writes (10 bytes) for each.
   */
  readonly wireBound: number;
  #prepared: Map<symbol, unknown> | undefined;

  constructor(messages: readonly Message[]) {
    this.messages = messages;
    let bytes = 0;
    for (const message of messages) bytes += message.byteLength + 10;
    this.wireBound = bytes;
  }

  /** A transport-specific prepared form of the whole batch, built on first request and cached. */
  prepared<T>(key: symbol, make: (batch: MessageBatch) => T): T {
    return preparedIn((this.#prepared ??= new Map()), key, make, this);
  }
}

/** What `make(of)` builds for `key`, built on first request and kept in `cache` (no allocation once built). */
function preparedIn<A, T>(cache: Map<symbol, unknown>, key: symbol, make: (of: A) => T, of: A): T {
  let value = cache.get(key) as T | undefined;
  if (value === undefined) {
    value = make(of);
    cache.set(key, value);
  }
  return value;
}

/**
 * Encodes a payload once: a string stays text, bytes (Buffer, Uint8Array, ArrayBuffer) become a binary frame,
 * anything else is serialized to JSON text. A Message passes through unchanged.
 */
export function encode(payload: Payload | Message): Message {
  if (payload instanceof Message) return payload;
  if (typeof payload === 'string') return new Message(payload, false);
  if (Buffer.isBuffer(payload)) return new Message(payload, true);
  if (payload instanceof Uint8Array) {
    return new Message(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), true);
  }
  if (payload instanceof ArrayBuffer) return new Message(Buffer.from(payload), true);
  if (payload === undefined || typeof payload === 'function' || typeof payload === 'symbol') {
    throw new TypeError(
      `The "payload" argument must be a string, bytes or a JSON value; got ${typeof payload}`,
    );
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new TypeError(`The "payload" argument cannot be serialized to JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw new TypeError('The "payload" argument cannot be serialized to JSON');
  return new Message(text, false);
}
