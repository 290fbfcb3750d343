import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, BrokerContext } from '../../src/index.js';
import { encodeEnvelope } from '../../brokers/envelope.js';
import { Message } from '../../src/message.js';
import {
  Leftovers,
  connect,
  eventually,
  nextEvent,
  run,
  startNode,
  type Client,
  type Node,
} from './helpers.js';

export type TestBroker = Broker & { idle(): Promise<void> };

/** What the shared behaviour suite needs from one engine (Redis or NATS). */
export interface Engine {
  name: string;
  /** A unique prefix for one test, so parallel runs on the shared server never meet. */
  prefix(test: string): string;
  /** A broker on its own new connection; `inbound()`, if the engine can, counts what that connection received. */
  broker(leftovers: Leftovers, prefix: string): Promise<{ broker: TestBroker; inbound?: () => number }>;
  /** Publishes raw bytes where the brokers of `prefix` listen for `channel`, from another client. */
  raw(leftovers: Leftovers, prefix: string, channel: string, bytes: Buffer): Promise<void>;
  /** How many connections the engine reports subscribed to `channel` (Redis PUBSUB NUMSUB), if it can tell. */
  subscribers?(leftovers: Leftovers, prefix: string, channel: string): Promise<number>;
}

interface Cluster {
  nodes: Node[];
  brokers: TestBroker[];
  inbound: ((() => number) | undefined)[];
  idle(): Promise<void>;
}

async function cluster(engine: Engine, leftovers: Leftovers, prefix: string, n = 3): Promise<Cluster> {
  const nodes: Node[] = [];
  const brokers: TestBroker[] = [];
  const inbound: ((() => number) | undefined)[] = [];
  for (let i = 0; i < n; i++) {
    const { broker, inbound: count } = await engine.broker(leftovers, prefix);
    brokers.push(broker);
    inbound.push(count);
    nodes.push(await startNode(leftovers, `node${String.fromCharCode(65 + i)}-${run}`, broker));
  }
  return {
    nodes,
    brokers,
    inbound,
    idle: () => Promise.all(brokers.map((b) => b.idle())).then(() => undefined),
  };
}

const fences = (m: string[], n: number) => m.filter((x) => x.startsWith('fence:')).length >= n;

/**
 * Every other node publishes a fence on `channel` and every client waits for all of them. A fence from node B
 * reaches node A on the same subscriber connection as A's own echoes and after them, so once it is in, any
 * duplicate would be in too.
 */
async function fence(
  c: Cluster,
  channel: string | string[],
  clients: Client[],
  tag = 'fence',
): Promise<void> {
  for (const node of c.nodes) node.registry.publish(channel, `${tag}:${node.name}`);
  await Promise.all(clients.map((cl) => cl.until((m) => fences(m, c.nodes.length), 'the fences')));
}

const payloads = (m: string[]) => m.filter((x) => !x.startsWith('fence:'));

export function brokerSuite(engine: Engine): void {
  describe(`${engine.name} broker across three nodes (real sockets, real ${engine.name})`, () => {
    const leftovers = new Leftovers();
    afterEach(() => leftovers.dispose());

    it('a publish on any node reaches every session on all three exactly once, in order per publisher', async () => {
      const c = await cluster(engine, leftovers, engine.prefix('all'));
      const clients: Client[] = [];
      for (const node of c.nodes)
        for (let k = 0; k < 2; k++) clients.push(await connect(leftovers, node, ['room']));
      await c.idle();
      const N = 20;
      for (let i = 0; i < N; i++)
        for (const node of c.nodes) node.registry.publish('room', `${node.name}:${i}`);
      await Promise.all(clients.map((cl) => cl.until((m) => m.length >= 3 * N, `${3 * N} messages`)));
      await fence(c, 'room', clients);
      for (const client of clients) {
        const got = payloads(client.messages);
        expect(got).toHaveLength(3 * N);
        expect(new Set(got).size).toBe(3 * N);
        for (const node of c.nodes) {
          const mine = got.filter((x) => x.startsWith(`${node.name}:`));
          expect(mine).toEqual(Array.from({ length: N }, (_, i) => `${node.name}:${i}`));
        }
      }
      for (const node of c.nodes) {
        // Confirmation of the last publishes may trail their delivery elsewhere.
        await eventually(
          () => node.registry.stats().broker.published === N + 1,
          `${N + 1} confirmed publishes`,
        );
        expect(node.registry.stats().broker).toMatchObject({
          published: N + 1,
          failed: 0,
          unconfirmed: 0,
          received: 2 * (N + 1),
          malformed: 0,
        });
        expect(node.errors).toEqual([]);
      }
    });

    it('suppresses echoes: the publishing node delivers its own publish once, from local fan-out', async () => {
      const c = await cluster(engine, leftovers, engine.prefix('echo'), 2);
      const [a, b] = c.nodes as [Node, Node];
      const onA = await connect(leftovers, a, ['echo']);
      const onB = await connect(leftovers, b, ['echo']);
      await c.idle();
      a.registry.publish('echo', 'from-a');
      await fence(c, 'echo', [onA, onB]);
      expect(payloads(onA.messages)).toEqual(['from-a']);
      expect(payloads(onB.messages)).toEqual(['from-a']);
      // A received only B's fence from the broker; its own two publishes came back to it and were dropped.
      expect(a.registry.stats().broker.received).toBe(1);
      expect(b.registry.stats().broker.received).toBe(2);
    });

    it('`except` applies on the publishing node only; `local: true` never crosses nodes', async () => {
      const c = await cluster(engine, leftovers, engine.prefix('except'), 2);
      const [a, b] = c.nodes as [Node, Node];
      const onA = await connect(leftovers, a, ['ex']);
      const onB = await connect(leftovers, b, ['ex']);
      await c.idle();
      const [sessionA] = a.registry.sessions('ex');
      a.registry.publish('ex', 'not-for-the-a-client', { except: sessionA });
      a.registry.publish('ex', 'a-only', { local: true });
      b.registry.publish('ex', 'b-only', { local: true });
      await fence(c, 'ex', [onA, onB]);
      expect(payloads(onA.messages)).toEqual(['a-only']);
      expect(payloads(onB.messages).sort()).toEqual(['b-only', 'not-for-the-a-client']);
      await eventually(() => a.registry.stats().broker.published === 2, 'two confirmed publishes on A');
      expect(b.registry.stats().broker.received).toBe(2); // the except publish and A's fence
    });

    it('a multi-channel publish reaches each session once, whatever channels it is in and on which node', async () => {
      const c = await cluster(engine, leftovers, engine.prefix('multi'));
      const [a, b, cc] = c.nodes as [Node, Node, Node];
      const clients = {
        aXY: await connect(leftovers, a, ['x', 'y']),
        bX: await connect(leftovers, b, ['x']),
        bY: await connect(leftovers, b, ['y']),
        bXY: await connect(leftovers, b, ['x', 'y']),
        cYX: await connect(leftovers, cc, ['y', 'x']),
        cZ: await connect(leftovers, cc, ['z']),
      };
      await c.idle();
      a.registry.publish(['x', 'y'], 'm1');
      b.registry.publish(['y', 'x', 'z'], 'm2');
      cc.registry.publish(['y'], 'm3');
      const all = Object.values(clients);
      await fence(c, ['x', 'y', 'z'], all);
      // Three publishers: no order between them is promised, only exactly once per session.
      const got = (cl: Client) => payloads(cl.messages).sort();
      expect(got(clients.aXY)).toEqual(['m1', 'm2', 'm3']);
      expect(got(clients.bX)).toEqual(['m1', 'm2']);
      expect(got(clients.bY)).toEqual(['m1', 'm2', 'm3']);
      expect(got(clients.bXY)).toEqual(['m1', 'm2', 'm3']);
      expect(got(clients.cYX)).toEqual(['m1', 'm2', 'm3']);
      expect(got(clients.cZ)).toEqual(['m2']);
      for (const cl of all) expect(cl.messages.filter((m) => m.startsWith('fence:'))).toHaveLength(3);
    });

    it('a multi-channel publish reaches a session once even while one of its channel subscriptions is pending', async () => {
      const prefix = engine.prefix('pending');
      const { broker: real } = await engine.broker(leftovers, prefix);
      // The real broker, with this node's subscription to "a" held back until the test lets it go.
      let letGo!: () => void;
      const gate = new Promise<void>((resolve) => (letGo = resolve));
      const held: TestBroker = {
        start: (context) => real.start(context),
        subscribe: (channel) =>
          channel === 'a' ? gate.then(() => real.subscribe(channel)) : real.subscribe(channel),
        unsubscribe: (channel) => real.unsubscribe(channel),
        publish: (channels, message) => real.publish(channels, message),
        close: () => real.close(),
        idle: () => real.idle(),
      };
      const { broker: other } = await engine.broker(leftovers, prefix);
      const a = await startNode(leftovers, `pa-${run}`, other);
      const b = await startNode(leftovers, `pb-${run}`, held);
      await connect(leftovers, a, ['a', 'b']);
      const onB = await connect(leftovers, b, ['a', 'b']);
      await Promise.all([other.idle(), real.idle()]);
      // Only "b" is subscribed on node B: the copy on "a" never comes, the one on "b" must be delivered.
      for (let i = 0; i < 5; i++) a.registry.publish(['a', 'b'], `pending:${i}`);
      a.registry.publish('b', 'fence:1');
      await onB.until((m) => m.includes('fence:1'), 'the fence on b');
      expect(onB.messages).toEqual([
        'pending:0',
        'pending:1',
        'pending:2',
        'pending:3',
        'pending:4',
        'fence:1',
      ]);

      // Both subscriptions up: both copies arrive, each session still gets the publish once.
      letGo();
      // The held subscribe continues before this await does (it was chained on the gate first).
      await gate;
      await real.idle();
      a.registry.publish(['b', 'a'], 'both:1');
      a.registry.publish(['a', 'b'], 'both:2');
      a.registry.publish('a', 'fence:2');
      a.registry.publish('b', 'fence:3');
      await onB.until((m) => m.includes('fence:2') && m.includes('fence:3'), 'the fences on a and b');
      expect(onB.messages.slice(6).filter((m) => !m.startsWith('fence:'))).toEqual(['both:1', 'both:2']);
      // 5 copies on b, then 2 x 2 copies, then the fences.
      expect(b.registry.stats().broker.received).toBe(5 + 1 + 4 + 2);
      expect(b.errors).toEqual([]);
    });

    it('binary payloads cross nodes byte for byte; text stays text', async () => {
      const c = await cluster(engine, leftovers, engine.prefix('bin'), 2);
      const [a, b] = c.nodes as [Node, Node];
      const onB = await connect(leftovers, b, ['bin']);
      await connect(leftovers, a, ['bin']);
      await c.idle();
      const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
      a.registry.publish('bin', bytes);
      a.registry.publish('bin', new Uint8Array([0, 0xff, 0xfe, 0x80]));
      a.registry.publish('bin', 'héllo ✓ \u{1F600}');
      a.registry.publish('bin', { n: 1, s: 'ü' });
      a.registry.publish('bin', '');
      await onB.until((m) => m.length >= 5, 'five messages');
      expect(onB.messages).toEqual([
        `bin:${bytes.toString('hex')}`,
        'bin:00fffe80',
        'héllo ✓ \u{1F600}',
        '{"n":1,"s":"ü"}',
        '',
      ]);
    });

    it('interest routing: a node without sessions in a channel receives no traffic for it', async () => {
      const prefix = engine.prefix('interest');
      const c = await cluster(engine, leftovers, prefix);
      const [a, b, cc] = c.nodes as [Node, Node, Node];
      const onA = await connect(leftovers, a, ['common']);
      const onB = await connect(leftovers, b, ['common']);
      const onC = await connect(leftovers, cc, ['common']);
      let onlyB = await connect(leftovers, b, ['only-b']);
      await c.idle();
      if (engine.subscribers !== undefined) {
        expect(await engine.subscribers(leftovers, prefix, 'only-b')).toBe(1);
        expect(await engine.subscribers(leftovers, prefix, 'common')).toBe(3);
      }
      const receivedC = cc.registry.stats().broker.received;
      const inboundC = c.inbound[2]?.();
      for (let i = 0; i < 5; i++) a.registry.publish('only-b', `ob${i}`);
      await onlyB.until((m) => m.length === 5, 'five messages on only-b');
      // A fence on a channel C is in: on C's connection it arrives after anything sent before it.
      a.registry.publish('common', 'fence:1');
      await onC.until((m) => m.includes('fence:1'), 'the fence');
      await onB.until((m) => m.includes('fence:1'), 'the fence on B');
      expect(cc.registry.stats().broker.received - receivedC).toBe(1);
      // The wire-level count, where the engine has one (NATS): one message came in on C's connection.
      if (inboundC !== undefined) expect((c.inbound[2]?.() ?? 0) - inboundC).toBe(1);

      // The last session leaves: B unsubscribes; publishes on only-b no longer reach B.
      const left = nextEvent(b.registry, 'close');
      onlyB.ws.close();
      await left;
      await c.idle();
      if (engine.subscribers !== undefined)
        expect(await engine.subscribers(leftovers, prefix, 'only-b')).toBe(0);
      const receivedB = b.registry.stats().broker.received;
      const inboundB = c.inbound[1]?.();
      a.registry.publish('only-b', 'nobody');
      a.registry.publish('common', 'fence:2');
      await onC.until((m) => m.includes('fence:2'), 'the second fence');
      await onA.until((m) => m.includes('fence:2'), 'the second fence on A');
      // B's count is read once B's own copy of the fence arrived (each node has its own connection).
      await onB.until((m) => m.includes('fence:2'), 'the second fence on B');
      expect(onB.messages).not.toContain('nobody');
      expect(b.registry.stats().broker.received - receivedB).toBe(1);
      if (inboundB !== undefined) expect((c.inbound[1]?.() ?? 0) - inboundB).toBe(1);

      // And a new session brings the subscription back.
      onlyB = await connect(leftovers, b, ['only-b']);
      await c.idle();
      if (engine.subscribers !== undefined)
        expect(await engine.subscribers(leftovers, prefix, 'only-b')).toBe(1);
      a.registry.publish('only-b', 'again');
      await onlyB.until((m) => m.includes('again'), 'the publish after resubscribing');
      expect(onlyB.messages).toEqual(['again']);
    });

    it('subscribe/unsubscribe of one channel in quick succession ends in the last state, nothing lost or leaked', async () => {
      const prefix = engine.prefix('churn');
      const { broker } = await engine.broker(leftovers, prefix);
      const delivered: string[] = [];
      const errors: unknown[] = [];
      const context: BrokerContext = {
        nodeId: `churn-${run}`,
        deliver: (_id, _channels, via, message) => delivered.push(`${via}:${String(message.data)}`),
        malformed: (err) => errors.push(err),
        error: (err) => errors.push(err),
        channels: () => [],
      };
      // Calls before start() are queued until it runs.
      const early = [
        broker.subscribe('q'),
        broker.unsubscribe('q'),
        broker.subscribe('q'),
        broker.subscribe('r'),
      ];
      await broker.start(context);
      await Promise.all(early);
      const ops: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) ops.push(broker.unsubscribe('r'), broker.subscribe('r'));
      ops.push(broker.unsubscribe('r'));
      for (let i = 0; i < 7; i++) ops.push(broker.unsubscribe('q'), broker.subscribe('q'));
      await Promise.all(ops);
      await broker.idle();
      if (engine.subscribers !== undefined) {
        expect(await engine.subscribers(leftovers, prefix, 'q')).toBe(1);
        expect(await engine.subscribers(leftovers, prefix, 'r')).toBe(0);
      }
      const other = (text: string, channel: string) =>
        encodeEnvelope(`other-${run}`, [channel], new Message(text, false));
      await engine.raw(leftovers, prefix, 'r', other('on-r', 'r'));
      await engine.raw(leftovers, prefix, 'q', other('on-q', 'q'));
      await eventually(() => delivered.length >= 1, 'the delivery on q');
      // r was published first: had its subscription leaked, it would have come first.
      expect(delivered).toEqual(['q:on-q']);
      expect(errors).toEqual([]);
      await broker.close();
    });

    it('malformed messages on a channel are ignored and reported; good ones still flow', async () => {
      const prefix = engine.prefix('bad');
      const c = await cluster(engine, leftovers, prefix, 2);
      const [a, b] = c.nodes as [Node, Node];
      const onB = await connect(leftovers, b, ['bad']);
      await connect(leftovers, a, ['bad']);
      await c.idle();
      const good = encodeEnvelope(`other-${run}`, ['bad'], new Message('ok', false));
      const wrongVersion = Buffer.from(good);
      wrongVersion[1] = 9;
      const badUtf8 = Buffer.concat([
        encodeEnvelope(`other-${run}`, ['bad'], new Message('', false)),
        Buffer.from([0xc3]),
      ]);
      const wrongChannel = encodeEnvelope(`other-${run}`, ['elsewhere'], new Message('x', false));
      const garbage = [
        Buffer.from('hello, not an envelope'),
        Buffer.alloc(0),
        good.subarray(0, 12),
        wrongVersion,
        badUtf8,
        wrongChannel,
      ];
      const reported = Promise.all(
        [a, b].map((node) =>
          eventually(() => node.errors.length >= garbage.length, `${garbage.length} errors on ${node.name}`),
        ),
      );
      for (const bytes of garbage) await engine.raw(leftovers, prefix, 'bad', bytes);
      await reported;
      for (const node of [a, b]) {
        expect(node.errors).toHaveLength(garbage.length);
        for (const err of node.errors) expect(err.message).toMatch(/malformed message on channel "bad"/);
      }
      await engine.raw(leftovers, prefix, 'bad', good);
      a.registry.publish('bad', 'from-a');
      await onB.until((m) => m.length >= 2, 'the good messages');
      expect(onB.messages).toEqual(['ok', 'from-a']);
      expect(b.registry.stats().broker.received).toBe(2);
    });
  });
}
