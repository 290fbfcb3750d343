import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

// A process that opened a server, sessions and heartbeats must exit on its own once registry.close() and
// server.close() are done: any handle left open (a timer, a socket, a listener) would keep it alive.
const script = `
import http from 'node:http';
import { WebSocket } from 'ws';
import { SessionRegistry } from 'fanout';
import { wsTransport } from 'fanout/transports/ws';

const registry = new SessionRegistry();
const server = http.createServer();
wsTransport(registry, { server, heartbeat: { interval: 50, timeout: 5000 } });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = 'ws://127.0.0.1:' + server.address().port + '/news';
const clients = await Promise.all(Array.from({ length: 20 }, () => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.once('open', () => resolve(ws));
  ws.once('error', reject);
})));
const codes = clients.map((ws) => new Promise((r) => ws.once('close', (code) => r(code))));
registry.publish('news', { hello: 'world' });
await registry.close();
await new Promise((r) => server.close(r));
console.log('close codes', [...new Set(await Promise.all(codes))].join(','));
`;

it('after registry.close() and server.close() the process exits by itself', async () => {
  mkdirSync(`${root}/test/.tmp`, { recursive: true });
  const file = `${root}/test/.tmp/shutdown.mjs`;
  writeFileSync(file, script);
  const child = spawn(process.execPath, [file], { stdio: 'pipe' });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    child.on('exit', (c, s) => r([c, s])),
  );
  clearTimeout(killer);
  expect({ code, signal, output: output.trim() }).toEqual({
    code: 0,
    signal: null,
    output: 'close codes 1001',
  });
});
