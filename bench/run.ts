/**
 * `npm run bench`: fan-out benchmarks over real loopback sockets, fanout's transports beside the controls
 * (naive ws loop, raw uWS publish, Socket.IO), all in one run. See bench/README.md.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { burstChart } from './chart.js';
import { checkGoals } from './goals.js';
import { cpuModel, openFileLimit } from './harness.js';
import { runMicro } from './micro.js';
import { HELP, parseOptions } from './options.js';
import { killAllChildren, liveChildren } from './proc.js';
import { comparison, consoleSummary, markdown, type Results } from './report.js';
import { mdTable, textTable } from './format.js';
import { runSocketScenarios } from './scenarios.js';

async function main(): Promise<number> {
  const fdLimit = openFileLimit();
  // One server process holds every session plus a few fds of its own.
  const maxSessions = Math.max(1, fdLimit - 500);
  let o;
  try {
    o = parseOptions(process.argv.slice(2), maxSessions);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let baseline: Results | null = null;
  if (o.baseline !== null) {
    try {
      baseline = JSON.parse(await readFile(o.baseline, 'utf8')) as Results;
      if (!Array.isArray(baseline.burst)) throw new Error('no "burst" results in it');
    } catch (err) {
      process.stderr.write(`--baseline ${o.baseline}: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const started = Date.now();
  const tty = process.stderr.isTTY === true && !o.quiet;
  const progress = (text: string): void => {
    if (o.quiet) return;
    const line = `[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}`;
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(`${line}\n`);
  };

  const socket = await runSocketScenarios(o, progress);
  const micro = o.scenarios.includes('micro') ? await runMicro(1, (name) => progress(`micro: ${name}`)) : [];
  if (tty) process.stderr.write('\r\x1b[2K');

  const results: Results = {
    ...socket,
    micro,
    goals: checkGoals(socket),
    machine: {
      nproc: os.availableParallelism(),
      cpu: cpuModel(),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
      openFileLimit: fdLimit,
    },
    command: ['tsx bench/run.ts', ...process.argv.slice(2)].join(' '),
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
  };

  await mkdir(o.out, { recursive: true });
  const stamp = results.startedAt.replace(/[:.]/g, '-');
  const base = path.join(o.out, `bench-${stamp}`);
  const chart = results.burst.length > 0 ? `${path.basename(base)}.svg` : null;
  await writeFile(`${base}.json`, JSON.stringify(results, null, 2));
  if (chart !== null) await writeFile(`${base}.svg`, burstChart(results.burst));
  const compared = baseline === null ? null : comparison(results, baseline);
  const before = `Compared with ${o.baseline ?? ''} (${baseline?.startedAt ?? ''})`;
  await writeFile(
    `${base}.md`,
    markdown(results, chart) + (compared === null ? '' : `\n## ${before}\n\n${mdTable(...compared)}\n`),
  );
  process.stdout.write(`${consoleSummary(results)}\n`);
  if (compared !== null) process.stdout.write(`\n${before}\n${textTable(...compared)}\n`);
  process.stdout.write(`\nWrote ${base}.json, ${base}.md${chart === null ? '' : `, ${base}.svg`}\n`);
  process.stdout.write(
    `Took ${((Date.now() - started) / 1000).toFixed(0)} s on ${results.machine.nproc} CPU (${results.machine.cpu}).\n`,
  );
  const refused = results.skipped.filter((s) => s.refused);
  if (refused.length > 0) {
    process.stderr.write(
      `bench failed: ${refused.map((s) => s.target).join(', ')} refused (not the native uWS binary)\n`,
    );
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    if (liveChildren() > 0) killAllChildren();
    process.exit(code);
  },
  (err: unknown) => {
    killAllChildren();
    process.stderr.write(
      `\nbench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
