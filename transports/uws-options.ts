import type { HeartbeatOptions } from '../src/index.js';

/**
 * uWebSockets.js has no ping timer of its own to configure: it has `idleTimeout` (seconds without *received*
 * data) and `sendPingsAutomatically` (ping once the socket has been idle for `idleTimeout - margin`, close it
 * `margin` later; margin is 4, 8 or 16 s). Its timers tick every 4 s, `idleTimeout` must be 0 or at least 8
 * (a smaller value makes the native code call `std::terminate()`, killing the process) and it cannot exceed
 * 956 s (239 ticks of 4 s).
 *
 * The shared option says: a silent peer is gone within `interval + timeout`. The nearest uWS can do is
 * `idleTimeout = interval + timeout`, rounded up to whole seconds, then up to a multiple of 4, at least 8.
 */
export const UWS_MIN_IDLE_TIMEOUT = 8;
export const UWS_MAX_IDLE_TIMEOUT = 956;

export interface UwsHeartbeat {
  idleTimeout: number;
  sendPingsAutomatically: boolean;
}

export function uwsHeartbeat(heartbeat: Readonly<HeartbeatOptions> | false): UwsHeartbeat {
  if (heartbeat === false) return { idleTimeout: 0, sendPingsAutomatically: false };
  const seconds = Math.ceil((heartbeat.interval + heartbeat.timeout) / 1000);
  const idleTimeout = Math.max(UWS_MIN_IDLE_TIMEOUT, Math.ceil(seconds / 4) * 4);
  if (idleTimeout > UWS_MAX_IDLE_TIMEOUT) {
    throw new RangeError(
      `The "heartbeat" option is too long for uWebSockets.js: interval + timeout must be at most ` +
        `${UWS_MAX_IDLE_TIMEOUT * 1000} ms; got ${heartbeat.interval + heartbeat.timeout}`,
    );
  }
  return { idleTimeout, sendPingsAutomatically: true };
}

/** The longest a silent peer may stay before uWS closes it: idleTimeout plus one tick of its 4 s timer. */
export function uwsHeartbeatBound(heartbeat: Readonly<HeartbeatOptions>): number {
  return (uwsHeartbeat(heartbeat).idleTimeout + 4) * 1000;
}

/**
 * uWS closes a connection that breaks an inbound limit without a close frame (the peer sees 1006) and reports
 * 1006 with one of these texts to the close handler. The registry reports the code the limit stands for, as
 * the ws transport does.
 */
const PROTOCOL_CLOSE: Readonly<Record<string, number>> = {
  'Received too big message': 1009,
  'Received invalid UTF-8': 1007,
};

export function uwsCloseCode(code: number, reason: string): number {
  if (code !== 1006) return code;
  return PROTOCOL_CLOSE[reason] ?? code;
}

const MAPPED = /^(?:0000:){5}ffff:([0-9a-f]{4}):([0-9a-f]{4})$/i;

/** uWS prints IPv4 peers of a dual-stack listener as full IPv4-mapped IPv6; this gives them as IPv4. */
export function uwsRemoteAddress(text: string): string {
  const m = MAPPED.exec(text);
  if (m === null) return text;
  const hi = parseInt(m[1] as string, 16);
  const lo = parseInt(m[2] as string, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
