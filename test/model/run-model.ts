/**
 * The model-based test's runner, in a process of its own so that a step that never returns (a synchronous
 * spin inside a publish) is caught by the parent's watchdog instead of hanging the suite.
 * Usage: node --import tsx test/model/run-model.ts
 * Environment: FANOUT_SEED (replay a seed), FANOUT_PATH and FANOUT_REPLAY_PATH (replay a shrunk case: fast-check
 * prints all three on failure), FANOUT_RUNS (number of runs, default 80), FANOUT_COMMANDS (steps per run,
 * default 40).
 * Prints one `step` line per step on stderr (the parent's watchdog resets on each) and the result on stdout.
 */
import fc from 'fast-check';
import { commandArbitraries, type Model } from './commands.js';
import { World, type Config } from './world.js';

const env = process.env;
const intOf = (name: string, fallback: number): number => {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new TypeError(`${name} must be an integer; got ${value}`);
  return n;
};
const seed = intOf('FANOUT_SEED', Date.now() ^ (Math.random() * 0x100000000));
const numRuns = intOf('FANOUT_RUNS', 80);
const maxCommands = intOf('FANOUT_COMMANDS', 40);
const path = env['FANOUT_PATH'] || undefined;
const replayPath = env['FANOUT_REPLAY_PATH'] || undefined;
process.stdout.write(`model: seed ${seed}, ${numRuns} runs of up to ${maxCommands} steps\n`);

let steps = 0;
const started = Date.now();
const property = fc.asyncProperty(
  fc.record<Config>({ policy: fc.constantFrom('drop' as const, 'close' as const) }),
  fc.commands(commandArbitraries, { maxCommands, replayPath, size: 'max' }),
  async (config, commands) => {
    const world = await World.start(config);
    try {
      const tracked = [...commands].map((command) => {
        const run = command.run.bind(command);
        command.run = async (m: Model, r: World) => {
          process.stderr.write(`step ${++steps}: ${command.toString()}\n`);
          await run(m, r);
        };
        return command;
      });
      await fc.asyncModelRun(() => ({ model: { world }, real: world }), tracked);
    } finally {
      await world.dispose();
    }
  },
);
const details = await fc.check(property, {
  seed,
  numRuns,
  ...(path === undefined ? {} : { path, endOnFailure: true }),
  // Shrinking runs real sockets: bound it, keeping what was found so far.
  plugins: [fc.interruptAfterTimeLimit(180_000, { failOnInterrupt: true })],
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (details.failed) {
  process.stdout.write(`${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}\n`);
  process.stdout.write(
    `model: FAILED after ${steps} steps in ${seconds} s. Replay: FANOUT_SEED=${details.seed}` +
      ` FANOUT_PATH=${JSON.stringify(details.counterexamplePath ?? '')} (and FANOUT_REPLAY_PATH from the` +
      ` counterexample's replayPath above) node --import tsx test/model/run-model.ts\n`,
  );
  process.exitCode = 1;
} else {
  process.stdout.write(
    `model: ${details.numRuns} runs, ${steps} steps passed in ${seconds} s (seed ${seed}); ` +
      `${JSON.stringify(World.totals)}\n`,
  );
}
