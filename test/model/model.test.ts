/**
 * The model-based randomized test (issue 8): random sequences of connect, close and terminate (client and
 * server side), subscribe, unsubscribe, publish (one channel, several, `except`), direct sends, stalls, resumes
 * and same-turn bursts against one registry with ws and uWS sessions over real sockets, checked against a
 * plain model after every step (see world.ts for the invariants).
 *
 * It runs in a child process (run-model.ts) watched here: a step that does not finish (even a synchronous spin
 * the child's own timers could never interrupt) is reported with the step it hung in. On failure the output
 * holds the seed, the path and the shrunk sequence; replay with
 *   FANOUT_SEED=<seed> FANOUT_PATH=<path> FANOUT_REPLAY_PATH=<replayPath> npx vitest run test/model
 * More runs: FANOUT_RUNS=500 npx vitest run test/model (or run run-model.ts directly, see its header).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const runner = fileURLToPath(new URL('./run-model.ts', import.meta.url));
/** The longest one step may take: far above a settle (10 s) plus a fill on a busy machine. */
const STEP_MS = 60_000;
const TOTAL_MS = 280_000;

it('the registry agrees with the reference model over random sequences of steps, on ws and uWS at once', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', runner], {
    env: process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let lastStep = '(none)';
  let killedFor: string | null = null;
  let watchdog: NodeJS.Timeout;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      killedFor = `no progress for ${STEP_MS} ms: a step did not finish; the last one started was ${lastStep}`;
      child.kill('SIGKILL');
    }, STEP_MS);
  };
  arm();
  const total = setTimeout(() => {
    killedFor = `the run took more than ${TOTAL_MS} ms; the last step started was ${lastStep}`;
    child.kill('SIGKILL');
  }, TOTAL_MS);
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    arm();
  });
  let partial = '';
  child.stderr.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('step ')) lastStep = line;
      else stdout += `${line}\n`;
    }
    arm();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(watchdog!);
  clearTimeout(total);
  const report = killedFor === null ? stdout : `${killedFor}\n${stdout}`;
  // The child prints its seed first: a failure always says how to replay it.
  expect(stdout).toMatch(/model: seed -?\d+/);
  expect(code, report).toBe(0);
  expect(stdout).toMatch(/model: \d+ runs, \d+ steps passed/);
  console.log(stdout.trim().split('\n').at(-1));
}, 300_000);
