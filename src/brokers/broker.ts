import type { Message } from '../message.js';

/**
 * What the registry gives a broker when it starts. The broker calls `deliver` for every publish from another
 * node (it filters out this node's own echoes by `nodeId`), `error` for every failure it isolates.
 */
export interface BrokerContext {
  /** This node's id: stamp it on what you publish, ignore deliveries that carry it. */
  readonly nodeId: string;
  /**
   * Hands a remote publish to the local sessions. `channels` are all the channels of that publish, in the
   * publisher's order; `via` is the channel whose subscription carried it. A session in several of the
   * channels receives the message once: from the first of `channels` it belongs to.
   */
  deliver(channels: readonly string[], via: string, message: Message): void;
  /** Reports an isolated failure (emitted as the registry's `error` event). */
  error(error: unknown): void;
  /** The channels this node has local sessions in: what to resubscribe after a reconnect. */
  channels(): Iterable<string>;
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
  /** Sends one publish to the other nodes: each channel's subscribers receive it once. */
  publish(channels: readonly string[], message: Message): Promise<void>;
  /** Releases what the broker created (not the user's own client). */
  close(): Promise<void>;
}
