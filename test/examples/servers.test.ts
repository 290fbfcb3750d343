/**
 * examples/express and examples/uws, run as a user runs them (their own process, PORT=0): an alarm POSTed over
 * HTTP reaches a WebSocket client of that channel, bad input gets 400, stop with SIGTERM closes with 1001.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, Leftovers, upgradeStatus, within } from '../transports/clients.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

async function startExample(name: string) {
  const child = spawn(process.execPath, [`${root}/examples/${name}/server.js`], {
    env: { ...process.env, PORT: '0' },
    stdio: 'pipe',
  });
  leftovers.add(() => void child.kill('SIGKILL'));
  let output = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const url = await within(
    new Promise<string>((resolve, reject) => {
      const look = (chunk: Buffer) => {
        output += chunk.toString();
        const m = /listening on (http:\/\/\S+\/)/.exec(output);
        if (m) resolve(m[1] as string);
      };
      child.stdout.on('data', look);
      child.stderr.on('data', look);
      void exited.then((c) => reject(new Error(`${name} exited with ${c}: ${output}`)));
    }),
    15_000,
    `${name} to listen`,
  );
  return { url, stop: () => child.kill('SIGTERM'), exited: exited.then((code) => ({ code, output })) };
}

async function post(url: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe.each(['express', 'uws'])('examples/%s', (name) => {
  it('an alarm POSTed to a channel reaches its clients; SIGTERM closes them with 1001 and exits 0', async () => {
    const { url, stop, exited } = await startExample(name);
    const ws = url.replace('http', 'ws');
    expect(await upgradeStatus(`${ws}nowhere/at/all`)).toBe(404);
    const fire = await connect(leftovers, `${ws}alarms/fire`);
    const other = await connect(leftovers, `${ws}alarms/perimeter`);

    expect((await post(`${url}alarms/fire`, '{"level":"critical"}')).status).toBe(400);
    expect((await post(`${url}alarms/fire`, 'not json')).status).toBe(400);
    const answer = await post(`${url}alarms/fire`, JSON.stringify({ level: 'critical', text: 'zone 3' }));
    expect(answer.status).toBe(202);
    expect(answer.json['sessions']).toBe(1);

    const [message] = await fire.received(1);
    expect(JSON.parse(message as string)).toMatchObject({
      channel: 'fire',
      level: 'critical',
      text: 'zone 3',
    });
    const stats = (await (await fetch(`${url}stats`)).json()) as Record<string, number>;
    expect(stats['sessions']).toBe(2);
    expect(stats['delivered']).toBe(1);
    expect(other.messages).toEqual([]);

    stop();
    expect((await fire.closed).code).toBe(1001);
    expect((await other.closed).code).toBe(1001);
    const { code, output } = await within(exited, 15_000, `${name} to exit`);
    expect(code, output).toBe(0);
  });
});
