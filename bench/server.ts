/**
 * The server process (forked by the harness): runs one target and publishes on command. It publishes only
 * what it is told (a burst of M messages in a shape, or a fixed rate for some seconds) and reports when, so
 * the load generator's receive times can be set against the first publish.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { UNAVAILABLE, makePayload, type ServerCommand, type ServerReply } from './protocol.js';
import { TargetUnavailable, startTarget, type RunningTarget } from './targets.js';

if (process.send === undefined) throw new Error('bench/server.ts is started by bench/harness.ts over IPC');
const send = (m: ServerReply): void => void process.send?.(m);
let target: RunningTarget | null = null;

process.on('disconnect', () => process.exit(0));
process.on('message', (cmd: ServerCommand) => {
  void handle(cmd).catch((err: unknown) =>
    send({
      op: 'error',
      message:
        (err instanceof TargetUnavailable ? UNAVAILABLE : '') +
        (err instanceof Error ? err.message : String(err)),
    }),
  );
});

function running(): RunningTarget {
  if (target === null) throw new Error('no target started');
  return target;
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  collect?.();
  collect?.();
}

function published(
  id: number,
  count: number,
  firstNs: bigint,
  lastNs: bigint,
  lagNs: bigint,
  cpu: NodeJS.CpuUsage,
) {
  const t = running();
  const stats = t.stats?.();
  send({
    op: 'published',
    id,
    count,
    firstNs,
    lastNs,
    lagNs,
    cpuUs: cpu.user + cpu.system,
    rss: process.memoryUsage.rss(),
    ...(stats === undefined
      ? {}
      : {
          stats: {
            delivered: stats.delivered,
            dropped: stats.dropped,
            closedForBackpressure: stats.closedForBackpressure,
            held: stats.held,
            conflated: stats.conflated,
          },
        }),
  });
}

async function handle(cmd: ServerCommand): Promise<void> {
  switch (cmd.op) {
    case 'start': {
      target = await startTarget(cmd.target, cmd.backpressure);
      send({
        op: 'started',
        port: target.port,
        path: target.path,
        client: target.client,
        native: target.native,
      });
      break;
    }
    case 'count':
      send({ op: 'count', sessions: running().count() });
      break;
    case 'cpu': {
      const c = process.cpuUsage();
      send({ op: 'cpu', us: c.user + c.system });
      break;
    }
    case 'mem': {
      gc();
      const m = process.memoryUsage();
      send({
        op: 'mem',
        rss: m.rss,
        heapUsed: m.heapUsed,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
      });
      break;
    }
    case 'burst': {
      const t = running();
      const perTurn = cmd.shape === 'turn10' ? 10 : 1;
      const cpu0 = process.cpuUsage();
      let seq = cmd.firstSeq;
      const end = cmd.firstSeq + cmd.messages;
      const firstNs = process.hrtime.bigint();
      let lastNs = firstNs;
      while (seq < end) {
        for (let k = 0; k < perTurn && seq < end; k++) {
          lastNs = process.hrtime.bigint();
          t.publish(makePayload(seq++, cmd.size, lastNs));
        }
        await nextTurn();
      }
      published(cmd.id, cmd.messages, firstNs, lastNs, 0n, process.cpuUsage(cpu0));
      break;
    }
    case 'rate': {
      const t = running();
      const total = Math.max(1, Math.round(cmd.rate * cmd.seconds));
      const periodNs = 1e9 / cmd.rate;
      const cpu0 = process.cpuUsage();
      const startNs = process.hrtime.bigint();
      let k = 0;
      let lagNs = 0n;
      let lastNs = startNs;
      // Publishes every message that is due, then sleeps until the next one: at high rates several go out per
      // timer turn, as a real event source would batch them. Steady: one per turn, the next one (when it is due
      // already) in the next turn, as from a timer per message or one broker message per socket read.
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = process.hrtime.bigint();
          let sent = 0;
          while (k < total) {
            const due = startNs + BigInt(Math.round(k * periodNs));
            if (due > now) break;
            // Steady: one publish per turn, as from a timer or a broker message; a late one waits a turn.
            if (cmd.steady === true && sent > 0) break;
            sent++;
            lastNs = process.hrtime.bigint();
            lagNs = lastNs - due;
            const seq = cmd.firstSeq + k;
            const payload = makePayload(seq, cmd.size, lastNs);
            if (cmd.keys === undefined) t.publish(payload);
            else t.publish(payload, `k${seq % cmd.keys}`);
            k++;
          }
          if (k >= total) return resolve();
          const due = startNs + BigInt(Math.round(k * periodNs));
          const waitMs = Number(due - process.hrtime.bigint()) / 1e6;
          if (waitMs >= 1) setTimeout(tick, Math.floor(waitMs));
          else setImmediate(tick);
        };
        tick();
      });
      published(cmd.id, total, startNs, lastNs, lagNs, process.cpuUsage(cpu0));
      break;
    }
    case 'stop': {
      const t = target;
      target = null;
      await Promise.race([t?.close(), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
      process.exit(0);
    }
  }
}
