import { assertFunction, assertInteger, describe } from './assert.js';
import type { UpgradeRequest } from './upgrade.js';

/**
 * Which browser origins may open a session, besides the server's own: exact origins
 * (`'https://app.example.com'`), wildcard subdomains (`'https://*.example.com'`, any depth, not the apex), `'*'`
 * for any, or a function that decides (it may read the request).
 */
export type OriginPolicy =
  string | readonly string[] | ((origin: string, request: UpgradeRequest) => boolean);

/** The door's options, as every transport takes them (see TransportOptions). */
export interface DoorOptions {
  origins?: OriginPolicy;
  maxSessions?: number;
  maxSessionsPerAddress?: number;
  addressHeader?: string;
  handshakeTimeout?: number;
}

export interface ResolvedDoorOptions {
  /** Decides a cross-origin `Origin` (same-origin requests and requests without `Origin` never reach it). */
  readonly allowOrigin: (origin: string, request: UpgradeRequest) => boolean;
  readonly maxSessions: number;
  readonly maxSessionsPerAddress: number;
  readonly addressHeader: string | undefined;
  readonly handshakeTimeout: number;
}

export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

const NONE = (): boolean => false;

/** Validates the door's options; errors name the option. */
export function resolveDoorOptions(options: Record<string, unknown>): ResolvedDoorOptions {
  const cap = (name: string): number =>
    options[name] === undefined ? Infinity : assertInteger(options[name], name, 1);
  const header = options['addressHeader'];
  if (header !== undefined && (typeof header !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(header))) {
    throw new TypeError(`The "addressHeader" option must be an HTTP header name; got ${describe(header)}`);
  }
  return Object.freeze({
    allowOrigin: compileOrigins(options['origins']),
    maxSessions: cap('maxSessions'),
    maxSessionsPerAddress: cap('maxSessionsPerAddress'),
    addressHeader: header === undefined ? undefined : header.toLowerCase(),
    handshakeTimeout:
      options['handshakeTimeout'] === undefined
        ? DEFAULT_HANDSHAKE_TIMEOUT
        : assertInteger(options['handshakeTimeout'], 'handshakeTimeout', 1, 2 ** 31 - 1),
  });
}

/**
 * True when `origin` (an `Origin` header) names the server the request was sent to: the same host and port as
 * the request's `Host` header. The scheme is not compared (behind a TLS-terminating proxy the server cannot
 * know it); `null` and anything unparsable never match.
 */
export function isSameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || host === '') return false;
  const url = parseOrigin(origin);
  if (url === null) return false;
  let h = host.trim().toLowerCase();
  const port = url.protocol === 'https:' || url.protocol === 'wss:' ? ':443' : ':80';
  if (h.endsWith(port)) h = h.slice(0, -port.length);
  return url.host === h;
}

function parseOrigin(origin: string): URL | null {
  try {
    const url = new URL(origin);
    return url.host === '' ? null : url;
  } catch {
    return null;
  }
}

const PATTERN = /^(https?|wss?):\/\/(\*\.)?([^/*?#@\s]+)$/i;

function compileOrigins(value: unknown): (origin: string, request: UpgradeRequest) => boolean {
  if (value === undefined) return NONE;
  if (typeof value === 'function') {
    assertFunction(value, 'origins');
    return value as (origin: string, request: UpgradeRequest) => boolean;
  }
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) {
    throw new TypeError(
      `The "origins" option must be an origin, an array of them or a function; got ${describe(value)}`,
    );
  }
  if (list.includes('*')) return () => true;
  const exact = new Set<string>();
  const wildcards: { scheme: string; suffix: string; port: string }[] = [];
  for (const entry of list) {
    const m = typeof entry === 'string' ? PATTERN.exec(entry) : null;
    const url = m === null ? null : parseOrigin(`${m[1]}://${m[3]}`);
    if (m === null || url === null || url.pathname !== '/' || url.search !== '' || url.username !== '') {
      throw new TypeError(
        `The "origins" option must list origins such as "https://app.example.com" or ` +
          `"https://*.example.com"; got ${describe(entry)}`,
      );
    }
    if (m[2] === undefined) exact.add(url.origin);
    else wildcards.push({ scheme: url.protocol, suffix: `.${url.hostname}`, port: url.port });
  }
  return (origin) => {
    const url = parseOrigin(origin);
    if (url === null) return false;
    if (exact.has(url.origin)) return true;
    for (const w of wildcards) {
      if (url.protocol === w.scheme && url.port === w.port && url.hostname.endsWith(w.suffix)) return true;
    }
    return false;
  };
}

/** The client's address: the last entry of the trusted proxy's header when one is set and present. */
export function clientAddress(
  headers: Readonly<Record<string, string>>,
  socketAddress: string,
  header: string | undefined,
): string {
  if (header === undefined) return socketAddress;
  const value = headers[header];
  if (value === undefined) return socketAddress;
  // The nearest proxy appends the address it saw; entries before it came from the client and can be forged.
  const last = value.slice(value.lastIndexOf(',') + 1).trim();
  return last === '' ? socketAddress : last;
}
