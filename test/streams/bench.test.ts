import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

// The recovery bench checks every client's replay itself (each must get exactly the missed messages, then
// `rec`) and exits non-zero otherwise; here with small numbers, on both transports and with each history.
it('bench:recovery recovers every client with exactly what it missed', async () => {
  for (const [transport, history] of [
    ['ws', 'memory'],
    ['uws', 'memory'],
    ['ws', 'redis'],
    ['uws', 'nats'],
  ] as const) {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/recovery.ts',
        '--clients',
        '30',
        '--missed',
        '20',
        '--size',
        '64',
        '--repeat',
        '1',
        '--transport',
        transport,
        '--history',
        history,
      ],
      { cwd: root, stdio: 'pipe' },
    );
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(killer);
    expect({ code, transport, history }, output).toEqual({ code: 0, transport, history });
    expect(output).toMatch(
      new RegExp(`30 clients x 20 missed messages of 64 B, ${transport} transport, ${history} history`),
    );
    expect(output).toMatch(/best: \d+ ms for all 30 to be recovered/);
  }
}, 120_000);
