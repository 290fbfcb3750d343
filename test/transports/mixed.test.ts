/**
 * One registry holding sessions of both transports at once: a ws server and a uWS app side by side.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import uWS from 'uWebSockets.js';
import { afterEach, expect, it } from 'vitest';
import { SessionRegistry, type Session } from '../../src/index.js';
import { assertNativeUws, uwsTransport } from '../../transports/uws.js';
import { wsTransport } from '../../transports/ws.js';
import { connect, Leftovers, within } from './clients.js';
import { listenUws } from './uws-harness.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

async function startBoth() {
  assertNativeUws(uWS);
  const registry = new SessionRegistry();
  const errors: Error[] = [];
  registry.on('error', (err) => errors.push(err));
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  wsTransport(registry, { server });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const app = uWS.App();
  uwsTransport(registry, { app });
  const { socket: listenSocket, port: uwsPort } = await listenUws(app);
  leftovers.add(async () => {
    await registry.close();
    uWS.us_listen_socket_close(listenSocket);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    registry,
    errors,
    wsUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    uwsUrl: `ws://127.0.0.1:${uwsPort}`,
  };
}

it('one registry with ws and uWS sessions: a publish reaches both, except and unions hold, close() closes both with 1001', async () => {
  const { registry, errors, wsUrl, uwsUrl } = await startBoth();
  const byTransport = new Map<string, Session[]>();
  registry.on('open', (s) => byTransport.set(s.transport, [...(byTransport.get(s.transport) ?? []), s]));
  const w1 = await connect(leftovers, `${wsUrl}/alarms`);
  const w2 = await connect(leftovers, `${wsUrl}/other`);
  const u1 = await connect(leftovers, `${uwsUrl}/alarms`);
  const u2 = await connect(leftovers, `${uwsUrl}/other`);
  expect(byTransport.get('ws')).toHaveLength(2);
  expect(byTransport.get('uws')).toHaveLength(2);
  expect(registry.count('alarms')).toBe(2);
  const [ws1, ws2] = byTransport.get('ws') as Session[];
  const [us1, us2] = byTransport.get('uws') as Session[];
  registry.subscribe(us2 as Session, 'alarms'); // u2 in both channels
  registry.subscribe(ws2 as Session, 'alarms'); // w2 in both channels

  registry.publish('alarms', { level: 'critical' });
  registry.publish('alarms', 'not-u1', { except: us1 as Session });
  registry.publish('alarms', 'not-w1', { except: ws1 as Session });
  registry.publish(['alarms', 'other'], 'union');
  registry.publish('other', 'end');

  await w1.received(3);
  await w2.received(5);
  await u1.received(3);
  await u2.received(5);
  expect(w1.messages).toEqual(['{"level":"critical"}', 'not-u1', 'union']);
  expect(w2.messages).toEqual(['{"level":"critical"}', 'not-u1', 'not-w1', 'union', 'end']);
  expect(u1.messages).toEqual(['{"level":"critical"}', 'not-w1', 'union']);
  expect(u2.messages).toEqual(['{"level":"critical"}', 'not-u1', 'not-w1', 'union', 'end']);
  expect(registry.stats()).toMatchObject({ published: 5, delivered: 16, dropped: 0 });

  const codes: [string, number][] = [];
  registry.on('close', (s, code) => codes.push([s.transport, code]));
  await registry.close();
  expect(codes.sort()).toEqual([
    ['uws', 1001],
    ['uws', 1001],
    ['ws', 1001],
    ['ws', 1001],
  ]);
  const seen = await within(Promise.all([w1, w2, u1, u2].map((c) => c.closed)), 5000, 'clients closed');
  expect(seen.map((c) => c.code)).toEqual([1001, 1001, 1001, 1001]);
  expect(errors).toEqual([]);
});
