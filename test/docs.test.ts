import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { blocks, type Block } from './support/markdown.js';
import { Leftovers, upgradeStatus } from './support/ws-server.js';

// Every ```js block of README.md and docs/*.md, run as written (npm test builds first; `fanout` resolves through
// the package's own exports to dist/). A block is a complete program: it starts what it needs on port 0
// (PORT=0 here), checks what it shows with node:assert, shuts down what it started and exits 0 by itself.
// The README's servers that run until stopped are the exceptions listed in `interactive` below: each is driven
// from outside as a user would (connect, receive, stop). Blocks are found per file, so a new block in docs/ is
// run without touching this file.
const root = fileURLToPath(new URL('..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** How long a self-contained block may take to exit by itself (the convention in CONTRIBUTING.md). */
const BLOCK_LIMIT_MS = 20_000;
/** Fence languages allowed in the docs: js is run; the others are shell, output, data or the Java of "Why". */
const LANGUAGES = new Set(['js', 'sh', 'text', 'json', 'java']);

const files = [
  'README.md',
  ...readdirSync(`${root}/docs`)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(name: string, code: string, env: Record<string, string> = {}): Running {
  mkdirSync(`${root}/test/.tmp`, { recursive: true });
  const file = `${root}/test/.tmp/docs-${name.replace(/[^a-z0-9]+/gi, '-')}.mjs`;
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, PORT: '0', ...env },
    stdio: 'pipe',
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  leftovers.add(() => void child.kill('SIGKILL'));
  return { child, output: () => output, exited };
}

/** Starts a block in its own process and resolves with the first match of `ready` in its output. */
async function run(name: string, code: string, ready: RegExp, env: Record<string, string> = {}) {
  const running = start(name, code, env);
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const look = () => {
      const m = ready.exec(running.output());
      if (m) resolve(m);
    };
    running.child.stdout?.on('data', look);
    running.child.stderr?.on('data', look);
    void running.exited.then((c) => reject(new Error(`${name} exited with ${c}: ${running.output()}`)));
  });
  return { match, running };
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

/** Two copies of a broker block as two nodes: a publish on node a reaches a client of node b. */
async function twoNodes(name: string, code: string): Promise<void> {
  const nodes = await Promise.all(
    ['a', 'b'].map((n) => run(`${name}-${n}`, code, /node listening on (\d+)/)),
  );
  const [a, b] = nodes.map((n) => Number(n.match[1]));
  const { message } = await firstMessage(`ws://127.0.0.1:${b}/alarms/zone-7`);
  // The subscription of node b reaches the broker asynchronously: publish on node a until b delivers.
  let received: string | undefined;
  void message.then((m) => (received = m));
  for (let i = 0; i < 50 && received === undefined; i++) {
    const res = await fetch(`http://127.0.0.1:${a}/publish/zone-7`, { method: 'POST', body: 'zone 7 alarm' });
    expect(res.status).toBe(202);
    await Promise.race([message, new Promise((r) => setTimeout(r, 100))]);
  }
  expect(received).toBe('zone 7 alarm');
  for (const node of nodes) node.running.child.kill('SIGTERM');
  expect(await Promise.all(nodes.map((n) => n.running.exited))).toEqual([0, 0]);
}

/** Blocks that serve until stopped, by `file#heading`, each driven as a user would. */
const interactive: Record<string, (block: Block) => Promise<void>> = {
  'README.md#Quick start': async (block) => {
    const { match, running } = await run('quickstart', block.code, /listening: (ws:\/\/\S+)/);
    const url = match[1] as string;
    expect(await upgradeStatus(url.replace('token=secret', 'token=wrong'))).toBe(401);
    const { message } = await firstMessage(url);
    expect(JSON.parse(await message)).toEqual({ level: 'critical', text: 'zone 3' });
    expect(running.output()).toMatch(/open [0-9a-f]{32} \[ 'track-people' \]/);
  },
  'README.md#With uWebSockets.js': async (block) => {
    const { match, running } = await run('uws-quickstart', block.code, /listening: (ws:\/\/\S+)/);
    const { ws, message } = await firstMessage(match[1] as string);
    expect(JSON.parse(await message)).toEqual({ level: 'critical', text: 'zone 3' });
    const closed = new Promise<number>((r) => ws.once('close', (c) => r(c)));
    running.child.kill('SIGINT');
    expect(await closed).toBe(1001);
    expect(await running.exited).toBe(0);
  },
  'docs/brokers.md#Redis (ioredis)': (block) => twoNodes('redis', block.code),
  'docs/brokers.md#NATS (@nats-io/transport-node v3)': (block) => twoNodes('nats', block.code),
};

const all = files.flatMap(blocks);
const js = all.filter((b) => b.lang === 'js');

describe('the docs', () => {
  it('use only known fence languages (code that should run goes in ```js)', () => {
    const unknown = all.filter((b) => !LANGUAGES.has(b.lang)).map((b) => `${b.file}:${b.line} "${b.lang}"`);
    expect(unknown).toEqual([]);
  });

  it('have each interactive block exactly once', () => {
    for (const key of Object.keys(interactive)) {
      expect(js.filter((b) => `${b.file}#${b.heading}` === key).length, key).toBe(1);
    }
  });
});

for (const file of files) {
  const here = js.filter((b) => b.file === file);
  if (here.length === 0) continue;
  describe(`${file}: every js block runs as written`, () => {
    for (const block of here) {
      const key = `${block.file}#${block.heading}`;
      const drive = interactive[key];
      it(`line ${block.line} (${block.heading})`, async () => {
        if (drive) return drive(block);
        const running = start(`${file}-${block.line}`, block.code);
        const timer = setTimeout(() => running.child.kill('SIGKILL'), BLOCK_LIMIT_MS);
        const code = await running.exited;
        clearTimeout(timer);
        expect(
          code,
          `${file}:${block.line} exited with ${code} (killed after ${BLOCK_LIMIT_MS} ms if null):\n${running.output()}`,
        ).toBe(0);
      });
    }
  });
}
