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
  #bytes: Buffer | undefined;
  #prepared: Map<symbol, unknown> | undefined;

  constructor(data: string | Buffer, binary: boolean) {
    this.data = data;
    this.binary = binary;
    if (typeof data !== 'string') this.#bytes = data;
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
    const cache = (this.#prepared ??= new Map());
    let value = cache.get(key) as T | undefined;
    if (value === undefined) {
      value = make(this);
      cache.set(key, value);
    }
    return value;
  }
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
