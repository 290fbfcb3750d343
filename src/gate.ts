import { clientAddress, isSameOrigin, type ResolvedDoorOptions } from './door.js';
import { tapHost } from './host.js';
import { Interned } from './interned.js';
import type { ResolvedTransportOptions } from './options.js';
import type { BaseSession } from './session.js';
import type { RouteMatcher } from './route.js';
import { compileRoutes } from './route.js';
import type { TransportHost } from './transport.js';
import type { Refusal, UpgradeRequest } from './upgrade.js';
import {
  checkHandshake,
  defaultReason,
  refusal,
  runHooks,
  toUpgradeRequest,
  type HookDecision,
} from './upgrade.js';

/** Addresses held at once for sharing, across every gate of the process. */
const ADDRESSES = new Interned<string>(4096);
const same = (s: string): string => s;

/**
 * What a transport copies from an upgrade request before anything asynchronous happens (uWS: the request
 * object is invalid after the upgrade handler returns).
 */
export interface RawUpgrade {
  /** The HTTP method (`GET`). */
  readonly method: string;
  /** The request target: path and query. */
  readonly url: string;
  /** Header names in lower case; repeated headers joined with `, `. */
  readonly headers: Readonly<Record<string, string>>;
  /** The peer's address as the socket reports it. */
  readonly remoteAddress: string;
}

/** The gate's answer: accept (the transport completes the upgrade) or refuse with an HTTP error. */
export type UpgradeOutcome<TData> =
  | {
      readonly ok: true;
      readonly request: UpgradeRequest;
      readonly data: TData;
      readonly channels: readonly string[];
    }
  | ({ readonly ok: false } & Refusal);

/**
 * The transport kit's upgrade decision, one per transport: everything between "an upgrade request arrived" and
 * "write the 101" that does not depend on the socket library. A transport copies the request into a
 * {@link RawUpgrade}, awaits {@link UpgradeGate.decide}, then either completes the handshake or writes the
 * refusal it got (status, reason, headers). The gate counts every refusal and reports it (`reject` event;
 * `error` too when a hook failed), so a transport never does.
 */
export class UpgradeGate<TData> {
  /** Matches a path against the transport's `path` patterns. */
  readonly match: RouteMatcher;
  readonly #host: TransportHost<TData>;
  readonly #options: ResolvedTransportOptions<TData>;
  readonly #door: ResolvedDoorOptions;
  readonly #capped: boolean;
  /** Sessions and handshakes in progress, in all and per address (kept only when a cap is set). */
  #held = 0;
  readonly #perAddress = new Map<string, number>();
  readonly #counted = new Set<BaseSession<TData>>();
  /** Places of accepted handshakes whose session has not opened yet, per address. */
  readonly #unclaimed = new Map<string, number>();
  #sweep: NodeJS.Immediate | null = null;
  #closed = false;

  constructor(host: TransportHost<TData>, options: ResolvedTransportOptions<TData>) {
    this.#host = host;
    this.#options = options;
    this.#door = options.door;
    this.match = compileRoutes(options.path);
    this.#capped = this.#door.maxSessions !== Infinity || this.#door.maxSessionsPerAddress !== Infinity;
    if (this.#capped) {
      const tapped = tapHost(host, {
        opened: (session) => {
          this.#counted.add(session);
          if (!this.#claim(session.remoteAddress)) this.#take(session.remoteAddress);
        },
        closed: (session) => {
          if (this.#counted.delete(session)) this.#give(session.remoteAddress);
        },
      });
      if (!tapped) throw new TypeError('The "host" argument must come from attachTransport()');
    }
  }

  /**
   * True when the path of `url` is one of this transport's routes. A server shared by several transports asks
   * each in turn; the one that owns the path decides, and a path nobody owns gets one 404.
   */
  owns(url: string): boolean {
    const q = url.indexOf('?');
    return this.match(q === -1 ? url : url.slice(0, q)) !== null;
  }

  /** Refuses every later upgrade with 503 (the transport is closing). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Decides one upgrade, in this order: the route (404), closing (503), the handshake headers (400, 405, 426),
   * the origin (403), the caps (503 in all, 429 per address), then the `authenticate` hook bounded by
   * `handshakeTimeout` (its status; 500 when it fails, 503 when it is late) with `channels`, and closing again
   * (503). `gone` tells whether the peer left meanwhile: then the answer is null, nothing is counted and
   * nothing may be written. Never throws and never rejects.
   */
  async decide(raw: RawUpgrade, gone: () => boolean): Promise<UpgradeOutcome<TData> | null> {
    const door = this.#door;
    // One copy of an address for all its sessions (a proxy, a NAT), as each session keeps it.
    const address = ADDRESSES.get(clientAddress(raw.headers, raw.remoteAddress, door.addressHeader), same);
    const request = toUpgradeRequest(raw.url, raw.headers, address, this.match);
    if (request === null) return this.#refuse(null, refusal(404));
    if (this.#closing()) return this.#refuse(request, refusal(503));
    const bad = checkHandshake(raw.method, raw.headers);
    if (bad !== null) return this.#refuse(request, bad);
    const origin = raw.headers['origin'];
    if (origin !== undefined && !isSameOrigin(origin, raw.headers['host'])) {
      let allowed: boolean;
      try {
        allowed = door.allowOrigin(origin, request) === true;
      } catch (err) {
        this.#host.error(err);
        return this.#refuse(request, refusal(500));
      }
      if (!allowed) return this.#refuse(request, refusal(403, 'Origin not allowed'));
    }
    if (!this.#capped) return this.#finish(request, gone);
    if (this.#held >= door.maxSessions) return this.#refuse(request, refusal(503, 'Too many sessions'));
    if ((this.#perAddress.get(address) ?? 0) >= door.maxSessionsPerAddress) {
      return this.#refuse(request, refusal(429, 'Too many sessions from this address'));
    }
    // A handshake in progress holds its place, so a burst of slow handshakes cannot pass the caps. An accepted
    // one hands its place to the session that opens from it (the host tells the gate); a place no session
    // claimed by the next turn (the peer left during the upgrade) is given back.
    this.#take(address);
    let outcome: UpgradeOutcome<TData> | null = null;
    try {
      outcome = await this.#finish(request, gone);
      return outcome;
    } finally {
      if (outcome?.ok === true) this.#leave(address);
      else this.#give(address);
    }
  }

  #leave(address: string): void {
    this.#unclaimed.set(address, (this.#unclaimed.get(address) ?? 0) + 1);
    if (this.#sweep !== null) return;
    this.#sweep = setImmediate(() => {
      this.#sweep = null;
      for (const [a, n] of this.#unclaimed) for (let i = 0; i < n; i++) this.#give(a);
      this.#unclaimed.clear();
    });
  }

  #claim(address: string): boolean {
    const n = this.#unclaimed.get(address);
    if (n === undefined) return false;
    if (n <= 1) this.#unclaimed.delete(address);
    else this.#unclaimed.set(address, n - 1);
    return true;
  }

  async #finish(request: UpgradeRequest, gone: () => boolean): Promise<UpgradeOutcome<TData> | null> {
    const decision = await this.#hooks(request);
    if (gone()) return null;
    if (!decision.ok) {
      if (decision.error !== undefined) this.#host.error(decision.error);
      return this.#refuse(request, refusal(decision.status, decision.reason));
    }
    if (this.#closing()) return this.#refuse(request, refusal(503));
    return { ok: true, request, data: decision.data, channels: decision.channels };
  }

  /** The hooks, bounded: an `authenticate` that never settles must not hold the socket forever. */
  #hooks(request: UpgradeRequest): Promise<HookDecision<TData>> {
    const hooks = runHooks(request, this.#options.authenticate, this.#options.channels);
    if (this.#options.authenticate === undefined) return hooks;
    const ms = this.#door.handshakeTimeout;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<HookDecision<TData>>((resolve) => {
      timer = setTimeout(() => {
        const error = new Error(
          `authenticate did not settle within ${ms} ms (the "handshakeTimeout" option)`,
        );
        resolve({ ok: false, status: 503, reason: defaultReason(503), error });
      }, ms);
    });
    return Promise.race([hooks, late]).finally(() => clearTimeout(timer));
  }

  #take(address: string): void {
    this.#held++;
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
  }

  #give(address: string): void {
    this.#held--;
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(address);
    else this.#perAddress.set(address, n);
  }

  #closing(): boolean {
    return this.#closed || this.#host.closing;
  }

  #refuse(request: UpgradeRequest | null, why: Refusal): UpgradeOutcome<TData> {
    this.#host.rejected(request, why.status, why.reason);
    return {
      ok: false,
      status: why.status,
      reason: why.reason || defaultReason(why.status),
      headers: why.headers,
    };
  }
}
