/** The bench's command line: every knob has a default, a quick run needs none. */
import os from 'node:os';
import { DEFAULT_TARGETS, SHAPES, TARGETS, type Shape, type Target } from './protocol.js';

export const SCENARIOS = ['burst', 'latency', 'memory', 'capacity', 'steady', 'isolation', 'micro'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface BenchOptions {
  targets: Target[];
  sessions: number[];
  sizes: number[];
  shapes: Shape[];
  scenarios: Scenario[];
  /** Runs of each burst; the best valid one is reported. */
  repeat: number;
  /** Messages per burst; 0 = from `deliveries` (N x M close to it). */
  messages: number;
  deliveries: number;
  /** Latency scenario: publishes per second, seconds, sessions (0 = the largest of `sessions`). */
  rate: number;
  seconds: number;
  latencySessions: number;
  /** Capacity search. */
  capacitySessions: number;
  capacitySize: number;
  p99: number;
  capacitySeconds: number;
  /** Steady-rate capacity search (one publish per turn): sessions. */
  steadySessions: number;
  /** Slow-consumer isolation. */
  isolationSessions: number;
  isolationSize: number;
  isolationRate: number;
  isolationSeconds: number;
  stalled: number;
  /** Keys of the conflation case of the slow-consumer scenario. */
  keys: number;
  limit: number;
  /** Load-generator threads in all. */
  workers: number;
  out: string;
  /** A previous run's JSON to compare with (before/after a change). */
  baseline: string | null;
  quiet: boolean;
}

export const HELP = `npm run bench -- [options]        (or: npx tsx bench/run.ts [options])

  --full                   every scenario, both sizes, more sessions (several minutes)
  --targets LIST           ${TARGETS.join(',')}   (default: ${DEFAULT_TARGETS.join(',')})
  --sessions LIST          sessions per burst (default 1000,10000; at most ~19,500: 20,000 fds per process)
  --sizes LIST             payload bytes (default 1024; --full: 64,1024)
  --shapes LIST            ${SHAPES.join(',')} (default both)
  --scenarios LIST         ${SCENARIOS.join(',')}
                           (default burst,latency,memory; --full: all)
  --messages M             messages per burst (default: about --deliveries / sessions)
  --deliveries D           deliveries per burst when --messages is not given (default 300000; --full: 400000)
  --repeat K               runs of each burst, the best valid one is reported (default 3; --full: 2)
  --rate R --seconds S     latency scenario: R publishes/s for S seconds (default 10, 3)
  --latency-sessions N     sessions for the latency scenario (default 10000 when in --sessions, else the largest)
  --capacity-sessions N    capacity search sessions (default 1000)
  --capacity-size B        capacity search payload (default 1024)
  --p99 MS                 capacity search p99 target (default 100)
  --steady-sessions N      steady scenario: the capacity search with one publish per event-loop turn
                           (a timer tick each), at N sessions (default 10000)
  --isolation-sessions N   slow-consumer scenario sessions (default 1000)
  --isolation-size B       its payload (default 16384), --isolation-rate R (default 50/s),
  --isolation-seconds S    (default 8): a stalled socket first fills ~4 MB of kernel buffers
  --stalled F              share of stalled sessions (default 0.05)
  --limit BYTES            backpressure limit in the slow-consumer scenario (default 262144)
  --keys K                 its conflation case publishes with key: K keys in rotation (default 16)
  --workers W              load-generator threads in all (default: CPU count)
  --out DIR                where results go (default bench/results)
  --baseline FILE          a previous run's .json: prints before -> after for every burst cell both ran
  --quiet                  no progress line
  --help`;

function list<T extends string>(value: string, allowed: readonly T[], name: string): T[] {
  const out = value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
  for (const v of out) {
    if (!allowed.includes(v as T))
      throw new TypeError(`--${name}: unknown "${v}" (one of ${allowed.join(', ')})`);
  }
  if (out.length === 0) throw new TypeError(`--${name} needs at least one value`);
  return out as T[];
}

function ints(value: string, name: string, min: number, max: number): number[] {
  return value.split(',').map((v) => int(v, name, min, max));
}

function int(value: string | undefined, name: string, min: number, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isInteger(n))
    throw new TypeError(`--${name} must be an integer; got ${value}`);
  if (n < min || n > max) throw new RangeError(`--${name} must be between ${min} and ${max}; got ${n}`);
  return n;
}

function num(value: string | undefined, name: string, min: number, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n))
    throw new TypeError(`--${name} must be a number; got ${value}`);
  if (n < min || n > max) throw new RangeError(`--${name} must be between ${min} and ${max}; got ${n}`);
  return n;
}

/** Parses argv; throws TypeError/RangeError naming the option. Returns null for --help. */
export function parseOptions(argv: readonly string[], maxSessions: number): BenchOptions | null {
  const full = argv.includes('--full');
  const o: BenchOptions = {
    targets: [...DEFAULT_TARGETS],
    sessions: full ? [1000, 5000, 10000, Math.min(19_000, maxSessions)] : [1000, 10000],
    sizes: full ? [64, 1024] : [1024],
    shapes: [...SHAPES],
    scenarios: full ? [...SCENARIOS] : ['burst', 'latency', 'memory'],
    repeat: full ? 2 : 3,
    messages: 0,
    deliveries: full ? 400_000 : 300_000,
    rate: 10,
    seconds: 3,
    latencySessions: 0,
    capacitySessions: 1000,
    capacitySize: 1024,
    p99: 100,
    capacitySeconds: 2,
    steadySessions: Math.min(10_000, maxSessions),
    isolationSessions: 1000,
    isolationSize: 16 * 1024,
    isolationRate: 50,
    isolationSeconds: 8,
    stalled: 0.05,
    keys: 16,
    limit: 256 * 1024,
    workers: Math.max(1, os.availableParallelism()),
    out: 'bench/results',
    baseline: null,
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new TypeError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--help':
      case '-h':
        return null;
      case '--full':
        break;
      case '--quiet':
        o.quiet = true;
        break;
      case '--targets':
        o.targets = list(value(), TARGETS, 'targets');
        break;
      case '--sessions':
        o.sessions = ints(value(), 'sessions', 1, maxSessions);
        break;
      case '--sizes':
        o.sizes = ints(value(), 'sizes', 64, 1024 * 1024);
        break;
      case '--shapes':
        o.shapes = list(value(), SHAPES, 'shapes');
        break;
      case '--scenarios':
        o.scenarios = list(value(), SCENARIOS, 'scenarios');
        break;
      case '--messages':
        o.messages = int(value(), 'messages', 1, 1_000_000);
        break;
      case '--repeat':
        o.repeat = int(value(), 'repeat', 1, 20);
        break;
      case '--deliveries':
        o.deliveries = int(value(), 'deliveries', 1, 100_000_000);
        break;
      case '--rate':
        o.rate = num(value(), 'rate', 0.1, 100_000);
        break;
      case '--seconds':
        o.seconds = num(value(), 'seconds', 0.1, 60);
        break;
      case '--latency-sessions':
        o.latencySessions = int(value(), 'latency-sessions', 1, maxSessions);
        break;
      case '--capacity-sessions':
        o.capacitySessions = int(value(), 'capacity-sessions', 1, maxSessions);
        break;
      case '--capacity-size':
        o.capacitySize = int(value(), 'capacity-size', 64, 1024 * 1024);
        break;
      case '--steady-sessions':
        o.steadySessions = int(value(), 'steady-sessions', 1, maxSessions);
        break;
      case '--p99':
        o.p99 = num(value(), 'p99', 1, 60_000);
        break;
      case '--isolation-sessions':
        o.isolationSessions = int(value(), 'isolation-sessions', 20, maxSessions);
        break;
      case '--isolation-size':
        o.isolationSize = int(value(), 'isolation-size', 64, 1024 * 1024);
        break;
      case '--isolation-rate':
        o.isolationRate = num(value(), 'isolation-rate', 0.1, 100_000);
        break;
      case '--isolation-seconds':
        o.isolationSeconds = num(value(), 'isolation-seconds', 0.1, 60);
        break;
      case '--stalled':
        o.stalled = num(value(), 'stalled', 0.001, 0.5);
        break;
      case '--keys':
        o.keys = int(value(), 'keys', 1, 100_000);
        break;
      case '--limit':
        o.limit = int(value(), 'limit', 1024, 1024 ** 3);
        break;
      case '--workers':
        o.workers = int(value(), 'workers', 1, 64);
        break;
      case '--out':
        o.out = value();
        break;
      case '--baseline':
        o.baseline = value();
        break;
      default:
        throw new TypeError(`unknown option ${flag} (see --help)`);
    }
  }
  return o;
}

/** Messages per burst for N sessions: N x M close to the delivery budget, a multiple of 10, 10..10,000. */
export function messagesFor(o: BenchOptions, sessions: number): number {
  if (o.messages > 0) return o.messages;
  return Math.min(10_000, Math.max(10, Math.round(o.deliveries / sessions / 10) * 10));
}
