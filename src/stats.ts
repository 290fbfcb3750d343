import type { BrokerBacklog } from './broker.js';
import type { DropReason } from './session.js';
import type { StreamStats } from './streams/layer.js';

/** What `registry.stats()` returns. Counters run from construction; `sessions` and `channels` are current. */
export interface RegistryStats {
  /** Open sessions now. */
  sessions: number;
  /** Channels with at least one session now. */
  channels: number;
  /** Sessions ever opened. */
  opened: number;
  /** `publish` calls. */
  published: number;
  /** Messages handed to a session's socket (one per recipient). */
  delivered: number;
  /** Payload bytes of those messages. */
  bytesDelivered: number;
  /** Messages not delivered to a session, all reasons. */
  dropped: number;
  droppedBy: Record<DropReason, number>;
  /** Sessions closed by the `close` backpressure policy. */
  closedForBackpressure: number;
  /** Sessions closed with 1008 for passing their inbound limit (`inboundLimit` transport option). */
  inboundLimited: number;
  /** `volatile` messages not sent to a session because it was behind (not drops: never a close). */
  skipped: number;
  /** Keyed messages held for a session that was behind and replaced by a newer one with the same key. */
  conflated: number;
  /** Keyed messages held now for sessions that are behind, written when they catch up. */
  held: number;
  /**
   * Publishes held now for busy channels (`coalesceWindow`), fanned out within the window; counted in
   * `delivered`/`dropped` then.
   */
  coalescing: number;
  /** Upgrades refused before the 101. */
  rejected: number;
  /** Failures reported through the `error` event. */
  errors: number;
  /**
   * Cross-node traffic (all 0 without a broker). Each publish that goes to the broker ends in exactly one of
   * `published`, `failed` and `unconfirmed`; until then it is `pending`.
   */
  broker: {
    /** Publishes the broker confirmed within its `timeout`. */
    published: number;
    /** Publishes known not to have gone out (not connected in time, over the pending bound, refused). */
    failed: number;
    /**
     * Publishes handed to the connection but not confirmed within the broker's `timeout` (a hung or dropped
     * connection): they may reach the other nodes late, or never.
     */
    unconfirmed: number;
    /** Publishes waiting for the broker now: not yet confirmed, failed or unconfirmed, or handed to a hung connection. */
    pending: number;
    /** The bytes those pending publishes hold. */
    pendingBytes: number;
    /** Copies of publishes received from other nodes (one per channel the node is subscribed to). */
    received: number;
    /** Of those, the ones that arrived while the registry was closing and were not delivered. */
    discarded: number;
    /**
     * Of those, second copies of a publish that already arrived (a broker client that sent it again after a
     * reconnect, its first reply lost): not delivered again.
     */
    duplicates: number;
    /** Messages on a broker channel that were not valid publishes: ignored and reported through `error`. */
    malformed: number;
  };
  /** Stream channels (present when the `streams` option is set). */
  streams?: StreamStats;
}

/** @internal plain mutable counters; numbers in fields keep the hot path free of allocation. */
export class RegistryCounters {
  opened = 0;
  published = 0;
  delivered = 0;
  bytesDelivered = 0;
  droppedBackpressure = 0;
  droppedClosed = 0;
  droppedError = 0;
  closedForBackpressure = 0;
  inboundLimited = 0;
  skipped = 0;
  conflated = 0;
  held = 0;
  rejected = 0;
  errors = 0;
  brokerPublished = 0;
  brokerFailed = 0;
  brokerUnconfirmed = 0;
  brokerReceived = 0;
  brokerDiscarded = 0;
  brokerDuplicates = 0;
  brokerMalformed = 0;

  drop(reason: DropReason): void {
    if (reason === 'backpressure') this.droppedBackpressure++;
    else if (reason === 'closed') this.droppedClosed++;
    else this.droppedError++;
  }

  snapshot(sessions: number, channels: number, backlog?: BrokerBacklog): RegistryStats {
    return {
      sessions,
      channels,
      opened: this.opened,
      published: this.published,
      delivered: this.delivered,
      bytesDelivered: this.bytesDelivered,
      dropped: this.droppedBackpressure + this.droppedClosed + this.droppedError,
      droppedBy: {
        backpressure: this.droppedBackpressure,
        closed: this.droppedClosed,
        error: this.droppedError,
      },
      closedForBackpressure: this.closedForBackpressure,
      inboundLimited: this.inboundLimited,
      skipped: this.skipped,
      conflated: this.conflated,
      held: this.held,
      coalescing: 0,
      rejected: this.rejected,
      errors: this.errors,
      broker: {
        published: this.brokerPublished,
        failed: this.brokerFailed,
        unconfirmed: this.brokerUnconfirmed,
        pending: backlog?.messages ?? 0,
        pendingBytes: backlog?.bytes ?? 0,
        received: this.brokerReceived,
        discarded: this.brokerDiscarded,
        duplicates: this.brokerDuplicates,
        malformed: this.brokerMalformed,
      },
    };
  }
}
