// Types for app.js (plain JavaScript, so that `npm start` runs it with node alone), for the TypeScript tests.
import type { Server } from 'node:http';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { SessionRegistry } from '../../src/index.js';
import type { WsTransport } from '../../transports/ws.js';

export type Level = 'info' | 'warning' | 'critical';

/** What every session of a channel receives, as JSON text. */
export interface Alarm {
  id: string;
  channel: string;
  level: Level;
  text: string;
  /** ISO 8601. */
  time: string;
  source: 'simulated' | 'post';
}

export interface StartOptions {
  /** 0 picks a free port. Default 8080. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Milliseconds between simulated alarms; 0 turns them off. Default 1000. */
  interval?: number;
  /** Receives one line per notable event. Default: none. */
  log?: (line: string) => void;
  /** An ioredis client: the alarm history lives in Redis (survives a restart). Default: in memory. */
  redis?: Redis;
  /** Key prefix in Redis. Default `alarm-center:`. */
  prefix?: string;
}

export interface AlarmCenter {
  /** `http://host:port/`, with the real port. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly server: Server;
  readonly registry: SessionRegistry<undefined, Record<string, Alarm>>;
  readonly transport: WsTransport;
  /** Where the alarm history lives. */
  readonly history: 'memory' | 'redis';
  /** The prom-client Registry served at `/metrics` (fanout's metrics: `fanout/metrics/prometheus`). */
  readonly metrics: Registry;
  /** Stops the feed, closes every session with 1001, then the http server. Idempotent. */
  close(): Promise<void>;
}

export const CHANNELS: readonly string[];
export const DEFAULT_CHANNEL: string;
export const BODY_LIMIT: number;
export const TEXT_LIMIT: number;
export const HISTORY: { readonly size: number; readonly ttl: number };

/** Starts the demo; resolves once it listens. */
export function start(options?: StartOptions): Promise<AlarmCenter>;
