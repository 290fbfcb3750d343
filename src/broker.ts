import type { Message } from './message.js';

/**
 * What the registry gives a broker when it starts. The broker calls `deliver` for every publish from another
 * node (it filters out this node's own echoes by `nodeId`), `error` for every failure it isolates.
 */
export interface BrokerContext {
  /** This node's id: stamp it on what you publish, ignore deliveries that carry it. */
  readonly nodeId: string;
  /**
   * Hands one copy of a remote publish to the local sessions. `id` identifies the publish: the same on every
   * copy of it (one per channel), different for every other publish of any node, ever (for example the origin
   * node, a random number drawn at start and a sequence number). `channels` are all the channels of that
   * publish; `via` is the channel whose subscription carried this copy. Each local session receives the
   * publish at most once, from the first copy that reaches a channel it is in, whichever that is.
   */
  deliver(id: string, channels: readonly string[], via: string, message: Message): void;
  /**
   * Reports bytes received on a channel that are not a valid publish (counted in `stats().broker.malformed`
   * and emitted as the registry's `error` event).
   */
  malformed(error: unknown): void;
  /** Reports an isolated failure (emitted as the registry's `error` event). */
  error(error: unknown): void;
  /** The channels this node has local sessions in: what to resubscribe after a reconnect. */
  channels(): Iterable<string>;
}

/**
 * How a broker rejects a publish that may have gone out: it was handed to the connection, but the broker did
 * not confirm it in time (the connection hung or dropped). It may still reach the other nodes, late, or never.
 * Counted in `stats().broker.unconfirmed`; any other rejection means the publish is known not to have gone out
 * (`stats().broker.failed`).
 */
export class UnconfirmedPublishError extends Error {
  override readonly name = 'UnconfirmedPublishError';
}

/** What waits for the broker now: publishes not yet confirmed or failed, and the bytes they hold. */
export interface BrokerBacklog {
  readonly messages: number;
  readonly bytes: number;
}

/**
 * The contract every broker implements. Small on purpose: the registry decides when to subscribe (only while
 * it has local sessions in a channel) and what to publish; the broker only moves bytes between nodes.
 */
export interface Broker {
  start(context: BrokerContext): void | Promise<void>;
  /** Starts receiving publishes of `channel` from other nodes. */
  subscribe(channel: string): Promise<void>;
  /** Stops receiving publishes of `channel`. */
  unsubscribe(channel: string): Promise<void>;
  /**
   * Sends one publish to the other nodes: each channel's subscribers receive it once. Resolves when the broker
   * confirmed it; rejects with {@link UnconfirmedPublishError} when it may have gone out unconfirmed, with any
   * other error when it did not go out. Carry `message.key` and `message.volatile` with the payload, so that
   * the receiving nodes hand `deliver` a message with the same options and apply them to their slow sessions.
   */
  publish(channels: readonly string[], message: Message): Promise<void>;
  /** What waits for the broker now (in `stats().broker.pending`), if the broker keeps track. */
  backlog?(): BrokerBacklog;
  /** Releases what the broker created (not the user's own client). */
  close(): Promise<void>;
}
