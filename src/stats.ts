import type { DropReason } from './session.js';

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
  /** Upgrades refused before the 101. */
  rejected: number;
  /** Failures reported through the `error` event. */
  errors: number;
  broker: {
    /** Publishes the broker accepted. */
    published: number;
    /** Publishes that could not reach the broker. */
    failed: number;
    /** Publishes received from other nodes. */
    received: number;
  };
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
  rejected = 0;
  errors = 0;
  brokerPublished = 0;
  brokerFailed = 0;
  brokerReceived = 0;

  drop(reason: DropReason): void {
    if (reason === 'backpressure') this.droppedBackpressure++;
    else if (reason === 'closed') this.droppedClosed++;
    else this.droppedError++;
  }

  snapshot(sessions: number, channels: number): RegistryStats {
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
      rejected: this.rejected,
      errors: this.errors,
      broker: { published: this.brokerPublished, failed: this.brokerFailed, received: this.brokerReceived },
    };
  }
}
