/**
 * Inbound limits: how much one session may send to the server.
 *
 * Why: a push server reads little from its clients (subscriptions, acknowledgements), but one client writing as
 * fast as its socket accepts makes the server parse and dispatch every message on the event loop that also
 * writes everyone's pushes. A token bucket per session bounds what it may send on average (the rate) and at
 * once (the burst); past it the session is closed with 1008 (policy violation) and counted.
 */

/** Per-session inbound limits: a token bucket for messages and one for bytes. */
export interface InboundLimitOptions {
  /** Messages per second a session may send on average. Default 100. */
  messagesPerSecond: number;
  /** Messages a session may send at once (the bucket size). Default 200. */
  messageBurst: number;
  /** Payload bytes per second a session may send on average. Default 1 MiB. */
  bytesPerSecond: number;
  /** Payload bytes a session may send at once; at least the transport's `maxPayload`. Default 2 MiB. */
  byteBurst: number;
}

/**
 * The defaults: far above what an interactive client sends (a cursor at 60 events/s, typing, acknowledgements
 * of every push of a busy feed) and far below a flood. The burst is twice the rate, so a client that reconnects
 * and sends what it queued while offline passes.
 */
export const DEFAULT_INBOUND_LIMIT: Readonly<InboundLimitOptions> = Object.freeze({
  messagesPerSecond: 100,
  messageBurst: 200,
  bytesPerSecond: 1024 * 1024,
  byteBurst: 2 * 1024 * 1024,
});

/** The close code and reason of a session closed for passing its inbound limit. */
export const INBOUND_LIMIT_CLOSE_CODE = 1008;
export const INBOUND_LIMIT_CLOSE_REASON = 'inbound limit';

/**
 * One session's token buckets. Both start full and refill continuously at their rate up to their burst;
 * a message takes one message token and its length in byte tokens, or is refused when either is short.
 * Four numbers and no timer: a transport makes one when a session first sends something.
 */
export class InboundLimiter {
  readonly limits: Readonly<InboundLimitOptions>;
  #messages: number;
  #bytes: number;
  #at: number;

  constructor(limits: Readonly<InboundLimitOptions>, now: number = performance.now()) {
    this.limits = limits;
    this.#messages = limits.messageBurst;
    this.#bytes = limits.byteBurst;
    this.#at = now;
  }

  /** Takes the tokens of one message of `bytes` bytes; false (taking nothing) when the session is past its limit. */
  take(bytes: number, now: number = performance.now()): boolean {
    const limits = this.limits;
    const elapsed = now - this.#at;
    if (elapsed > 0) {
      this.#at = now;
      this.#messages = Math.min(
        limits.messageBurst,
        this.#messages + (elapsed * limits.messagesPerSecond) / 1000,
      );
      this.#bytes = Math.min(limits.byteBurst, this.#bytes + (elapsed * limits.bytesPerSecond) / 1000);
    }
    if (this.#messages < 1 || this.#bytes < bytes) return false;
    this.#messages -= 1;
    this.#bytes -= bytes;
    return true;
  }
}
