/** How many of a publisher's latest sequence numbers are remembered (a power of two). */
const WINDOW = 4096;
/** How many publishers are remembered at once; past it the one seen first is forgotten. */
const MAX_PUBLISHERS = 1024;

/**
 * @internal Which recent publishes of each publisher arrived, by sequence number, so that a second copy of one
 * is known as such. A broker client may send a publish again after a reconnect when only its reply was lost
 * (ioredis does: `autoResendUnfulfilledCommands`), and the server then relays it twice.
 *
 * Exact within the window: a copy is a repeat only if that very number arrived before, so a late publish that
 * never arrived still goes through, whatever the order. A number older than the last WINDOW of its publisher,
 * or an id not of the envelope's form `<stream>.<seq>.<origin>`, is never called a repeat.
 */
export class Arrivals {
  readonly #publishers = new Map<string, Window>();

  /** True the first time `id` arrives, false for a repeat. */
  first(id: string): boolean {
    const a = id.indexOf('.');
    const b = a < 1 ? -1 : id.indexOf('.', a + 1);
    if (b < a + 2) return true;
    let seq = 0;
    for (let i = a + 1; i < b; i++) {
      const digit = id.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) return true;
      seq = seq * 10 + digit;
    }
    if (!Number.isSafeInteger(seq)) return true;
    // The publisher: its stream and its node id, without the sequence number.
    const key = id.slice(0, a) + id.slice(b);
    let window = this.#publishers.get(key);
    if (window === undefined) {
      if (this.#publishers.size >= MAX_PUBLISHERS) {
        const oldest = this.#publishers.keys().next().value as string;
        this.#publishers.delete(oldest);
      }
      window = new Window();
      this.#publishers.set(key, window);
    }
    return window.first(seq);
  }

  /** Publishers remembered (for tests). */
  get size(): number {
    return this.#publishers.size;
  }
}

/** The last WINDOW sequence numbers of one publisher, one bit each, in a ring. */
class Window {
  #max = -1;
  readonly #bits = new Uint32Array(WINDOW / 32);

  first(seq: number): boolean {
    const bits = this.#bits;
    if (seq > this.#max) {
      // The numbers between the last one and this one leave the ring's far end: clear their bits.
      if (seq - this.#max >= WINDOW) bits.fill(0);
      else {
        let s = this.#max + 1;
        while (s <= seq) {
          const slot = s & (WINDOW - 1);
          if ((slot & 31) === 0 && seq - s >= 31) {
            bits[slot >>> 5] = 0;
            s += 32;
          } else {
            bits[slot >>> 5] = (bits[slot >>> 5] as number) & ~(1 << (slot & 31));
            s++;
          }
        }
      }
      this.#max = seq;
    } else if (this.#max - seq >= WINDOW) return true;
    const slot = seq & (WINDOW - 1);
    const mask = 1 << (slot & 31);
    const word = bits[slot >>> 5] as number;
    if ((word & mask) !== 0) return false;
    bits[slot >>> 5] = word | mask;
    return true;
  }
}
