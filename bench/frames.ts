/**
 * The cheapest possible WebSocket client side: a raw TCP handshake, then a streaming frame-header parser that
 * looks only at the first bytes of each payload (where the sequence and publish time are) and skips the rest.
 * Server frames are unmasked; client frames are masked with a zero key (allowed: the mask bit is what servers
 * check).
 */

/**
 * Bytes of a data frame's payload the client needs: the stamp (32 bytes) after Socket.IO's `42["m","` (8) or a
 * stream channel's header (`\x1e[1,"m","bench","<epoch>",<offset>]\n`, under 64).
 */
export const PREFIX = 112;

export const OP_TEXT = 1;
export const OP_BINARY = 2;
export const OP_CLOSE = 8;
export const OP_PING = 9;
export const OP_PONG = 10;

/** The HTTP upgrade request. The key is fixed: the bench does not check the accept hash. */
export function upgradeRequest(host: string, port: number, path: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: ZmFub3V0LWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    'latin1',
  );
}

/** A masked client frame (FIN set) with a payload of at most 125 bytes. */
export function clientFrame(op: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (body.length > 125) throw new RangeError('client frames in the bench carry at most 125 bytes');
  const out = Buffer.allocUnsafe(6 + body.length);
  out[0] = 0x80 | op;
  out[1] = 0x80 | body.length;
  out.writeUInt32BE(0, 2); // zero mask key: the payload goes as is
  body.copy(out, 6);
  return out;
}

/** Receives each complete frame's opcode, its buffer, where the payload starts, how much of it is in `buf`. */
export type FrameHandler = (
  op: number,
  buf: Buffer,
  start: number,
  available: number,
  length: number,
) => void;

/**
 * Per-connection parser state. `feed` hands every frame to `onFrame` with at least
 * min(length, PREFIX) payload bytes (control frames: all of them), and skips the rest without copying.
 */
export class FrameReader {
  #pending: Buffer | null = null;
  #skip = 0;

  feed(chunk: Buffer, onFrame: FrameHandler): void {
    let buf = chunk;
    if (this.#pending !== null) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = null;
    }
    let i = 0;
    if (this.#skip > 0) {
      if (buf.length <= this.#skip) {
        this.#skip -= buf.length;
        return;
      }
      i = this.#skip;
      this.#skip = 0;
    }
    const n = buf.length;
    while (i < n) {
      if (n - i < 2) break;
      const b0 = buf[i]!;
      const b1 = buf[i + 1]!;
      let len = b1 & 127;
      let hl = 2;
      if (len === 126) {
        if (n - i < 4) break;
        len = buf.readUInt16BE(i + 2);
        hl = 4;
      } else if (len === 127) {
        if (n - i < 10) break;
        len = buf.readUInt32BE(i + 2) * 2 ** 32 + buf.readUInt32BE(i + 6);
        hl = 10;
      }
      if ((b1 & 0x80) !== 0) hl += 4; // a masked server frame would be a server bug; skip its key
      const op = b0 & 15;
      const need = op >= 8 ? len : Math.min(len, PREFIX);
      if (n - i - hl < need) break;
      const start = i + hl;
      onFrame(op, buf, start, Math.min(len, n - start), len);
      const end = start + len;
      if (end > n) {
        this.#skip = end - n;
        return;
      }
      i = end;
    }
    if (i < n) this.#pending = Buffer.from(buf.subarray(i));
  }
}

/** Reads `count` ASCII digits at `at` as a number (NaN on a non-digit). */
export function readDigits(buf: Buffer, at: number, count: number): number {
  let v = 0;
  for (let k = 0; k < count; k++) {
    const d = buf[at + k]! - 48;
    if (d < 0 || d > 9) return NaN;
    v = v * 10 + d;
  }
  return v;
}

/** Where the stamp's `#` is in a data frame's payload, or -1. */
export function findStamp(buf: Buffer, start: number, available: number): number {
  const end = start + Math.min(available, 80);
  for (let k = start; k < end; k++) if (buf[k] === 0x23) return k;
  return -1;
}
