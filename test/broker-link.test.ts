import { describe, expect, it } from 'vitest';
import {
  Message,
  SessionRegistry,
  UnconfirmedPublishError,
  type Broker,
  type BrokerContext,
} from '../src/index.js';
import { MemoryTransport } from './support/memory.js';

/** A broker stand-in for pure unit tests of the registry's remote path: the test plays the other nodes. */
class FakeBroker implements Broker {
  context: BrokerContext | null = null;
  publish: Broker['publish'] = () => Promise.resolve();
  start(context: BrokerContext): void {
    this.context = context;
  }
  subscribe(): Promise<void> {
    return Promise.resolve();
  }
  unsubscribe(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function setup() {
  const broker = new FakeBroker();
  const registry = new SessionRegistry({ broker, nodeId: 'here' });
  const errors: Error[] = [];
  registry.on('error', (e) => errors.push(e));
  const transport = new MemoryTransport(registry);
  await Promise.resolve(); // the registry starts its broker a microtask after construction
  const context = broker.context as BrokerContext;
  expect(context).not.toBeNull();
  return { broker, registry, transport, errors, context };
}

const text = (s: string) => new Message(s, false);

describe('remote delivery: each publish at most once per session, from whichever copy comes first', () => {
  it('drops a second copy of a single-channel publish (a resend), counted; late and foreign-form ids go through', async () => {
    const { transport, context, registry } = await setup();
    const a = transport.open(['a']);
    context.deliver('1.1.there', ['a'], 'a', text('m1'));
    context.deliver('1.3.there', ['a'], 'a', text('m3'));
    context.deliver('1.2.there', ['a'], 'a', text('m2')); // late, never seen: delivered
    context.deliver('1.1.there', ['a'], 'a', text('m1')); // sent again by the broker client: dropped
    context.deliver('1.3.there', ['a'], 'a', text('m3'));
    context.deliver('2.1.there', ['a'], 'a', text('n1')); // the same node restarted: a new stream
    context.deliver('1.1.elsewhere', ['a'], 'a', text('o1')); // another node
    context.deliver('opaque', ['a'], 'a', text('x1')); // a third-party broker's id of its own form
    context.deliver('opaque', ['a'], 'a', text('x2'));
    expect(a.texts()).toEqual(['m1', 'm3', 'm2', 'n1', 'o1', 'x1', 'x2']);
    expect(registry.stats().broker).toMatchObject({ received: 9, duplicates: 2 });
    expect(registry.stats().delivered).toBe(7);
  });

  it('delivers a multi-channel publish once, in either order of its copies, and from one copy alone', async () => {
    const { transport, context, registry } = await setup();
    const ab = transport.open(['a', 'b']);
    const onlyA = transport.open(['a']);
    const onlyB = transport.open(['b']);
    context.deliver('1.1.there', ['a', 'b'], 'a', text('m1'));
    context.deliver('1.1.there', ['a', 'b'], 'b', text('m1'));
    context.deliver('1.2.there', ['a', 'b'], 'b', text('m2')); // the later channel's copy first
    context.deliver('1.2.there', ['a', 'b'], 'a', text('m2'));
    context.deliver('1.3.there', ['a', 'b'], 'b', text('m3')); // the copy on "a" never comes
    context.deliver('1.3.there', ['a', 'b'], 'b', text('m3')); // a repeated copy changes nothing
    context.deliver('1.1.there', ['a', 'b'], 'a', text('m1')); // nor one sent again after every copy arrived
    expect(ab.texts()).toEqual(['m1', 'm2', 'm3']);
    expect(onlyA.texts()).toEqual(['m1', 'm2']);
    expect(onlyB.texts()).toEqual(['m1', 'm2', 'm3']);
    expect(registry.stats().broker).toMatchObject({ received: 7, duplicates: 2 });
  });

  it('never twice to a session whose channels changed between the copies', async () => {
    const { transport, context, registry } = await setup();
    const leaves = transport.open(['a', 'b']);
    const joins = transport.open(['b']);
    const stays = transport.open(['b']);
    context.deliver('2.1.there', ['a', 'b'], 'a', text('m'));
    registry.unsubscribe(leaves, 'a'); // it got the copy on "a"; it must not get the one on "b"
    registry.subscribe(joins, 'a'); // it joined after the first copy: the publish is older than its join
    context.deliver('2.1.there', ['a', 'b'], 'b', text('m'));
    expect(leaves.texts()).toEqual(['m']);
    expect(joins.texts()).toEqual([]);
    expect(stays.texts()).toEqual(['m']);
  });

  it('forgets publish ids in bounded memory (10,000 of them)', async () => {
    const { transport, context } = await setup();
    const ab = transport.open(['a', 'b']);
    context.deliver('3.0.there', ['a', 'b'], 'a', text('first'));
    for (let i = 1; i <= 10_000; i++) context.deliver(`3.${i}.there`, ['a', 'b'], 'a', text('x'));
    // Its record is gone: a copy that trails 10,000 other multi-channel publishes is taken as a new one.
    context.deliver('3.0.there', ['a', 'b'], 'b', text('first'));
    expect(ab.texts().filter((t) => t === 'first')).toHaveLength(2);
    // A recent one is still known.
    context.deliver('3.10000.there', ['a', 'b'], 'b', text('x'));
    expect(ab.texts()).toHaveLength(10_002);
  });
});

describe('remote delivery never throws into the broker client, and counts what it does not deliver', () => {
  it('discards deliveries that arrive while the registry is closing, and counts them', async () => {
    const { transport, context, registry } = await setup();
    const s = transport.open(['a']);
    const closing = registry.close();
    expect(() => context.deliver('4.1.there', ['a'], 'a', text('late'))).not.toThrow();
    await closing;
    expect(() => context.deliver('4.2.there', ['a', 'b'], 'a', text('later'))).not.toThrow();
    expect(s.texts()).toEqual([]);
    expect(registry.stats().broker).toMatchObject({ received: 2, discarded: 2 });
  });

  it('a transport whose fan-out throws is reported; the other transports still deliver', async () => {
    const { registry, transport, context, errors } = await setup();
    const broken = new MemoryTransport(registry);
    broken.fanout = () => {
      throw new Error('broken transport');
    };
    broken.open(['a']);
    const fine = transport.open(['a']);
    expect(() => context.deliver('5.1.there', ['a'], 'a', text('m'))).not.toThrow();
    expect(() => context.deliver('5.2.there', ['a', 'b'], 'a', text('n'))).not.toThrow();
    expect(fine.texts()).toEqual(['m', 'n']);
    expect(errors.map((e) => e.message)).toEqual(['broken transport', 'broken transport']);
  });

  it('counts malformed messages and reports them', async () => {
    const { registry, context, errors } = await setup();
    context.malformed(new Error('not an envelope'));
    expect(registry.stats().broker.malformed).toBe(1);
    expect(errors.map((e) => e.message)).toEqual(['not an envelope']);
  });
});

describe('publish outcomes', () => {
  it('counts confirmed, failed (known not sent) and unconfirmed (sent, not confirmed) apart', async () => {
    const { registry, broker, errors, transport } = await setup();
    transport.open(['a']);
    const outcomes: (() => Promise<void>)[] = [
      () => Promise.resolve(),
      () => Promise.reject(new Error('not connected; publish not sent')),
      () => Promise.reject(new UnconfirmedPublishError('sent, not confirmed')),
      () => {
        throw new Error('thrown');
      },
    ];
    for (const outcome of outcomes) {
      broker.publish = outcome;
      registry.publish('a', 'x');
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(registry.stats().broker).toMatchObject({ published: 1, failed: 2, unconfirmed: 1 });
    expect(errors).toHaveLength(3);
    expect(registry.stats().delivered).toBe(4); // local delivery never depends on the broker
  });
});
