import type { Message } from './message.js';
import type { BaseSession, DropReason } from './session.js';
import type { ResolvedRegistryOptions } from './options.js';
import type { UpgradeRequest } from './upgrade.js';

/**
 * What a transport implements so the registry can reach its sessions. The registry groups a channel's
 * sessions by transport and hands each transport only its own.
 */
export interface Transport {
  /** A short name (`ws`, `uws`); it is also every session's `transport`. */
  readonly name: string;
  /**
   * Delivers `message` to every session in `sessions` except those in `except`. `channel` is the channel
   * name when the set is exactly that channel's sessions of this transport (native topic publish may use it),
   * `null` when the set is a union built for a multi-channel publish. Must not throw.
   */
  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
    channel: string | null,
  ): void;
  /** Called after the registry added `session` to `channel` (uWS: native topic subscribe). */
  subscribed?(session: BaseSession<never>, channel: string): void;
  /** Called after the registry removed `session` from `channel`, unless the session is closed. */
  unsubscribed?(session: BaseSession<never>, channel: string): void;
  /** Stops accepting connections and stops timers; the registry has closed the sessions already. */
  close(): Promise<void>;
}

/**
 * The registry side of a transport: every callback a transport or its sessions make. Obtained once from
 * `registry.attach(transport)`.
 */
export interface TransportHost<TData = unknown> {
  /** The transport this host was attached for. */
  readonly transport: Transport;
  readonly options: ResolvedRegistryOptions;
  /** True once `registry.close()` started: transports refuse new connections (HTTP 503). */
  readonly closing: boolean;
  /** Registers a session in its channels, then emits `open`. */
  open(session: BaseSession<TData>, channels: readonly string[]): void;
  /** Removes a session from every channel, then emits `close` (exactly once per session). */
  closed(session: BaseSession<TData>, code: number, reason: string): void;
  /** An inbound message that passed the transport's limits. */
  message(session: BaseSession<TData>, data: string | Buffer, isBinary: boolean): void;
  delivered(session: BaseSession<TData>, message: Message): void;
  /** `count` deliveries of `message` at once (a native publish that reached that many sessions). */
  deliveredMany(message: Message, count: number): void;
  dropped(session: BaseSession<TData>, message: Message, reason: DropReason): void;
  /**
   * A message already counted as delivered that never left: its socket closed before the transport wrote it.
   * Moves it from the delivered count to the dropped count.
   */
  retracted(session: BaseSession<TData>, message: Message, reason: DropReason): void;
  /** Counts a session that the `close` backpressure policy is closing. */
  backpressureClosed(session: BaseSession<TData>): void;
  error(error: unknown, session?: BaseSession<TData>): void;
  /** An upgrade refused before the 101 (counted, `reject` event). */
  rejected(request: UpgradeRequest | null, status: number, reason: string): void;
}

/** The plain fan-out loop: one `deliver` per session, each isolated (deliver never throws). */
export function fanoutLoop(
  message: Message,
  sessions: ReadonlySet<BaseSession<never>>,
  except: ReadonlySet<BaseSession<never>> | null,
): void {
  if (except === null) {
    for (const session of sessions) session.deliver(message);
  } else {
    for (const session of sessions) if (!except.has(session)) session.deliver(message);
  }
}
