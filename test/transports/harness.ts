import type { HeartbeatOptions, RegistryOptions, SessionRegistry } from '../../src/index.js';

/**
 * Where a transport cannot behave like the others, it says so here, by name; the suite then checks the
 * documented behaviour instead of the common one. A name a transport does not list must hold as in the suite.
 */
export const DIFFERENCES = {
  /**
   * A peer that breaks an inbound limit (oversized message, invalid UTF-8 in a text message) is disconnected
   * without a close frame, so the peer sees 1006. The registry's `close` event still reports 1009 / 1007.
   */
  'protocol-error-without-close-frame':
    'the peer sees 1006 instead of 1009/1007; the registry reports 1009/1007',
  /**
   * The heartbeat is coarser than asked: rounded up to whole multiples of the library's timer tick. The suite
   * waits for the transport's own bound (`heartbeat.bound`).
   */
  'heartbeat-rounded': 'a silent peer is removed within the rounded bound, not within interval + timeout',
  /**
   * The library queues small messages per socket (uWS pub/sub: up to 32 messages under 16 KiB, or until the end
   * of the event-loop turn) before they show in the socket's buffered amount, so a session can be seen past the
   * backpressure limit by that batch before the policy acts. Accounting stays exact.
   */
  'backpressure-batched':
    'the buffer may pass the limit by up to 32 queued small messages before the policy acts',
  /**
   * The socket library checks `Sec-WebSocket-Key` itself, before the transport sees the request: a missing or
   * malformed key gets the connection closed without an HTTP answer, and nothing is counted.
   */
  'handshake-key-closed-unanswered':
    'a missing or malformed Sec-WebSocket-Key closes the connection without an answer (not counted)',
} as const;

export type DifferenceName = keyof typeof DIFFERENCES;

export interface StartOptions {
  /** Options for the transport factory (the server/app option is the harness's own). */
  transport?: Record<string, unknown>;
  registry?: RegistryOptions;
}

export interface Started<TData = unknown> {
  /** `ws://127.0.0.1:<port>` (no path). */
  url: string;
  registry: SessionRegistry<TData>;
  /** Closes the registry, then the server/listen socket. Idempotent. */
  close(): Promise<void>;
}

/** One transport, as the conformance suite drives it. */
export interface TransportUnderTest {
  /** Also the argument the child-process script takes to pick this harness. */
  name: string;
  /** A fresh registry with this transport on a fresh server on 127.0.0.1, port 0. Throws on bad options. */
  start<TData = unknown>(options?: StartOptions): Promise<Started<TData>>;
  /** The short heartbeat the suite configures, and the longest a silent peer may survive it (ms). */
  heartbeat: { options: HeartbeatOptions; bound: number };
  /** The documented differences of this transport, by name, each with its reason. */
  differences: Partial<Record<DifferenceName, string>>;
}

/** Wraps an async dispose so that later calls share the first one. */
export function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | null = null;
  return () => (done ??= fn());
}
