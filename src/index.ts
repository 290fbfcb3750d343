// The published declarations use Node's types (Buffer, http): consumers get them without `types: ["node"]`.
/// <reference types="node" preserve="true" />
// The registry
export { SessionRegistry } from './registry.js';
export type { ChannelMap, PublishOptions, SessionRef, SubscribeOptions } from './registry.js';
export type { RegistryEvents } from './events.js';
export type { RegistryStats } from './stats.js';

// Sessions and messages
export { BaseSession } from './session.js';
export type { DropReason, SendResult, Session, SessionHost, SessionInit, SessionState } from './session.js';
export { Message, MessageBatch, encode } from './message.js';
export type { Payload } from './message.js';

// Options
export { DEFAULT_BACKPRESSURE, DEFAULT_HEARTBEAT, DEFAULT_TRANSPORT } from './options.js';
export { DEFAULT_INBOUND_LIMIT } from './inbound.js';
export type { InboundLimitOptions } from './inbound.js';
export type {
  BackpressureOptions,
  HeartbeatOptions,
  RegistryOptions,
  ResolvedRegistryOptions,
  ResolvedTransportOptions,
  TransportOptions,
} from './options.js';

// Authentication
export { HttpError } from './upgrade.js';
export type { Authenticate, AuthResult, ChannelResolver, UpgradeRequest } from './upgrade.js';
export type { OriginPolicy } from './door.js';

// The transport kit: what every transport, ours or a third party's, is built from
export { InboundLimiter, INBOUND_LIMIT_CLOSE_CODE } from './inbound.js';
export { attachTransport } from './registry.js';
export { fanoutBatchLoop, fanoutLoop } from './transport.js';
export type { Transport, TransportHost } from './transport.js';
export { UpgradeGate } from './gate.js';
export type { RawUpgrade, UpgradeOutcome } from './gate.js';
export { checkHandshake, defaultReason } from './upgrade.js';
export type { Refusal } from './upgrade.js';
export {
  DEFAULT_COALESCE_WINDOW,
  MAX_COALESCE_WINDOW,
  resolveCoalesceWindow,
  resolveTransportOptions,
} from './options.js';
export { compileRoute, compileRoutes } from './route.js';
export type { RouteMatcher, RouteParams } from './route.js';

// Streams: positions, history, recovery (docs/streams.md)
export { memoryHistory, newEpoch, DEFAULT_HISTORY } from './streams/history.js';
export type {
  History,
  HistoryContext,
  HistoryEntry,
  HistoryRead,
  MemoryHistoryOptions,
} from './streams/history.js';
export type { StreamMatcher, StreamOptions } from './streams/options.js';
export type { StreamStats } from './streams/layer.js';
export {
  FRAME_MARK,
  WIRE_VERSION,
  dataFrame,
  dataHeader,
  formatSince,
  parseSince,
  readDataHeader,
} from './streams/wire.js';
export type { DataHeader, StreamPosition, UnrecoverableReason } from './streams/wire.js';

// For broker authors
export { UnconfirmedPublishError } from './broker.js';
export type { Broker, BrokerBacklog, BrokerContext } from './broker.js';

// Option validation, for transport and broker authors (errors name the option)
export {
  assertCloseCode,
  assertFunction,
  assertInteger,
  assertKnownKeys,
  assertObject,
  describe,
} from './assert.js';
