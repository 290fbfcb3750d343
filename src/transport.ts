import { MessageBatch, type Message } from './message.js';
import type { BaseSession, SessionHost } from './session.js';

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
   * `null` when the set is a union built for a multi-channel publish. Must not throw: if it does, the registry
   * reports an `error` and the other transports still deliver.
   */
  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
    channel: string | null,
  ): void;
  /**
   * Delivers `messages`, in order, to every session in `sessions` (exactly the sessions of `channel` on this
   * transport), as `fanout` would one by one; a transport may visit each session once for all of them. The
   * registry calls it for the messages it held while the channel was busy (`coalesceWindow`). Must not throw.
   */
  fanoutMany?(messages: readonly Message[], sessions: ReadonlySet<BaseSession<never>>, channel: string): void;
  /**
   * How long, in ms, the registry may hold what is published to a busy channel of this transport's sessions
   * (one fanned out less than this ago), to fan it out at the end of the window as one batch. Absent or 0: the
   * registry never holds for this transport.
   */
  readonly coalesceWindow?: number;
  /** Called after the registry added `session` to `channel` (uWS: native topic subscribe). */
  subscribed?(session: BaseSession<never>, channel: string): void;
  /** Called after the registry removed `session` from `channel`, unless the session is closed. */
  unsubscribed?(session: BaseSession<never>, channel: string): void;
  /** Stops accepting connections and stops timers; the registry has closed the sessions already. */
  close(): Promise<void>;
}

/**
 * The registry side of a transport: every callback a transport or its sessions make. Obtained once from
 * `attachTransport(registry, transport)`.
 */
export interface TransportHost<TData = unknown> extends SessionHost<TData> {
  /** The transport this host was attached for. */
  readonly transport: Transport;
  /**
   * This transport's sessions in the registry (from `open` until `closed`), oldest first: a transport need not
   * keep a set of its own.
   */
  sessions(): IterableIterator<BaseSession<TData>>;
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

/**
 * The plain `fanoutMany`: each session takes the whole batch in one write when it can (`deliverBatch`), else
 * each message by `deliver`, isolated as in `fanoutLoop`.
 */
export function fanoutBatchLoop(
  messages: readonly Message[],
  sessions: ReadonlySet<BaseSession<never>>,
): void {
  const batch = new MessageBatch(messages);
  for (const session of sessions) {
    if (!session.deliverBatch(batch)) for (const message of messages) session.deliver(message);
  }
}
