/**
 * Run by the suite in a child process: starts a transport, connects clients, closes the registry and the
 * server, prints what the clients saw, and then must exit by itself. A handle left open keeps it alive and the
 * suite fails. Usage: node --import tsx test/transports/child-close.ts <ws|uws>
 */
import { WebSocket } from 'ws';
import type { TransportUnderTest } from './harness.js';

const name = process.argv[2];
const harness: TransportUnderTest =
  name === 'ws' ? (await import('./ws-harness.js')).wsHarness : (await import('./uws-harness.js')).uwsHarness;
if (harness.name !== name) throw new Error(`unknown transport ${String(name)}`);

const started = await harness.start({ transport: { heartbeat: { interval: 1000, timeout: 1000 } } });
const clients = await Promise.all(
  Array.from(
    { length: 5 },
    () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`${started.url}/leak`);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      }),
  ),
);
const received = Promise.all(
  clients.map((ws) => new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))),
);
const closed = Promise.all(
  clients.map((ws) => new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))),
);
started.registry.publish('leak', 'hello');
const messages = await received;
await started.registry.close();
const codes = await closed;
await started.close();
process.stdout.write(JSON.stringify({ messages, codes, sessions: started.registry.count() }) + '\n');
// No process.exit(): the parent checks that the process ends on its own.
