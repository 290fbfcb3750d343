/**
 * The system under test of the model-based test and the reference model it is checked against.
 *
 * One registry with sessions on both transports (ws over an http server, the native uWS build) over real
 * sockets on 127.0.0.1. The model is plain data: which sessions exist, which channels each is in, which
 * messages were addressed to each. What the registry reports (drop events, close events, stats()) and what the
 * clients really received are recorded as they happen and compared with the model at every step boundary.
 *
 * What is observable at a step boundary: messages may still be in flight. `settle()` waits, bounded, until every
 * session that should be gone has its `close` event and every open, reading client received everything the
 * model says was delivered to it (addressed and not reported dropped). A stalled client may be behind; it is
 * only checked for order and duplicates until it reads again.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import uWS from 'uWebSockets.js';
import { SessionRegistry, type DropReason, type Message, type Session } from '../../src/index.js';
import { assertNativeUws, uwsTransport } from '../../transports/uws.js';
import { wsTransport } from '../../transports/ws.js';
import { connect, Leftovers, type Client } from '../transports/clients.js';
import { listenUws } from '../transports/uws-harness.js';

export const CHANNELS = ['a', 'b', 'c'] as const;
export type Channel = (typeof CHANNELS)[number];
export type TransportName = 'ws' | 'uws';

/** Backpressure limit of the runs: small, so that a stalled client passes it within a few MB. */
export const LIMIT = 256 * 1024;
export const POLICY_CLOSE_CODE = 4013;
/** How long a step may wait for what it expects (messages in flight, close handshakes). */
export const SETTLE_MS = 10_000;

export interface Config {
  policy: 'drop' | 'close';
}

/** One connection, as the model sees it and as it really went. */
export interface Peer {
  /** Order of connection (the model's name for it). */
  readonly n: number;
  readonly transport: TransportName;
  client: Client;
  readonly session: Session;
  /** Model: the channels it is in (until its close event). */
  readonly channels: Set<Channel>;
  /** Model: message ids addressed to it, in the order they were sent. */
  readonly addressed: number[];
  /** Model: a close was started (by the client or the server); it must be gone by the next step boundary. */
  closing: boolean;
  /** The client does not read (its socket is paused). */
  stalled: boolean;
  /** It was stalled at some point (a client that always read must never be found past the limit). */
  everStalled: boolean;
  /** Closed by the server while stalled: it may stay closing (handshake pending) until the client reads. */
  lingers: boolean;
  /** The server-side close code the model expects, when it knows it. */
  expectCode: number | null;
  /** Observed: `open` and `close` events, the close code, drops by message id. */
  opens: number;
  closes: number;
  closedWith: number | null;
  readonly drops: Map<number, DropReason>;
  readonly dropOrder: number[];
  /** What a listener does to it while it opens (consumed when done). */
  action: OpenAction | null;
}

/** Something a registry listener does to a session while it opens (in its `subscribe` or `open` event). */
export interface OpenAction {
  when: 'subscribe' | 'open';
  what: 'close' | 'terminate' | 'publish' | 'send' | 'subscribe';
}

/** The client of a session that closed before its client saw it open: it received nothing. */
const NO_CLIENT = { messages: [] as string[] } as unknown as Client;

export class World {
  readonly config: Config;
  readonly registry: SessionRegistry;
  readonly leftovers = new Leftovers();
  readonly peers: Peer[] = [];
  readonly #byId = new Map<string, Peer>();
  readonly errors: Error[] = [];
  /** Things the registry did that the model cannot explain (a drop for an unknown message, a stray event). */
  readonly anomalies: string[] = [];
  /** What the runs went through, summed over runs (printed at the end). */
  static readonly totals = {
    runs: 0,
    sessions: 0,
    published: 0,
    delivered: 0,
    dropped: 0,
    policyCloses: 0,
  };
  readonly coverage = { fills: 0 };
  /** Model counters. */
  published = 0;
  #nextId = 0;
  #urls: Record<TransportName, string> = { ws: '', uws: '' };
  #waiters: (() => void)[] = [];

  private constructor(config: Config) {
    this.config = config;
    this.registry = new SessionRegistry({
      backpressure: { limit: LIMIT, policy: config.policy, closeCode: POLICY_CLOSE_CODE },
      closeTimeout: 500,
    });
  }

  static async start(config: Config): Promise<World> {
    assertNativeUws(uWS);
    const world = new World(config);
    const { registry, leftovers } = world;
    registry.on('error', (err) => {
      world.errors.push(err);
      world.poke();
    });
    // The first listeners: a session being connected is adopted into the model at its first event (its
    // `subscribe` events come before `open`), before any action a listener takes on it.
    registry.on('subscribe', (session) => {
      const peer = world.#byId.get(session.id) ?? world.#adopt(session);
      if (peer !== undefined && peer.opens === 0) world.#during(peer, 'subscribe');
    });
    registry.on('open', (session) => {
      const peer = world.#byId.get(session.id) ?? world.#adopt(session);
      if (peer === undefined) world.anomalies.push(`open of an unexpected session ${session.id}`);
      else {
        peer.opens++;
        if (peer.closes > 0) world.anomalies.push(`#${peer.n}: open after close`);
        world.#during(peer, 'open');
      }
      world.poke();
    });
    registry.on('close', (session, code) => {
      const peer = world.#byId.get(session.id);
      if (peer === undefined) world.anomalies.push(`close of an unknown session ${session.id}`);
      else {
        peer.closes++;
        peer.closedWith = code;
        if (peer.opens !== 1) world.anomalies.push(`#${peer.n}: close before open`);
        if (!peer.closing) {
          // Only the backpressure policy closes a session the model did not close.
          const byPolicy =
            config.policy === 'close' &&
            code === POLICY_CLOSE_CODE &&
            [...peer.drops.values()].includes('backpressure');
          if (!byPolicy) world.anomalies.push(`#${peer.n}: unexpected close with ${code}`);
          peer.closing = true;
        }
      }
      world.poke();
    });
    registry.on('drop', (session, reason, message) => {
      const peer = world.#byId.get(session.id);
      const id = idOf(message);
      if (peer === undefined) world.anomalies.push(`drop (${reason}) of #${id} for an unknown session`);
      else if (!peer.addressed.includes(id))
        world.anomalies.push(`#${peer.n}: drop (${reason}) of message ${id}, never addressed to it`);
      else if (peer.drops.has(id)) world.anomalies.push(`#${peer.n}: message ${id} dropped twice`);
      else {
        peer.drops.set(id, reason);
        peer.dropOrder.push(id);
        if (reason === 'backpressure' && config.policy === 'close' && !peer.closing) {
          // The policy closes it; it must be gone within a second or so, whatever its client does.
          peer.closing = true;
          peer.lingers = false;
          peer.expectCode = POLICY_CLOSE_CODE;
        }
      }
      world.poke();
    });

    const server = http.createServer((_req, res) => res.writeHead(404).end());
    wsTransport(registry, { server, heartbeat: false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const app = uWS.App();
    uwsTransport(registry, { app, heartbeat: false });
    const { socket: listenSocket, port: uwsPort } = await listenUws(app);
    leftovers.add(async () => {
      for (const peer of world.peers) if (peer.stalled) peer.client.socket.resume();
      await registry.close();
      uWS.us_listen_socket_close(listenSocket);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    world.#urls = {
      ws: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
      uws: `ws://127.0.0.1:${uwsPort}`,
    };
    return world;
  }

  dispose(): Promise<void> {
    const totals = World.totals;
    const stats = this.registry.stats();
    totals.runs++;
    totals.sessions += stats.opened;
    totals.published += stats.published;
    totals.delivered += stats.delivered;
    totals.dropped += stats.dropped;
    totals.policyCloses += stats.closedForBackpressure;
    return this.leftovers.dispose();
  }

  /** Sessions that exist for the registry (no close event yet). */
  present(): Peer[] {
    return this.peers.filter((p) => p.closes === 0);
  }

  /** Sessions the model considers open: present and not closing. */
  live(): Peer[] {
    return this.peers.filter((p) => p.closes === 0 && !p.closing);
  }

  nextMessage(size: number): { id: number; text: string } {
    const id = this.#nextId++;
    const head = `${id}:`;
    const text = head + 'x'.repeat(Math.max(0, size - head.length));
    this.sizes.set(id, text.length);
    return { id, text };
  }

  #expecting: { transport: TransportName; channel: Channel; action: OpenAction | null } | null = null;

  /** Takes a session the test is connecting into the model. */
  #adopt(session: Session): Peer | undefined {
    const expecting = this.#expecting;
    if (expecting === null) return undefined;
    this.#expecting = null;
    const peer: Peer = {
      n: this.peers.length,
      transport: expecting.transport,
      client: NO_CLIENT,
      session,
      channels: new Set([expecting.channel]),
      addressed: [],
      closing: false,
      stalled: false,
      everStalled: false,
      lingers: false,
      expectCode: null,
      opens: 0,
      closes: 0,
      closedWith: null,
      drops: new Map(),
      dropOrder: [],
      action: expecting.action,
    };
    if (session.transport !== peer.transport)
      this.anomalies.push(`#${peer.n}: opened on ${session.transport}`);
    this.peers.push(peer);
    this.#byId.set(session.id, peer);
    return peer;
  }

  /** Runs the action a connect step asked for, in the listener it asked for, while the session opens. */
  #during(peer: Peer, event: 'subscribe' | 'open'): void {
    const action = peer.action;
    if (action === null || action.when !== event) return;
    peer.action = null;
    this.onOpenAction?.(peer, action);
  }

  /** Set by the commands: performs a listener's action (close, publish, ...) on a session that is opening. */
  onOpenAction: ((peer: Peer, action: OpenAction) => void) | null = null;

  async connect(transport: TransportName, channel: Channel, action: OpenAction | null = null): Promise<Peer> {
    this.#expecting = { transport, channel, action };
    const before = this.peers.length;
    let client: Client | null = null;
    try {
      client = await connect(this.leftovers, `${this.#urls[transport]}/${channel}`);
    } catch (err) {
      // A session a listener closes or terminates while it opens may be gone before the client saw it open.
      if (action === null || (action.what !== 'close' && action.what !== 'terminate')) throw err;
    }
    // The server's open may come a turn after the client's (uWS answers before its open handler ran).
    await this.waitFor(
      () => this.peers.length > before && (this.peers[before] as Peer).opens > 0,
      `the open event of a ${transport} session`,
    );
    this.#expecting = null;
    const peer = this.peers[before] as Peer;
    if (client !== null) {
      peer.client = client;
      client.ws.on('message', () => this.poke());
      client.ws.on('close', () => this.poke());
    }
    return peer;
  }

  /** The model's side of a publish: who it is addressed to (present sessions in any channel, not excepted). */
  addressPublish(id: number, channels: readonly Channel[], except: readonly Peer[]): void {
    this.published++;
    for (const peer of this.present()) {
      if (except.includes(peer)) continue;
      if (channels.some((c) => peer.channels.has(c))) peer.addressed.push(id);
    }
  }

  /** Wakes `waitFor`: called on every client message and registry event. */
  poke(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once `condition` holds (re-checked on every event); rejects after `ms` with `what`. */
  waitFor(condition: () => boolean, what: string, ms = SETTLE_MS): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => {
        done = true;
        reject(new Error(`Timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      let done = false;
      const check = () => {
        if (done) return;
        let ok = false;
        try {
          ok = condition();
        } catch (err) {
          done = true;
          clearTimeout(deadline);
          reject(err as Error);
          return;
        }
        if (ok) {
          done = true;
          clearTimeout(deadline);
          resolve();
        } else this.#waiters.push(check);
      };
      // Once now, once after the current turn (flushes happen at its end), then on every event.
      check();
      setImmediate(() => {
        if (!done) this.poke();
      });
    });
  }

  /** What the model says a session was delivered: addressed and not reported dropped. */
  delivered(peer: Peer): number[] {
    return peer.addressed.filter((id) => !peer.drops.has(id));
  }

  /**
   * The step boundary: waits until every closing session is gone and every reading client has everything
   * delivered to it, then checks every invariant.
   */
  async settle(): Promise<void> {
    // Publishes to a busy channel are held for up to one coalescing window (stats().coalescing) before they are
    // fanned out and counted; when every recipient is stalled or closing nothing else waits for that, and no
    // event says it happened, so this polls. Bounded: a hold that never lets go fails the step.
    const held = Date.now();
    while (this.registry.stats().coalescing > 0) {
      if (Date.now() - held > SETTLE_MS)
        throw new Error(
          `the channel hold still holds ${this.registry.stats().coalescing} publishes after ${SETTLE_MS} ms`,
        );
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    // A server-side close of a client that does not read waits for its closing handshake (ws: up to its close
    // timeout); it may stay closing across steps until the client reads again or the run ends.
    await this.waitFor(
      () => this.peers.every((p) => !p.closing || p.closes > 0 || p.lingers),
      'every closed session to be gone (close event)',
    );
    await this.waitFor(
      () =>
        this.present().every(
          (p) => p.stalled || p.closing || p.client.messages.length >= this.delivered(p).length,
        ) || this.anomalies.length > 0,
      'every reading client to receive what was delivered to it',
    );
    this.check();
  }

  /** Every invariant, at a step boundary. Throws with a description of the first one broken. */
  check(): void {
    const fail = (what: string): never => {
      throw new Error(`${what}\n${this.describe()}`);
    };
    if (this.anomalies.length > 0) fail(this.anomalies.join('; '));
    if (this.errors.length > 0) fail(`error events: ${this.errors.map((e) => e.message).join('; ')}`);
    const { registry } = this;
    for (const peer of this.peers) {
      const received = peer.client.messages.map(idOf);
      const delivered = this.delivered(peer);
      // At most once, in publish order, only what was delivered (never a dropped message).
      const deliveredSet = new Set(delivered);
      for (let i = 0; i < received.length; i++) {
        const id = received[i] as number;
        if (!deliveredSet.has(id)) {
          fail(
            peer.drops.has(id)
              ? `#${peer.n} received message ${id}, which was counted dropped (${peer.drops.get(id)})`
              : `#${peer.n} received message ${id}, never addressed to it`,
          );
        }
        if (i > 0 && id <= (received[i - 1] as number))
          fail(`#${peer.n} received message ${id} after ${received[i - 1]}: duplicate or out of order`);
      }
      // Bytes held for a turn must not make a reading client look slow (issue 8, defect 5).
      if (!peer.everStalled && [...peer.drops.values()].includes('backpressure'))
        fail(`#${peer.n} always read, yet it was found past the backpressure limit`);
      if (peer.opens !== 1) fail(`#${peer.n}: ${peer.opens} open events`);
      if (peer.closes > 1) fail(`#${peer.n}: ${peer.closes} close events`);
      if (peer.closes === 1) {
        if (peer.expectCode !== null && peer.closedWith !== peer.expectCode)
          fail(`#${peer.n}: closed with ${peer.closedWith}, expected ${peer.expectCode}`);
        if (registry.get(peer.session.id) !== undefined) fail(`#${peer.n}: closed but still in the registry`);
        if (peer.session.state !== 'closed') fail(`#${peer.n}: close event but state ${peer.session.state}`);
        for (const c of CHANNELS)
          if (registry.sessions(c).includes(peer.session))
            fail(`#${peer.n}: closed but still in channel ${c}`);
        if (peer.session.channels.size !== 0) fail(`#${peer.n}: closed but still lists channels`);
      } else {
        if (peer.closing && !peer.lingers) fail(`#${peer.n}: still present after its close`);
        const state = peer.lingers ? 'closing' : 'open';
        if (peer.session.state !== state) fail(`#${peer.n}: ${peer.session.state}, model says ${state}`);
        // Everything delivered to a client that reads has arrived, exactly.
        if (!peer.stalled && !peer.closing && received.length !== delivered.length)
          fail(`#${peer.n} received ${received.length} messages, ${delivered.length} were delivered`);
        const channels = [...peer.session.channels].sort().join(',');
        if (channels !== [...peer.channels].sort().join(','))
          fail(`#${peer.n}: in channels [${channels}], model says [${[...peer.channels].sort().join(',')}]`);
      }
    }
    // The channel index agrees with the model.
    const present = this.present();
    let nonEmpty = 0;
    for (const c of CHANNELS) {
      const expected = present
        .filter((p) => p.channels.has(c))
        .map((p) => p.session.id)
        .sort();
      const actual = registry
        .sessions(c)
        .map((s) => s.id)
        .sort();
      if (expected.join() !== actual.join())
        fail(`channel ${c}: registry has [${actual.join()}], model [${expected.join()}]`);
      if (registry.count(c) !== expected.length)
        fail(`count(${c}) = ${registry.count(c)}, model ${expected.length}`);
      if (registry.has(c) !== expected.length > 0) fail(`has(${c}) disagrees with the model`);
      if (expected.length > 0) nonEmpty++;
    }
    // stats() agrees with the model: every addressed message is exactly one of delivered or dropped.
    let delivered = 0;
    let deliveredBytes = 0;
    const droppedBy: Record<DropReason, number> = { backpressure: 0, closed: 0, error: 0 };
    let policyClosed = 0;
    for (const peer of this.peers) {
      for (const id of this.delivered(peer)) {
        delivered++;
        deliveredBytes += this.sizes.get(id) ?? 0;
      }
      for (const reason of peer.drops.values()) droppedBy[reason]++;
      if (this.config.policy === 'close' && [...peer.drops.values()].includes('backpressure')) policyClosed++;
    }
    const stats = registry.stats();
    const expected = {
      sessions: present.length,
      channels: nonEmpty,
      opened: this.peers.length,
      published: this.published,
      delivered,
      bytesDelivered: deliveredBytes,
      dropped: droppedBy.backpressure + droppedBy.closed + droppedBy.error,
      droppedBy,
      closedForBackpressure: policyClosed,
      inboundLimited: 0,
      rejected: 0,
      errors: 0,
    };
    for (const [key, value] of Object.entries(expected)) {
      const actual = (stats as unknown as Record<string, unknown>)[key];
      if (JSON.stringify(actual) !== JSON.stringify(value))
        fail(`stats().${key} = ${JSON.stringify(actual)}, model ${JSON.stringify(value)}`);
    }
    if (registry.count() !== present.length) fail(`count() = ${registry.count()}, model ${present.length}`);
    if (registry.channels().length !== nonEmpty) fail(`channels() = [${registry.channels().join()}]`);
  }

  /** Byte length of every message by id (all text, one byte per character). */
  readonly sizes = new Map<number, number>();

  describe(): string {
    return this.peers
      .map(
        (p) =>
          `  #${p.n} ${p.transport} [${[...p.channels].join(',')}]${p.stalled ? ' stalled' : ''}` +
          `${p.closes > 0 ? ` closed(${p.closedWith})` : p.closing ? ' closing' : ''}: addressed ${p.addressed.length},` +
          ` dropped ${p.drops.size}, received ${p.client.messages.length}`,
      )
      .join('\n');
  }
}

/** The message id at the head of a payload (`<id>:xxx`). */
export function idOf(data: string | Message): number {
  const text =
    typeof data === 'string' ? data : typeof data.data === 'string' ? data.data : data.data.toString();
  return Number(text.slice(0, text.indexOf(':')));
}
