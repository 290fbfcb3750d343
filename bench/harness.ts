/**
 * The measuring side: starts a server process and load-generator processes, connects N clients, runs bursts
 * and fixed-rate runs, and turns the raw counts into results. Everything is bounded by timeouts; every run is
 * checked for loss, reorder and a saturated load generator.
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { percentiles, type Percentiles } from './histogram.js';
import { mergeResults } from './merge.js';
import { Proc } from './proc.js';
import type {
  BackpressureSpec,
  ClientKind,
  LoadCommand,
  LoadReply,
  RunResult,
  ServerCommand,
  ServerReply,
  Shape,
  Target,
} from './protocol.js';

/** A worker whose event loop is busier than this during a run is the bottleneck: the run is invalid. */
export const SATURATED_ELU = 0.9;
/** Clients per load-generator process: each needs one fd, and the limit is per process. */
export const CLIENTS_PER_PROCESS = 10_000;
/** Clients per loopback source address (the ephemeral port range is ~28k per address pair). */
export const CLIENTS_PER_ADDRESS = 25_000;

export type ServerProc = Proc<ServerCommand, ServerReply>;
export type LoadProc = Proc<LoadCommand, LoadReply>;

/** The open-file limit of processes started from here. */
export function openFileLimit(): number {
  try {
    return Number(execSync('ulimit -n', { shell: '/bin/sh', encoding: 'utf8' }).trim()) || 1024;
  } catch {
    return 1024;
  }
}

/** Busy CPU time of the whole machine so far, in microseconds (Linux /proc/stat), or null elsewhere. */
export function machineBusyUs(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: everything but idle and iowait, in USER_HZ (1/100 s).
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return Number.isFinite(busy) && f.length >= 8 ? busy * 10_000 : null;
  } catch {
    return null;
  }
}

/** CPU used during one run, each in microseconds over the same wall-clock window. */
export interface CpuWindow {
  wallUs: number;
  serverUs: number;
  /** Busy time of the whole machine, or null where /proc/stat is not there. */
  machineUs: number | null;
  /** This runner's own CPU. */
  runnerUs: number;
}

export interface MemSample {
  rss: number;
  heapUsed: number;
  external: number;
}

export class Server {
  readonly target: Target;
  readonly proc: ServerProc;
  port = 0;
  path = '';
  client: ClientKind = 'ws';
  native: boolean | undefined;
  #seq = 1;
  #id = 1;

  constructor(target: Target) {
    this.target = target;
    this.proc = new Proc(`server(${target})`, './server.ts', [], ['--expose-gc']);
  }

  async start(backpressure: BackpressureSpec): Promise<void> {
    const r = await this.proc.request({ op: 'start', target: this.target, backpressure }, 'started', 20_000);
    this.port = r.port;
    this.path = r.path;
    this.client = r.client;
    this.native = r.native;
  }

  nextSeq(count: number): number {
    const s = this.#seq;
    this.#seq += count;
    return s;
  }

  nextId(): number {
    return this.#id++;
  }

  async count(): Promise<number> {
    return (await this.proc.request({ op: 'count' }, 'count', 10_000)).sessions;
  }

  async cpu(): Promise<number> {
    return (await this.proc.request({ op: 'cpu' }, 'cpu', 10_000)).us;
  }

  async mem(): Promise<MemSample> {
    const m = await this.proc.request({ op: 'mem' }, 'mem', 10_000);
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
  }

  /** Waits (polling, bounded) until the server counts `n` sessions in the channel. */
  async waitCount(n: number, timeoutMs: number): Promise<number> {
    const end = Date.now() + timeoutMs;
    let c = await this.count();
    while (c !== n && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      c = await this.count();
    }
    return c;
  }

  stop(): Promise<void> {
    return this.proc.stop({ op: 'stop' });
  }
}

/** N clients spread over load-generator processes and their worker threads. */
export class Clients {
  readonly n: number;
  readonly procs: LoadProc[] = [];
  readonly workers: number;

  constructor(n: number, workers: number) {
    this.n = n;
    const p = Math.max(1, Math.ceil(n / CLIENTS_PER_PROCESS));
    this.workers = Math.max(1, Math.floor(workers / p));
    for (let i = 0; i < p; i++)
      this.procs.push(new Proc(`loadgen#${i}`, './loadgen.ts', [String(this.workers)]));
  }

  async connect(server: Server, timeoutMs: number): Promise<void> {
    const per = Math.ceil(this.n / this.procs.length);
    const replies = await Promise.all(
      this.procs.map((p, i) => {
        const first = i * per;
        const count = Math.max(0, Math.min(this.n, first + per) - first);
        return p.request(
          {
            op: 'connect',
            spec: {
              port: server.port,
              path: server.path,
              client: server.client,
              first,
              count,
              perAddress: CLIENTS_PER_ADDRESS,
              concurrency: 128,
              timeoutMs,
            },
          },
          'connected',
          timeoutMs + 5000,
        );
      }),
    );
    const failed = replies.reduce((a, r) => a + r.failed, 0);
    if (failed > 0) {
      const why = replies.find((r) => r.error !== undefined)?.error ?? 'unknown';
      throw new Error(`${failed} of ${this.n} clients could not connect to ${server.target}: ${why}`);
    }
    const counted = await server.waitCount(this.n, 10_000);
    if (counted !== this.n)
      throw new Error(`${server.target} counts ${counted} sessions, expected ${this.n}`);
  }

  async run(
    server: Server,
    messages: number,
    stalled: readonly number[],
    publish: (id: number, firstSeq: number) => ServerCommand,
    timeoutMs: number,
  ): Promise<{
    load: RunResult;
    server: Extract<ServerReply, { op: 'published' }>;
    timedOut: boolean;
    cpu: CpuWindow;
  }> {
    const id = server.nextId();
    const firstSeq = server.nextSeq(messages);
    await Promise.all(
      this.procs.map((p) =>
        p.request({ op: 'arm', spec: { id, firstSeq, messages, stalled } }, 'armed', 10_000),
      ),
    );
    const serverCpu0 = await server.cpu();
    const machine0 = machineBusyUs();
    const runner0 = process.cpuUsage();
    const wall0 = process.hrtime.bigint();
    const complete = Promise.all(this.procs.map((p) => p.wait('complete', timeoutMs, (m) => m.id === id)));
    // The publish side is bounded by its own schedule; a slow server gets extra time to finish it.
    const pub = server.proc.request(publish(id, firstSeq), 'published', timeoutMs + 60_000);
    // Keep the rejection observed while the publish side is awaited.
    const completed = complete.then(
      () => false,
      (err: Error) => {
        if (/within/.test(err.message)) return true;
        throw err;
      },
    );
    completed.catch(() => {});
    const published = await pub;
    const timedOut = await completed;
    const parts = await Promise.all(
      this.procs.map((p) => p.request({ op: 'collect', id }, 'result', 10_000).then((r) => r.result)),
    );
    const serverCpu1 = await server.cpu();
    const machine1 = machineBusyUs();
    const runner = process.cpuUsage(runner0);
    const cpu: CpuWindow = {
      wallUs: Number(process.hrtime.bigint() - wall0) / 1000,
      serverUs: serverCpu1 - serverCpu0,
      machineUs: machine0 === null || machine1 === null ? null : machine1 - machine0,
      runnerUs: runner.user + runner.system,
    };
    return { load: mergeResults(id, parts), server: published, timedOut, cpu };
  }

  async releaseStalled(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.request({ op: 'release-stalled' }, 'released', 10_000)));
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop({ op: 'stop' }, 5000)));
  }
}

/** What one burst or fixed-rate run measured, and whether it can be trusted. */
export interface Measured {
  sessions: number;
  messages: number;
  size: number;
  expected: number;
  received: number;
  /** N x M / (first publish -> last message received by the last client). */
  deliveriesPerSec: number;
  elapsedMs: number;
  latency: Percentiles;
  /** CPU cores (1 = one core busy) used by the load generators, the server and everything else on the machine
   * (other programs: a figure taken while they were busy is noisy), over the run's window. */
  loadgenCores: number;
  serverCores: number;
  otherCores: number | null;
  loadgenMaxElu: number;
  serverRss: number;
  /** How late the server's last publish was behind schedule (fixed rate), ms. */
  publishLagMs: number;
  valid: boolean;
  problems: string[];
  fanoutStats?: {
    delivered: number;
    dropped: number;
    closedForBackpressure: number;
    held: number;
    conflated: number;
  };
  stalledReceived: number;
}

export function judge(
  n: number,
  healthy: number,
  messages: number,
  size: number,
  r: Awaited<ReturnType<Clients['run']>>,
): Measured {
  const { load, server } = r;
  const expected = healthy * messages;
  const problems: string[] = [];
  if (r.timedOut) problems.push('timed out before every client had every message');
  if (load.received < expected) problems.push(`lost ${expected - load.received} of ${expected} deliveries`);
  if (load.received > expected) problems.push(`${load.received - expected} unexpected extra deliveries`);
  if (load.disordered > 0) problems.push(`${load.disordered} clients saw a gap or reorder`);
  if (load.closed > 0) problems.push(`${load.closed} healthy clients were disconnected`);
  // Over a few milliseconds any loop looks busy: saturation is judged on windows of 100 ms and more.
  if (load.maxElu > SATURATED_ELU && load.wallNs >= 100e6) {
    problems.push(`load generator saturated (event-loop ${(load.maxElu * 100).toFixed(0)}% busy)`);
  }
  const elapsedNs = load.lastRecvNs - Number(server.firstNs);
  const wallUs = Math.max(1, r.cpu.wallUs);
  const others =
    r.cpu.machineUs === null
      ? null
      : Math.max(0, r.cpu.machineUs - r.cpu.serverUs - load.cpuUs - r.cpu.runnerUs) / wallUs;
  return {
    sessions: n,
    messages,
    size,
    expected,
    received: load.received,
    deliveriesPerSec: elapsedNs > 0 ? (load.received / elapsedNs) * 1e9 : 0,
    elapsedMs: elapsedNs / 1e6,
    latency: percentiles(load.hist),
    loadgenCores: load.cpuUs / wallUs,
    serverCores: r.cpu.serverUs / wallUs,
    otherCores: others,
    loadgenMaxElu: load.maxElu,
    serverRss: server.rss,
    publishLagMs: Number(server.lagNs) / 1e6,
    valid: problems.length === 0,
    problems,
    ...(server.stats === undefined ? {} : { fanoutStats: server.stats }),
    stalledReceived: load.stalledReceived,
  };
}

/** Bound for one run: generous, never endless. */
function runTimeout(deliveries: number, seconds = 0): number {
  return Math.min(180_000, 15_000 + seconds * 1000 + deliveries / 10);
}

export async function burst(
  server: Server,
  clients: Clients,
  messages: number,
  size: number,
  shape: Shape,
): Promise<Measured> {
  const r = await clients.run(
    server,
    messages,
    [],
    (id, firstSeq) => ({ op: 'burst', id, firstSeq, messages, size, shape }),
    runTimeout(clients.n * messages),
  );
  return judge(clients.n, clients.n, messages, size, r);
}

export interface RateMeasured extends Measured {
  rate: number;
  seconds: number;
  /** The server published on schedule and every healthy client had everything within a second after. */
  sustained: boolean;
}

export async function fixedRate(
  server: Server,
  clients: Clients,
  rate: number,
  seconds: number,
  size: number,
  stalled: readonly number[] = [],
  timeoutMs?: number,
  keys?: number,
  steady = false,
): Promise<RateMeasured> {
  const messages = Math.max(1, Math.round(rate * seconds));
  const r = await clients.run(
    server,
    messages,
    stalled,
    (id, firstSeq) => ({
      op: 'rate',
      id,
      firstSeq,
      rate,
      seconds,
      size,
      ...(keys ? { keys } : {}),
      ...(steady ? { steady } : {}),
    }),
    timeoutMs ?? runTimeout((clients.n - stalled.length) * messages, seconds),
  );
  const m = judge(clients.n, clients.n - stalled.length, messages, size, r);
  const drainMs = (r.load.lastRecvNs - Number(r.server.lastNs)) / 1e6;
  // On schedule: the last publish at most one period (or 100 ms) late, and delivered within a second.
  const sustained = m.valid && m.publishLagMs <= Math.max(100, 1000 / rate) && drainMs < 1000;
  if (!sustained && m.valid) {
    m.problems.push(
      `rate not sustained (last publish ${m.publishLagMs.toFixed(0)} ms late, last receive ${drainMs.toFixed(0)} ms after it)`,
    );
  }
  return { ...m, rate, seconds, sustained };
}

export function cpuModel(): string {
  return os.cpus()[0]?.model ?? 'unknown';
}
