import type { Message } from './message.js';
import type { ResolvedRegistryOptions } from './options.js';
import type { BaseSession, DropReason } from './session.js';
import type { RegistryCounters } from './stats.js';
import type { Transport, TransportHost } from './transport.js';
import type { UpgradeRequest } from './upgrade.js';

/** What a transport host needs from its registry. */
export interface HostDeps<TData> {
  readonly options: ResolvedRegistryOptions;
  readonly counters: RegistryCounters;
  readonly closing: boolean;
  added(session: BaseSession<TData>, channels: readonly string[], request?: UpgradeRequest): void;
  removed(session: BaseSession<TData>, code: number, reason: string): void;
  named(session: BaseSession<TData>): void;
  sessions(host: TransportHost<TData>): IterableIterator<BaseSession<TData>>;
  message(session: BaseSession<TData>, data: string | Buffer, isBinary: boolean): void;
  dropped(session: BaseSession<TData>, message: Message, reason: DropReason): void;
  release(): void;
  error(err: unknown, session?: BaseSession<TData>): void;
  rejected(request: UpgradeRequest | null, status: number, reason: string): void;
}

/** @internal What the upgrade gate of a transport hears about its sessions (its caps count them). */
export interface HostTaps<TData> {
  opened(session: BaseSession<TData>): void;
  closed(session: BaseSession<TData>): void;
}

const taps = new WeakMap<object, { current: HostTaps<never> | null }>();

/** @internal Lets the gate of `host`'s transport hear opens and closes; false for a host not made here. */
export function tapHost<TData>(host: TransportHost<TData>, listener: HostTaps<TData>): boolean {
  const slot = taps.get(host);
  if (slot === undefined) return false;
  slot.current = listener as HostTaps<never>;
  return true;
}

/** @internal The registry side of one transport: every callback the transport and its sessions make. */
export function createHost<TData>(transport: Transport, deps: HostDeps<TData>): TransportHost<TData> {
  const counters = deps.counters;
  const slot: { current: HostTaps<TData> | null } = { current: null };
  const host: TransportHost<TData> = {
    transport,
    options: deps.options,
    get closing() {
      return deps.closing;
    },
    open: (session, channels, request) => {
      slot.current?.opened(session);
      deps.added(session, channels, request);
    },
    closed: (session, code, reason) => {
      slot.current?.closed(session);
      // Held keyed messages of a session that is gone will never be written.
      session._discardHeld('closed');
      deps.removed(session, code, reason);
    },
    message: (session, data, isBinary) => deps.message(session, data, isBinary),
    named: (session) => deps.named(session),
    sessions: () => deps.sessions(host),
    delivered(_session, message) {
      counters.delivered++;
      counters.bytesDelivered += message.byteLength;
    },
    dropped: (session, message, reason) => deps.dropped(session, message, reason),
    release: () => deps.release(),
    deliveredMany(message, count) {
      counters.delivered += count;
      counters.bytesDelivered += count * message.byteLength;
    },
    retracted: (session, message, reason) => {
      counters.delivered--;
      counters.bytesDelivered -= message.byteLength;
      deps.dropped(session, message, reason);
    },
    skipped() {
      counters.skipped++;
    },
    conflated() {
      counters.conflated++;
    },
    holding(_session, change) {
      counters.held += change;
    },
    backpressureClosed() {
      counters.closedForBackpressure++;
    },
    inboundLimited() {
      counters.inboundLimited++;
    },
    error: (err, session) => deps.error(err, session),
    rejected: (request, status, reason) => {
      counters.rejected++;
      deps.rejected(request, status, reason);
    },
  };
  taps.set(host, slot as { current: HostTaps<never> | null });
  return host;
}
