import { afterEach, describe, expect, it } from 'vitest';
import { Leftovers, connect, eventually, run, startNode } from './helpers.js';
import { engines, errors, idle, turn } from './own.js';

for (const engine of engines) {
  describe(`${engine.name} broker: a hung server (a private ${engine.name} server behind a stalled proxy)`, () => {
    const leftovers = new Leftovers();
    afterEach(() => leftovers.dispose());

    it('publishes made during the pause arrive late and in order, and count as unconfirmed, not failed', async () => {
      const own = await engine.start(leftovers);
      const a = await startNode(leftovers, `A-${run}`, await own.broker({ timeout: 200 }));
      const b = await startNode(leftovers, `B-${run}`, await own.broker({ timeout: 200 }));
      const onB = await connect(leftovers, b, ['p']);
      await idle(a, b);
      a.registry.publish('p', 'before');
      await onB.until((m) => m.includes('before'), '"before" on B');
      await eventually(() => a.registry.stats().broker.published === 1, 'the confirmation of "before"');

      own.server.pause();
      leftovers.add(() => own.server.resume());
      const N = 20;
      const late = Array.from({ length: N }, (_, i) => `late:${i}`);
      const timedOut = errors(a.registry, /not confirmed/, N);
      for (const text of late) a.registry.publish('p', text);
      await timedOut;
      expect(a.registry.stats().broker).toMatchObject({
        published: 1,
        failed: 0,
        unconfirmed: N,
        pending: N,
      });
      expect(onB.messages).toEqual(['before']);

      own.server.resume();
      await onB.until((m) => m.length === N + 1, `the ${N} late messages on B`);
      expect(onB.messages).toEqual(['before', ...late]);
      await eventually(() => a.registry.stats().broker.pending === 0, 'the client letting go of them');
      expect(a.registry.stats().broker).toMatchObject({
        published: 1,
        failed: 0,
        unconfirmed: N,
        pendingBytes: 0,
      });
      a.registry.publish('p', 'after');
      await onB.until((m) => m.includes('after'), '"after" on B');
      await eventually(() => a.registry.stats().broker.published === 2, 'the confirmation of "after"');
      expect(b.registry.stats().broker).toMatchObject({ received: N + 2, failed: 0, unconfirmed: 0 });
    });

    it('what waits for the hung server is bounded (maxPending): past it a publish fails at once, never sent', async () => {
      const own = await engine.start(leftovers);
      const byCount = await startNode(
        leftovers,
        `count-${run}`,
        await own.broker({ timeout: 200, maxPending: { messages: 10 } }),
      );
      const byBytes = await startNode(
        leftovers,
        `bytes-${run}`,
        await own.broker({ timeout: 200, maxPending: { bytes: 4096 } }),
      );
      const b = await startNode(leftovers, `B-${run}`, await own.broker({ timeout: 200 }));
      const onB = await connect(leftovers, b, ['p']);
      await idle(byCount, byBytes, b);

      own.server.pause();
      leftovers.add(() => own.server.resume());
      const pad = 'x'.repeat(1024);
      for (let i = 0; i < 30; i++) {
        byCount.registry.publish('p', `count:${i}:${pad}`);
        byBytes.registry.publish('p', `bytes:${i}:${pad}`);
      }
      await turn();
      // 10 publishes (count bound) and 3 of about 1.05 KiB (4 KiB bound) wait; the others failed at once.
      expect(byCount.registry.stats().broker).toMatchObject({ failed: 20, pending: 10 });
      expect(byBytes.registry.stats().broker).toMatchObject({ failed: 27, pending: 3 });
      expect(byBytes.registry.stats().broker.pendingBytes).toBeLessThanOrEqual(4096);
      expect(byCount.errors.filter((e) => /maxPending/.test(e.message))).toHaveLength(20);

      // Past the timeout they are unconfirmed, but the client still holds them: the bound still applies.
      await eventually(() => byCount.registry.stats().broker.unconfirmed === 10, '10 unconfirmed');
      byCount.registry.publish('p', 'still-full');
      await turn();
      expect(byCount.registry.stats().broker).toMatchObject({ failed: 21, unconfirmed: 10, pending: 10 });

      own.server.resume();
      const sent = (prefix: string, n: number) =>
        Array.from({ length: n }, (_, i) => `${prefix}:${i}:${pad}`);
      await onB.until((m) => m.length === 13, 'the 13 publishes that were sent');
      await eventually(
        () => byCount.registry.stats().broker.pending + byBytes.registry.stats().broker.pending === 0,
        'nothing pending',
      );
      byCount.registry.publish('p', 'fence');
      await onB.until((m) => m.includes('fence'), 'the fence');
      // The ones that failed were never handed to the connection: they never arrive.
      expect(onB.messages.filter((m) => m.startsWith('count:'))).toEqual(sent('count', 10));
      expect(onB.messages.filter((m) => m.startsWith('bytes:'))).toEqual(sent('bytes', 3));
      expect(onB.messages).toHaveLength(14);
    });
  });
}
