/**
 * A load-generator process (forked by the harness): runs `workers` threads of clients, forwards commands to
 * them and merges their answers. It measures its own CPU time per run so that the harness can tell a run
 * limited by the load generator from one limited by the server.
 */
import { Worker } from 'node:worker_threads';
import { mergeResults } from './merge.js';
import type { LoadCommand, LoadReply, RunResult } from './protocol.js';

if (process.send === undefined) throw new Error('bench/loadgen.ts is started by bench/harness.ts over IPC');
const send = (m: LoadReply): void => void process.send?.(m);
const workerCount = Math.max(1, Number(process.argv[2] ?? '1'));
const workers: Worker[] = [];
// Node 20 does not carry `--import tsx` into worker threads: the worker registers tsx itself, then loads the
// TypeScript entry.
const tsxApi = import.meta.resolve('tsx/esm/api');
const entry = new URL('./loadgen-worker.ts', import.meta.url).href;
const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
for (let i = 0; i < workerCount; i++) {
  const w = new Worker(boot, { eval: true });
  w.on('error', (err) => {
    send({ op: 'error', message: `load-generator worker: ${err.message}` });
    process.exit(1);
  });
  workers.push(w);
}

/** Sends `cmd` (or one command per worker) and resolves with each worker's first reply of kind `op`. */
function all<T extends LoadReply['op']>(
  cmds: LoadCommand | LoadCommand[],
  op: T,
): Promise<Extract<LoadReply, { op: T }>[]> {
  return Promise.all(
    workers.map(
      (w, i) =>
        new Promise<Extract<LoadReply, { op: T }>>((resolve) => {
          const on = (m: LoadReply): void => {
            if (m.op !== op) return;
            w.off('message', on);
            resolve(m as Extract<LoadReply, { op: T }>);
          };
          w.on('message', on);
          w.postMessage(Array.isArray(cmds) ? cmds[i] : cmds);
        }),
    ),
  );
}

let cpuAtArm = process.cpuUsage();
let completeId = -1;
let pendingComplete = 0;
for (const w of workers) {
  w.on('message', (m: LoadReply) => {
    if (m.op === 'complete' && m.id === completeId && --pendingComplete === 0)
      send({ op: 'complete', id: m.id });
  });
}

process.on('message', (cmd: LoadCommand) => {
  void handle(cmd).catch((err: unknown) => send({ op: 'error', message: String(err) }));
});
process.on('disconnect', () => process.exit(0));

async function handle(cmd: LoadCommand): Promise<void> {
  switch (cmd.op) {
    case 'connect': {
      const { spec } = cmd;
      const per = Math.ceil(spec.count / workers.length);
      const cmds: LoadCommand[] = workers.map((_, i) => {
        const first = Math.min(spec.count, i * per);
        const count = Math.max(0, Math.min(spec.count, first + per) - first);
        return { op: 'connect', spec: { ...spec, first: spec.first + first, count } };
      });
      const replies = await all(cmds, 'connected');
      const error = replies.find((r) => r.error !== undefined)?.error;
      send({
        op: 'connected',
        ok: replies.reduce((a, r) => a + r.ok, 0),
        failed: replies.reduce((a, r) => a + r.failed, 0),
        ...(error === undefined ? {} : { error }),
      });
      break;
    }
    case 'arm': {
      cpuAtArm = process.cpuUsage();
      completeId = cmd.spec.id;
      pendingComplete = workers.length;
      await all(cmd, 'armed');
      send({ op: 'armed' });
      break;
    }
    case 'collect': {
      const parts = (await all(cmd, 'result')).map((r) => r.result);
      const cpu = process.cpuUsage(cpuAtArm);
      const merged: RunResult = mergeResults(cmd.id, parts);
      merged.cpuUs = cpu.user + cpu.system;
      send({ op: 'result', result: merged });
      break;
    }
    case 'release-stalled':
      await all(cmd, 'released');
      send({ op: 'released' });
      break;
    case 'stop':
      await Promise.race([all(cmd, 'stopped'), new Promise((r) => setTimeout(r, 3000))]);
      await Promise.all(workers.map((w) => w.terminate()));
      process.exit(0);
  }
}
