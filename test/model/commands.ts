/**
 * The steps of the model-based test, as fast-check commands. Every step picks its targets by index among the
 * sessions that exist when it runs (so a shrunk sequence stays valid), acts on the real system, updates the
 * model, then waits for the step boundary (`world.settle()`), where every invariant is checked.
 */
import fc from 'fast-check';
import type { SendResult } from '../../src/index.js';
import type { World } from './world.js';
import { CHANNELS, LIMIT, type Channel, type OpenAction, type Peer, type TransportName } from './world.js';

export interface Model {
  world: World;
}
type Cmd = fc.AsyncCommand<Model, World>;

const MAX_PEERS = 10;
/** Bytes a fill may send to a stalled session before the test gives up on its backpressure. */
const FILL_MAX_BYTES = 96 * 1024 * 1024;
const FILL_SIZE = 64 * 1024;

const pick = <T>(list: readonly T[], k: number): T | undefined =>
  list.length === 0 ? undefined : list[k % list.length];
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A synchronous action inside a same-turn burst (and the single-step commands reuse them). */
type Op =
  | { op: 'publish'; channels: Channel[]; size: number; except: number[]; exceptBy: 'session' | 'id' }
  | { op: 'send'; k: number; size: number; via: 'registry' | 'session' | 'id' }
  | { op: 'serverClose'; k: number; code: number }
  | { op: 'serverTerminate'; k: number }
  | { op: 'subscribe'; k: number; channel: Channel; byId: boolean }
  | { op: 'unsubscribe'; k: number; channel: Channel | null };

function apply(world: World, o: Op): void {
  const { registry } = world;
  switch (o.op) {
    case 'publish': {
      const present = world.present();
      const except = [...new Set(o.except.map((k) => pick(present, k)).filter((p) => p !== undefined))];
      const { id, text } = world.nextMessage(o.size);
      world.addressPublish(id, o.channels, except);
      const refs = o.exceptBy === 'id' ? except.map((p) => p.session.id) : except.map((p) => p.session);
      const options = except.length === 0 ? undefined : { except: refs.length === 1 ? refs[0] : refs };
      registry.publish(
        o.channels.length === 1 ? (o.channels[0] as Channel) : o.channels,
        text,
        options as never,
      );
      return;
    }
    case 'send': {
      // Any session ever connected, gone ones too: a send to a closed session is dropped (or not addressed).
      const peer = pick(world.peers, o.k);
      if (peer === undefined) return;
      const { id, text } = world.nextMessage(o.size);
      const addressed = o.via === 'session' || peer.closes === 0;
      if (addressed) peer.addressed.push(id);
      let result: SendResult;
      if (o.via === 'session') result = peer.session.send(text);
      else result = registry.send(o.via === 'id' ? peer.session.id : peer.session, text);
      const dropped = peer.drops.has(id);
      if (!addressed && result !== 'closed')
        world.anomalies.push(`send to gone #${peer.n} via ${o.via} returned ${result}`);
      if (addressed && (result === 'sent' || result === 'queued') && dropped)
        world.anomalies.push(`send ${id} to #${peer.n} returned ${result} but was counted dropped`);
      if (addressed && (result === 'dropped' || result === 'closed') && !dropped)
        world.anomalies.push(`send ${id} to #${peer.n} returned ${result} without a drop`);
      return;
    }
    case 'serverClose': {
      const peer = pick(world.live(), o.k);
      if (peer === undefined) return;
      peer.closing = true;
      peer.lingers = peer.stalled;
      peer.expectCode = o.code;
      peer.session.close(o.code, 'model');
      return;
    }
    case 'serverTerminate': {
      const peer = pick(world.live(), o.k);
      if (peer === undefined) return;
      peer.closing = true;
      peer.expectCode = 1006;
      peer.session.terminate();
      return;
    }
    case 'subscribe': {
      const peer = pick(world.live(), o.k);
      if (peer === undefined) return;
      registry.subscribe(o.byId ? peer.session.id : peer.session, o.channel);
      peer.channels.add(o.channel);
      return;
    }
    case 'unsubscribe': {
      const peer = pick(world.present(), o.k);
      if (peer === undefined) return;
      if (o.channel === null) {
        registry.unsubscribe(peer.session);
        peer.channels.clear();
      } else {
        registry.unsubscribe(peer.session, o.channel);
        peer.channels.delete(o.channel);
      }
      return;
    }
  }
}

function describeOp(o: Op): string {
  switch (o.op) {
    case 'publish':
      return `publish([${o.channels.join(',')}], ${o.size} B${o.except.length > 0 ? `, except ${o.except.join('/')} by ${o.exceptBy}` : ''})`;
    case 'send':
      return `send(${o.k}, ${o.size} B, via ${o.via})`;
    case 'serverClose':
      return `serverClose(${o.k}, ${o.code})`;
    case 'serverTerminate':
      return `serverTerminate(${o.k})`;
    case 'subscribe':
      return `subscribe(${o.k}, ${o.channel}${o.byId ? ', by id' : ''})`;
    case 'unsubscribe':
      return `unsubscribe(${o.k}, ${o.channel ?? 'all'})`;
  }
}

/** One synchronous operation as a step of its own. */
class OpCommand implements Cmd {
  constructor(readonly o: Op) {}
  check(m: Readonly<Model>): boolean {
    if (this.o.op === 'publish') return true;
    if (this.o.op === 'send') return m.world.peers.length > 0;
    return m.world.live().length > 0;
  }
  async run(_m: Model, world: World): Promise<void> {
    apply(world, this.o);
    await world.settle();
  }
  toString(): string {
    return describeOp(this.o);
  }
}

/** Several operations in one event-loop turn: nothing is flushed or read in between. */
class BurstCommand implements Cmd {
  constructor(readonly ops: Op[]) {}
  check(): boolean {
    return true;
  }
  async run(_m: Model, world: World): Promise<void> {
    for (const o of this.ops) apply(world, o);
    await world.settle();
  }
  toString(): string {
    return `burst[${this.ops.map(describeOp).join('; ')}]`;
  }
}

class ConnectCommand implements Cmd {
  constructor(
    readonly transport: TransportName,
    readonly channel: Channel,
    /** What a registry listener does to the session while it opens, if anything. */
    readonly action: OpenAction | null = null,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.world.present().length < MAX_PEERS;
  }
  async run(_m: Model, world: World): Promise<void> {
    world.onOpenAction = (peer, action) => openAction(world, peer, action);
    await world.connect(this.transport, this.channel, this.action);
    await world.settle();
  }
  toString(): string {
    const action = this.action === null ? '' : `, ${this.action.what} in ${this.action.when}`;
    return `connect(${this.transport}, ${this.channel}${action})`;
  }
}

/** A listener acting on a session while it opens: the registry must end in a state the model explains. */
function openAction(world: World, peer: Peer, action: OpenAction): void {
  switch (action.what) {
    case 'close':
      peer.closing = true;
      peer.expectCode = 4001;
      peer.session.close(4001, 'listener');
      return;
    case 'terminate':
      peer.closing = true;
      peer.expectCode = 1006;
      peer.session.terminate();
      return;
    case 'publish':
      apply(world, {
        op: 'publish',
        channels: [...peer.channels],
        size: 100,
        except: [],
        exceptBy: 'session',
      });
      return;
    case 'send':
      apply(world, { op: 'send', k: world.peers.indexOf(peer), size: 50, via: 'registry' });
      return;
    case 'subscribe': {
      const other = CHANNELS.find((c) => !peer.channels.has(c));
      if (other === undefined) return;
      world.registry.subscribe(peer.session, other);
      peer.channels.add(other);
      return;
    }
  }
}

/** The client closes (a stalled one reads again first, as a closing client does) or drops the connection. */
class ClientCloseCommand implements Cmd {
  constructor(
    readonly k: number,
    readonly terminate: boolean,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.world.live().length > 0;
  }
  async run(_m: Model, world: World): Promise<void> {
    const peer = pick(world.live(), this.k) as Peer;
    peer.closing = true;
    if (this.terminate) {
      peer.expectCode = 1006;
      // A destroyed connection is noticed by the server whether the client read or not.
      peer.stalled = false;
      peer.lingers = false;
      peer.client.ws.terminate();
    } else {
      peer.expectCode = 1000;
      if (peer.stalled) resume(peer);
      peer.client.ws.close(1000);
    }
    await world.settle();
  }
  toString(): string {
    return `client${this.terminate ? 'Terminate' : 'Close'}(${this.k})`;
  }
}

function resume(peer: Peer): void {
  peer.stalled = false;
  peer.lingers = false;
  peer.client.socket.resume();
}

/**
 * A backlog replay: `count` publishes of 1 KiB to one channel in one turn, up to 1.5 times the backpressure limit
 * per recipient. Reading clients take it through their sockets; only what a socket could not take may count.
 */
class BigBurstCommand implements Cmd {
  constructor(
    readonly channel: Channel,
    readonly count: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_m: Model, world: World): Promise<void> {
    for (let i = 0; i < this.count; i++)
      apply(world, { op: 'publish', channels: [this.channel], size: 1024, except: [], exceptBy: 'session' });
    await world.settle();
  }
  toString(): string {
    return `bigBurst(${this.channel}, ${this.count} x 1 KiB)`;
  }
}

/** The client stops reading (its socket is paused), or reads again. */
class StallCommand implements Cmd {
  constructor(
    readonly k: number,
    readonly stall: boolean,
    /** Fill it past the backpressure limit at once (see FillCommand). */
    readonly fill = false,
  ) {}
  // A closing session (closed by the server while stalled) can read again, not stall.
  #candidates(world: World): Peer[] {
    return (this.stall ? world.live() : world.present()).filter((p) => p.stalled !== this.stall);
  }
  check(m: Readonly<Model>): boolean {
    return this.#candidates(m.world).length > 0;
  }
  async run(_m: Model, world: World): Promise<void> {
    const peer = pick(this.#candidates(world), this.k) as Peer;
    if (this.stall) {
      peer.stalled = true;
      peer.everStalled = true;
      peer.client.socket.pause();
    } else resume(peer);
    await world.settle();
    if (this.fill) await fill(world, peer);
  }
  toString(): string {
    return `${this.stall ? (this.fill ? 'stallAndFill' : 'stall') : 'resume'}(${this.k})`;
  }
}

/**
 * Sends 64 KiB messages to a stalled session, a few per turn, until the registry reports it past the limit (a
 * backpressure drop) or closes it. A session that never passes the limit is a failure: its memory would grow.
 */
class FillCommand implements Cmd {
  constructor(readonly k: number) {}
  check(m: Readonly<Model>): boolean {
    return m.world.live().some((p) => p.stalled);
  }
  async run(_m: Model, world: World): Promise<void> {
    await fill(
      world,
      pick(
        world.live().filter((p) => p.stalled),
        this.k,
      ) as Peer,
    );
  }
  toString(): string {
    return `fill(${this.k})`;
  }
}

async function fill(world: World, peer: Peer): Promise<void> {
  {
    const past = () => [...peer.drops.values()].includes('backpressure') || peer.closes > 0;
    let bytes = 0;
    let maxBuffered = 0;
    while (!past() && bytes < FILL_MAX_BYTES) {
      for (let i = 0; i < 4; i++) {
        apply(world, { op: 'send', k: world.peers.indexOf(peer), size: FILL_SIZE, via: 'registry' });
        bytes += FILL_SIZE;
        maxBuffered = Math.max(maxBuffered, peer.session.bufferedAmount);
      }
      await turn();
    }
    if (!past())
      throw new Error(`#${peer.n}: ${bytes} bytes to a stalled session and it never passed the limit`);
    // Memory stays bounded: the limit, plus the message that crossed it (and uWS's per-socket batch).
    if (maxBuffered > LIMIT + 33 * (FILL_SIZE + 16))
      throw new Error(`#${peer.n}: ${maxBuffered} bytes buffered, limit ${LIMIT}`);
    world.coverage.fills++;
    await world.settle();
  }
}

const k = fc.nat({ max: 15 });
const channel = fc.constantFrom<Channel>(...CHANNELS);
const size = fc.oneof(fc.integer({ min: 8, max: 64 }), fc.integer({ min: 65, max: 4096 }));

const publishOp = fc.record({
  op: fc.constant('publish' as const),
  channels: fc.subarray([...CHANNELS], { minLength: 1 }),
  size,
  except: fc.array(k, { maxLength: 3 }),
  exceptBy: fc.constantFrom('session' as const, 'id' as const),
});
const sendOp = fc.record({
  op: fc.constant('send' as const),
  k,
  size,
  via: fc.constantFrom('registry' as const, 'session' as const, 'id' as const),
});
const serverCloseOp = fc.record({
  op: fc.constant('serverClose' as const),
  k,
  code: fc.integer({ min: 4000, max: 4099 }),
});
const serverTerminateOp = fc.record({ op: fc.constant('serverTerminate' as const), k });
const subscribeOp = fc.record({ op: fc.constant('subscribe' as const), k, channel, byId: fc.boolean() });
const unsubscribeOp = fc.record({
  op: fc.constant('unsubscribe' as const),
  k,
  channel: fc.option(channel, { nil: null }),
});

const anyOp: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: publishOp, weight: 4 },
  { arbitrary: sendOp, weight: 2 },
  { arbitrary: serverCloseOp, weight: 1 },
  { arbitrary: serverTerminateOp, weight: 1 },
  { arbitrary: subscribeOp, weight: 1 },
  { arbitrary: unsubscribeOp, weight: 1 },
);

const openActionArb: fc.Arbitrary<OpenAction | null> = fc.option(
  fc.record({
    when: fc.constantFrom('subscribe' as const, 'open' as const),
    what: fc.constantFrom(
      'close' as const,
      'terminate' as const,
      'publish' as const,
      'send' as const,
      'subscribe' as const,
    ),
  }),
  { nil: null, freq: 3 },
);
const connect = fc
  .tuple(fc.constantFrom<TransportName>('ws', 'uws'), channel, openActionArb)
  .map(([t, c, a]) => new ConnectCommand(t, c, a) as Cmd);
const weighted: [fc.Arbitrary<Cmd>, number][] = [
  [connect, 3],
  [publishOp.map((o) => new OpCommand(o)), 3],
  [sendOp.map((o) => new OpCommand(o)), 1],
  [subscribeOp.map((o) => new OpCommand(o)), 1],
  [unsubscribeOp.map((o) => new OpCommand(o)), 1],
  [serverCloseOp.map((o) => new OpCommand(o)), 1],
  [serverTerminateOp.map((o) => new OpCommand(o)), 1],
  [fc.tuple(k, fc.boolean()).map(([n, t]) => new ClientCloseCommand(n, t)), 1],
  [fc.tuple(k, fc.boolean()).map(([n, f]) => new StallCommand(n, true, f)), 3],
  [k.map((n) => new StallCommand(n, false)), 1],
  [k.map((n) => new FillCommand(n)), 2],
  [fc.array(anyOp, { minLength: 2, maxLength: 12 }).map((ops) => new BurstCommand(ops)), 3],
  [
    fc
      .tuple(channel, fc.integer({ min: 16, max: Math.floor((1.5 * LIMIT) / 1024) }))
      .map(([c, n]) => new BigBurstCommand(c, n)),
    1,
  ],
];

/** Every kind of step, weighted: one arbitrary, so that the weights are what fc.commands draws from. */
export const commandArbitraries: fc.Arbitrary<Cmd>[] = [
  fc.oneof(...weighted.map(([arbitrary, weight]) => ({ arbitrary, weight }))),
];
