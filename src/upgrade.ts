import type { RouteMatcher, RouteParams } from './route.js';

/** The upgrade request as every transport presents it to `authenticate` and `channels`. */
export interface UpgradeRequest {
  /** The request target, path and query (`/alarms/zone-3?token=abc`). */
  readonly url: string;
  /** The path alone. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** Parameters matched from the path pattern. */
  readonly params: Readonly<RouteParams>;
  readonly remoteAddress: string;
}

/** What `authenticate` returns to accept a connection. */
export interface AuthResult<TData> {
  /** Becomes `session.data`. */
  data?: TData;
  /** The session's channels; overrides the `channels` option and the path default. */
  channels?: readonly string[];
}

/**
 * Decides an upgrade before the 101. Return an AuthResult (or `true`/`undefined`) to accept, `false`/`null`
 * to refuse with 401, or throw an {@link HttpError} to refuse with its status. Any other throw or rejection
 * becomes a 500 and an `error` event. May be async.
 */
export type Authenticate<TData> = (
  request: UpgradeRequest,
) => AuthResult<TData> | boolean | null | undefined | Promise<AuthResult<TData> | boolean | null | undefined>;

/** Maps a request to its channels (the `channels` option). */
export type ChannelResolver = (request: UpgradeRequest) => readonly string[];

/** Thrown from `authenticate` to refuse an upgrade with this HTTP status (400-599). */
export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message?: string) {
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`The "status" argument must be an HTTP error status (400-599); got ${status}`);
    }
    super(message ?? defaultReason(status));
    this.name = 'HttpError';
    this.status = status;
  }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The reason phrase of an HTTP error status (`Error` for one without a phrase here). */
export function defaultReason(status: number): string {
  return REASONS[status] ?? 'Error';
}

/** A refusal before the 101: the status, a short text for the body, and headers the answer must carry. */
export interface Refusal {
  readonly status: number;
  readonly reason: string;
  readonly headers: Readonly<Record<string, string>>;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * The checks RFC 6455 (4.2.1) asks of a server before it answers 101, on a request that arrived as an upgrade:
 * a GET (405 with `Allow: GET`), `Upgrade: websocket` and a valid `Sec-WebSocket-Key` (400), version 13 (426
 * with `Sec-WebSocket-Version: 13`, so the client can retry with a version the server speaks). `headers` names
 * are lower case. Returns null when the request passes.
 */
export function checkHandshake(method: string, headers: Readonly<Record<string, string>>): Refusal | null {
  if (method.toUpperCase() !== 'GET') return refusal(405, 'Method Not Allowed', { Allow: 'GET' });
  if ((headers['upgrade'] ?? '').toLowerCase() !== 'websocket') {
    return refusal(400, 'Invalid Upgrade header');
  }
  if (!KEY.test((headers['sec-websocket-key'] ?? '').trim())) {
    return refusal(400, 'Missing or invalid Sec-WebSocket-Key header');
  }
  if ((headers['sec-websocket-version'] ?? '').trim() !== '13') {
    return refusal(426, 'Unsupported Sec-WebSocket-Version', { 'Sec-WebSocket-Version': '13' });
  }
  return null;
}

export function refusal(status: number, reason?: string, headers?: Record<string, string>): Refusal {
  return { status, reason: reason ?? defaultReason(status), headers: headers ?? NO_HEADERS };
}

/** Builds the normalized request; returns null when the path matches no route. */
export function toUpgradeRequest(
  url: string,
  headers: Readonly<Record<string, string>>,
  remoteAddress: string,
  match: RouteMatcher,
): UpgradeRequest | null {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const params = match(path);
  if (params === null) return null;
  return {
    url,
    path,
    query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)),
    headers,
    params,
    remoteAddress,
  };
}

/** What the user's hooks decided: accept with data and channels, or refuse (`error` when a hook failed). */
export type HookDecision<TData> =
  | { ok: true; data: TData; channels: readonly string[] }
  | { ok: false; status: number; reason: string; error?: unknown };

/**
 * Runs the user's hooks for one upgrade and says what to do. Never throws and never rejects: a throwing hook
 * becomes a refusal, so a hook can not crash the server or leave an unhandled rejection.
 */
export async function runHooks<TData>(
  request: UpgradeRequest,
  authenticate: Authenticate<TData> | undefined,
  channels: ChannelResolver | undefined,
): Promise<HookDecision<TData>> {
  let result: AuthResult<TData> | boolean | null | undefined;
  try {
    result = authenticate === undefined ? undefined : await authenticate(request);
  } catch (err) {
    if (err instanceof HttpError) return { ok: false, status: err.status, reason: err.message };
    return { ok: false, status: 500, reason: defaultReason(500), error: err };
  }
  if (result === false || result === null) return { ok: false, status: 401, reason: defaultReason(401) };
  const auth = typeof result === 'object' ? result : {};
  let list: readonly string[];
  try {
    list = auth.channels ?? channels?.(request) ?? defaultChannels(request);
  } catch (err) {
    return { ok: false, status: 500, reason: defaultReason(500), error: err };
  }
  if (!Array.isArray(list) || !list.every((c) => typeof c === 'string' && c.length > 0)) {
    const err = new TypeError('The channels of a session must be an array of non-empty strings');
    return { ok: false, status: 500, reason: defaultReason(500), error: err };
  }
  return { ok: true, data: auth.data as TData, channels: list };
}

/** `:channel` in the path names the channel; without it the path itself is the channel. */
function defaultChannels(request: UpgradeRequest): readonly string[] {
  const channel = request.params['channel'];
  return [channel ?? request.path];
}
