import { afterEach, describe, expect, it } from 'vitest';
import { connect as connectClient } from '../transports/clients.js';
import { uwsHarness } from '../transports/uws-harness.js';
import { wsHarness } from '../transports/ws-harness.js';
import { Leftovers, run, startNode } from './helpers.js';
import { engines, idle } from './own.js';
import type { TestBroker } from './suite.js';

// Issue 8, defect 11: a broker that resumes hands the node its whole backlog at once; a healthy client that
// reads as fast as it can must get all of it, on either transport.
for (const engine of engines) {
  describe(`${engine.name} broker: the backlog of a paused server`, () => {
    const leftovers = new Leftovers();
    afterEach(() => leftovers.dispose());

    it('the backlog released on resume reaches fast clients on ws and uWS in full, nobody closed', async () => {
      const own = await engine.start(leftovers);
      const a = await startNode(leftovers, `A-${run}`, await own.broker({ timeout: 5000 }));
      const receivers = [];
      for (const harness of [wsHarness, uwsHarness]) {
        const started = await harness.start({
          registry: { broker: await own.broker({ timeout: 5000 }), nodeId: `${harness.name}-${run}` },
          transport: { path: '/s', authenticate: () => ({ channels: ['burst'] }), heartbeat: false },
        });
        leftovers.add(() => started.close());
        const client = await connectClient(leftovers, `${started.url}/s`);
        receivers.push({ name: harness.name, registry: started.registry, client });
        await (started.registry.options.broker as TestBroker).idle();
      }
      await idle(a);

      own.server.pause();
      leftovers.add(() => own.server.resume());
      // 4 MiB: on NATS this failed every run before the ws early hand-off (closed with 1013 after 1,100-3,000).
      const N = 4000;
      const pad = 'y'.repeat(1000);
      for (let i = 0; i < N; i++) a.registry.publish('burst', `${String(i).padStart(4, '0')}:${pad}`);
      expect(a.registry.stats().broker).toMatchObject({ failed: 0, pending: N });
      own.server.resume();

      for (const { name, registry, client } of receivers) {
        const got = await client.received(N, 15_000).catch((err: Error) => {
          throw new Error(
            `${name}: ${err.message}; ${JSON.stringify(registry.stats())} ${JSON.stringify(a.registry.stats().broker)}`,
          );
        });
        expect(
          got.map((m) => m.slice(0, 4)),
          name,
        ).toEqual(Array.from({ length: N }, (_, i) => String(i).padStart(4, '0')));
        expect(registry.stats(), name).toMatchObject({
          sessions: 1,
          dropped: 0,
          closedForBackpressure: 0,
          delivered: N,
        });
      }
    });
  });
}
