import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Leftovers, upgradeStatus } from './support/ws-server.js';

// The README's examples, run as written (npm test builds first; `fanout` resolves through the package's own
// exports to dist/). Each example takes PORT from the environment; here it is 0.
const root = fileURLToPath(new URL('..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** The first ```js block after the `nth` README heading line `heading` (exact text, any level). */
function readmeBlock(heading: string, nth = 1): string {
  const readme = readFileSync(`${root}/README.md`, 'utf8');
  const lines = [...readme.matchAll(/^#+ (.*)$/gm)].filter((m) => m[1] === heading);
  const start = lines[nth - 1]?.index ?? -1;
  expect(start, heading).toBeGreaterThan(-1);
  const match = /```js\n([\s\S]*?)```/.exec(readme.slice(start));
  expect(match).not.toBeNull();
  return (match as RegExpExecArray)[1] as string;
}

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Starts a README block in its own process and resolves with the first match of `ready` in its output. */
async function run(name: string, code: string, ready: RegExp, env: Record<string, string> = {}) {
  mkdirSync(`${root}/test/.tmp`, { recursive: true });
  const file = `${root}/test/.tmp/readme-${name}.mjs`;
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, PORT: '0', ...env },
    stdio: 'pipe',
  });
  let output = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  leftovers.add(() => void child.kill('SIGKILL'));
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const look = (chunk: Buffer) => {
      output += chunk.toString();
      const m = ready.exec(output);
      if (m) resolve(m);
    };
    child.stdout?.on('data', look);
    child.stderr?.on('data', look);
    void exited.then((c) => reject(new Error(`${name} exited with ${c}: ${output}`)));
  });
  return { match, running: { child, output: () => output, exited } satisfies Running };
}

function firstMessage(url: string): Promise<{ ws: WebSocket; message: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    leftovers.add(() => ws.terminate());
    const message = new Promise<string>((r) => ws.once('message', (d) => r((d as Buffer).toString())));
    ws.once('open', () => resolve({ ws, message }));
    ws.once('error', reject);
  });
}

describe('README examples run as written', () => {
  it('Quick start (ws)', async () => {
    const { match, running } = await run('quickstart', readmeBlock('Quick start'), /listening: (ws:\/\/\S+)/);
    const url = match[1] as string;
    expect(await upgradeStatus(url.replace('token=secret', 'token=wrong'))).toBe(401);
    const { message } = await firstMessage(url);
    expect(JSON.parse(await message)).toEqual({ level: 'critical', text: 'zone 3' });
    expect(running.output()).toMatch(/open [0-9a-f]{32} \[ 'track-people' \]/);
  });

  it('the uWebSockets.js quick start', async () => {
    const code = readmeBlock('Quick start', 2);
    const { match, running } = await run('uws-quickstart', code, /listening: (ws:\/\/\S+)/);
    const { ws, message } = await firstMessage(match[1] as string);
    expect(JSON.parse(await message)).toEqual({ level: 'critical', text: 'zone 3' });
    const closed = new Promise<number>((r) => ws.once('close', (c) => r(c)));
    running.child.kill('SIGINT');
    expect(await closed).toBe(1001);
    expect(await running.exited).toBe(0);
  });

  for (const heading of ['Redis (ioredis)', 'NATS (@nats-io/transport-node v3)']) {
    it(`two nodes through ${heading}`, async () => {
      const code = readmeBlock(heading);
      const nodes = await Promise.all(
        ['a', 'b'].map((n) => run(`${heading.split(' ')[0]}-${n}`, code, /node listening on (\d+)/)),
      );
      const [a, b] = nodes.map((n) => Number(n.match[1]));
      const { message } = await firstMessage(`ws://127.0.0.1:${b}/alarms/zone-7`);
      // The subscription of node b reaches the broker asynchronously: publish on node a until b delivers.
      let received: string | undefined;
      void message.then((m) => (received = m));
      for (let i = 0; i < 50 && received === undefined; i++) {
        const res = await fetch(`http://127.0.0.1:${a}/publish/zone-7`, {
          method: 'POST',
          body: 'zone 7 alarm',
        });
        expect(res.status).toBe(202);
        await Promise.race([message, new Promise((r) => setTimeout(r, 100))]);
      }
      expect(received).toBe('zone 7 alarm');
      for (const node of nodes) node.running.child.kill('SIGTERM');
      expect(await Promise.all(nodes.map((n) => n.running.exited))).toEqual([0, 0]);
    });
  }
});
