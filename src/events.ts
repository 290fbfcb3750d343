import type { Message } from './message.js';
import type { DropReason, Session } from './session.js';
import type { UpgradeRequest } from './upgrade.js';

/** The registry's events, as listener argument tuples (eventemitter3's typed form). */
export interface RegistryEvents<TData = unknown> {
  /** A session is registered in its channels. Once per session. */
  open: [session: Session<TData>];
  /** A session is gone; it has left every channel already. Exactly once per opened session. */
  close: [session: Session<TData>, code: number, reason: string];
  /** A failure that was isolated: a socket, a listener, a hook or the broker. Never thrown out of publish. */
  error: [error: Error, session: Session<TData> | undefined];
  /** An inbound message that passed the transport's limits: text as a string, binary as a Buffer. */
  message: [session: Session<TData>, data: string | Buffer, isBinary: boolean];
  subscribe: [session: Session<TData>, channel: string];
  unsubscribe: [session: Session<TData>, channel: string];
  /** A message that was not delivered to a session, and why. */
  drop: [session: Session<TData>, reason: DropReason, message: Message];
  /** An upgrade refused before the 101 (`request` is null when the path matched no route). */
  reject: [request: UpgradeRequest | null, status: number, reason: string];
}
