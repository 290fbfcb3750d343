import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Leftovers, upgradeStatus } from './support/ws-server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

/** The first ```js block under a README heading, exactly as written there. */
function readmeBlock(heading: string): string {
  const readme = readFileSync(`${root}/README.md`, 'utf8');
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start).toBeGreaterThan(-1);
  const match = /```js\n([\s\S]*?)```/.exec(readme.slice(start));
  expect(match).not.toBeNull();
  return (match as RegExpExecArray)[1] as string;
}

// Runs against the built package (npm test builds first), resolved through the package's own exports.
it('the README quick start runs as written', async () => {
  mkdirSync(`${root}/test/.tmp`, { recursive: true });
  const file = `${root}/test/.tmp/readme-quickstart.mjs`;
  writeFileSync(file, readmeBlock('Quick start'));
  const child = spawn(process.execPath, [file], { env: { ...process.env, PORT: '0' }, stdio: 'pipe' });
  leftovers.add(() => void child.kill());
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening: (ws:\/\/\S+)/.exec(output);
      if (m) resolve(m[1] as string);
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('exit', (code) => reject(new Error(`quick start exited with ${code}: ${output}`)));
  });
  expect(await upgradeStatus(url.replace('token=secret', 'token=wrong'))).toBe(401);
  const ws = new WebSocket(url);
  leftovers.add(() => ws.terminate());
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve((data as Buffer).toString()));
    ws.once('error', reject);
  });
  expect(JSON.parse(first)).toEqual({ level: 'critical', text: 'zone 3' });
  expect(output).toMatch(/open [0-9a-f-]{36} \[ 'track-people' \]/);
});
