import { Arrivals } from './arrivals.js';
import { UnconfirmedPublishError, type Broker, type BrokerBacklog, type BrokerContext } from './broker.js';
import type { ChannelHold } from './channel-hold.js';
import type { ChannelIndex } from './channel-index.js';
import type { Message } from './message.js';
import type { BaseSession } from './session.js';
import type { RegistryCounters } from './stats.js';

/** What the link needs from its registry. */
export interface BrokerLinkHost {
  readonly nodeId: string;
  readonly index: ChannelIndex;
  /** The registry's hold of busy channels: a copy for every session of a channel goes through it. */
  readonly hold: ChannelHold;
  readonly counters: RegistryCounters;
  readonly closing: boolean;
  error(err: unknown): void;
}

/**
 * How many multi-channel publishes a node remembers, and for how long, to deliver each at most once per
 * session. The copies of one publish (one per channel) are written back to back by the publishing node and
 * relayed in that order on this node's one subscriber connection, so a later copy trails the first only by
 * what the broker sent in between: far less than 10,000 other multi-channel publishes or a minute.
 */
export const REMEMBERED_PUBLISHES = 10_000;
export const REMEMBERED_MS = 60_000;

/** A multi-channel publish of which at least one copy was delivered. */
interface Seen {
  /** When its first copy arrived (performance.now()). */
  readonly at: number;
  /** The channel index version then: a session that joined or left a channel since is left out. */
  readonly version: number;
  /** The channels whose copy was delivered. */
  readonly via: string[];
}

/**
 * @internal The registry's side of a broker: starts it, publishes to it, keeps its subscriptions equal to the
 * channels this node has sessions in, and hands what other nodes published to the local transports. Every
 * failure is counted and reported through `error`, never thrown into `publish` or into the broker's client.
 */
export class BrokerLink {
  readonly broker: Broker;
  readonly #host: BrokerLinkHost;
  /** Multi-channel publishes by id, oldest first (Map keeps insertion order). */
  readonly #seen = new Map<string, Seen>();
  /** Single-channel publishes that arrived, per publisher: a second copy (a broker client's resend) is dropped. */
  readonly #arrivals = new Arrivals();

  constructor(broker: Broker, host: BrokerLinkHost) {
    this.broker = broker;
    this.#host = host;
    const context: BrokerContext = {
      nodeId: host.nodeId,
      deliver: (id, channels, via, message) => this.#deliver(id, channels, via, message),
      malformed: (err) => {
        host.counters.brokerMalformed++;
        host.error(err);
      },
      error: (err) => host.error(err),
      channels: () => host.index.keys(),
    };
    Promise.resolve()
      .then(() => broker.start(context))
      .catch((err: unknown) => host.error(err));
  }

  publish(channels: readonly string[], message: Message): void {
    const counters = this.#host.counters;
    let pending: Promise<void>;
    try {
      pending = this.broker.publish(channels, message);
    } catch (err) {
      counters.brokerFailed++;
      this.#host.error(err);
      return;
    }
    pending.then(
      () => void counters.brokerPublished++,
      (err: unknown) => {
        if (err instanceof UnconfirmedPublishError) counters.brokerUnconfirmed++;
        else counters.brokerFailed++;
        this.#host.error(err);
      },
    );
  }

  /** What waits for the broker now, if the broker tells. */
  backlog(): BrokerBacklog | undefined {
    try {
      return this.broker.backlog?.();
    } catch {
      return undefined;
    }
  }

  /** The first local session joined `channel` (on) or the last one left it (off). */
  interest(channel: string, on: boolean): void {
    try {
      const p = on ? this.broker.subscribe(channel) : this.broker.unsubscribe(channel);
      p.catch((err: unknown) => this.#host.error(err));
    } catch (err) {
      this.#host.error(err);
    }
  }

  close(): Promise<void> {
    return this.broker.close();
  }

  /** One copy of a publish from another node, carried by the subscription of `via`. Never throws. */
  #deliver(id: string, channels: readonly string[], via: string, message: Message): void {
    const host = this.#host;
    host.counters.brokerReceived++;
    if (host.closing) {
      host.counters.brokerDiscarded++;
      return;
    }
    try {
      if (channels.length === 1) {
        if (!this.#arrivals.first(id)) {
          host.counters.brokerDuplicates++;
          return;
        }
        return this.#fanout(via, message, null);
      }
      const seen = this.#seen.get(id);
      if (seen === undefined) {
        // The first copy to arrive, whichever channel carried it: every session of that channel gets it.
        this.#remember(id, via);
        return this.#fanout(via, message, null);
      }
      if (seen.via.includes(via)) {
        host.counters.brokerDuplicates++;
        return;
      }
      this.#fanout(via, message, seen);
      // Kept once every copy arrived too (until the bounds below forget it): a copy sent again is a repeat.
      seen.via.push(via);
    } catch (err) {
      host.error(err);
    }
  }

  /**
   * Delivers to the sessions of `via`. After an earlier copy (`seen`), a session already reached through one of
   * the channels delivered then is left out; so is a session whose channels changed since the first copy:
   * whether it was reached then is not known, and never twice comes first.
   */
  #fanout(via: string, message: Message, seen: Seen | null): void {
    const index = this.#host.index;
    const group = index.group(via);
    if (group === undefined) return;
    if (seen === null) return this.#host.hold.publish(group, via, message);
    this.#host.hold.release();
    for (const [transport, set] of group) {
      let except: Set<BaseSession<never>> | null = null;
      for (const s of set) {
        if (index.movedSince(s, seen.version) || s._channels.some((c) => seen.via.includes(c)))
          (except ??= new Set()).add(s);
      }
      try {
        transport.fanout(message, set, except, except === null ? via : null);
      } catch (err) {
        this.#host.error(err);
      }
    }
  }

  #remember(id: string, via: string): void {
    const seen = this.#seen;
    const now = performance.now();
    // Oldest first: forget what is past either bound.
    for (const [key, entry] of seen) {
      if (seen.size < REMEMBERED_PUBLISHES && now - entry.at < REMEMBERED_MS) break;
      seen.delete(key);
    }
    seen.set(id, { at: now, version: this.#host.index.version, via: [via] });
  }
}
