// The registry
export { SessionRegistry } from './registry.js';
export type { ChannelMap, PublishOptions, SessionRef } from './registry.js';
export type { RegistryEvents } from './events.js';
export type { RegistryStats } from './stats.js';

// Sessions and messages
export { BaseSession } from './session.js';
export type { DropReason, SendResult, Session, SessionInit, SessionState } from './session.js';
export { Message, encode } from './message.js';
export type { Payload } from './message.js';

// Options
export { DEFAULT_BACKPRESSURE, DEFAULT_HEARTBEAT, DEFAULT_TRANSPORT } from './options.js';
export type {
  BackpressureOptions,
  HeartbeatOptions,
  RegistryOptions,
  ResolvedRegistryOptions,
  TransportOptions,
} from './options.js';

// For transport authors
export { fanoutLoop } from './transport.js';
export type { Transport, TransportHost } from './transport.js';
export { HttpError } from './upgrade.js';
export type { Authenticate, AuthResult, ChannelResolver, UpgradeRequest } from './upgrade.js';
export { compileRoute, compileRoutes } from './route.js';
export type { RouteMatcher, RouteParams } from './route.js';

// Brokers
export type { Broker, BrokerContext } from './brokers/broker.js';
