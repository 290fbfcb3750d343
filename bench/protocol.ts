/**
 * What the bench processes say to each other, and the payload every target publishes.
 *
 * Payload layout (ASCII, JSON-safe so Socket.IO does not escape it): `#` + 10-digit sequence + `:` + 20-digit
 * `process.hrtime.bigint()` at publish + `:` + padding to the requested size. A client finds the `#` in the
 * first bytes of a frame (Socket.IO prefixes `42["m","`), reads the sequence and the publish time, and skips
 * the rest. `hrtime` is CLOCK_MONOTONIC, shared by every process on Linux, so publish -> receive is one
 * subtraction.
 */

/** Every target a server process can run: fanout's transports and the controls. */
export const TARGETS = [
  'ws',
  'uws',
  'ws-naive',
  'uws-raw',
  'socketio',
  'ws-stream',
  'uws-stream',
  'ws-metrics',
  'uws-metrics',
  'ws-window0',
  'ws-window20',
  'uws-window0',
  'uws-raw-held',
] as const;
export type Target = (typeof TARGETS)[number];
/**
 * What runs without `--targets`. The stream targets (the same transports with the channel declared a stream:
 * positions, envelope, in-memory history) are asked for by name, e.g. `--targets ws,ws-stream,uws,uws-stream`;
 * so are the metrics targets (the same transports with the Prometheus metrics bound): `--targets ws,ws-metrics`.
 */
export const DEFAULT_TARGETS: readonly Target[] = ['ws', 'uws', 'ws-naive', 'uws-raw', 'socketio'];

/** The controls: plain libraries (and the held raw uWS experiment) that fanout is measured against. */
export const CONTROL_TARGETS: readonly Target[] = ['ws-naive', 'uws-raw', 'socketio', 'uws-raw-held'];

/** fanout's own transports: every target that is not a control. */
export const FANOUT_TARGETS: readonly Target[] = TARGETS.filter((t) => !CONTROL_TARGETS.includes(t));

/** Human label of each target. */
export const LABELS: Record<Target, string> = {
  ws: 'fanout ws transport',
  uws: 'fanout uWS transport',
  'ws-naive': 'naive ws loop (control)',
  'uws-raw': 'raw uWS app.publish (control)',
  socketio: 'Socket.IO 4 io.to().emit (control)',
  'ws-stream': 'fanout ws transport, stream channel',
  'uws-stream': 'fanout uWS transport, stream channel',
  'ws-metrics': 'fanout ws transport, Prometheus metrics bound',
  'uws-metrics': 'fanout uWS transport, Prometheus metrics bound',
  'ws-window0': 'fanout ws transport, coalesceWindow 0 (within a turn only)',
  'ws-window20': 'fanout ws transport, coalesceWindow 20',
  'uws-window0': 'fanout uWS transport, coalesceWindow 0 (no holding across turns)',
  'uws-raw-held': 'raw uWS app.publish held across turns like coalesceWindow 5 (experiment)',
};

/** The wire protocol a load-generator client speaks to a target. */
export type ClientKind = 'ws' | 'sio';

export const CHANNEL = 'bench';
/** Prefix of a server error meaning: this target cannot run here (skipped, not failed). */
export const UNAVAILABLE = 'unavailable: ';
/** In the reason of a uWS target refused for running on the pure-JS fallback. */
export const NOT_NATIVE = 'not the native binary';
export const PAYLOAD_HEADER = 33; // '#' + 10 + ':' + 20 + ':'
export const MIN_PAYLOAD = 64;

export type Shape = 'turn1' | 'turn10';
export const SHAPES: readonly Shape[] = ['turn1', 'turn10'];
export const SHAPE_LABELS: Record<Shape, string> = {
  turn1: '1 publish/turn',
  turn10: '10 publishes/turn',
};

const PADS = new Map<number, string>();

/** The payload of message `seq`, `size` bytes long, stamped with the current monotonic time. */
export function makePayload(seq: number, size: number, now: bigint = process.hrtime.bigint()): string {
  let pad = PADS.get(size);
  if (pad === undefined) {
    pad = 'x'.repeat(Math.max(0, size - PAYLOAD_HEADER));
    PADS.set(size, pad);
  }
  return '#' + String(seq).padStart(10, '0') + ':' + String(now).padStart(20, '0') + ':' + pad;
}

/** Backpressure settings a server process applies to fanout transports (and, where it can, to controls). */
export interface BackpressureSpec {
  limit: number;
  policy: 'drop' | 'close';
}

/** parent -> server process */
export type ServerCommand =
  | { op: 'start'; target: Target; backpressure: BackpressureSpec }
  | { op: 'count' }
  | { op: 'mem' }
  | { op: 'cpu' }
  | { op: 'burst'; id: number; firstSeq: number; messages: number; size: number; shape: Shape }
  | {
      op: 'rate';
      id: number;
      firstSeq: number;
      rate: number;
      seconds: number;
      size: number;
      /** Publish with the conflation option `key`, rotating over this many keys (fanout targets). */
      keys?: number;
      /** At most one publish per event-loop turn (a timer tick, or the next turn when behind). */
      steady?: boolean;
    }
  | { op: 'stop' };

/** server process -> parent */
export type ServerReply =
  | { op: 'started'; port: number; path: string; client: ClientKind; native?: boolean }
  | { op: 'count'; sessions: number }
  /** CPU time of the server process since it started, in microseconds. */
  | { op: 'cpu'; us: number }
  | { op: 'mem'; rss: number; heapUsed: number; external: number; arrayBuffers: number }
  | {
      op: 'published';
      id: number;
      count: number;
      firstNs: bigint;
      lastNs: bigint;
      /** For a fixed rate: how late the last publish was behind its schedule, in ns. */
      lagNs: bigint;
      cpuUs: number;
      rss: number;
      /** fanout's registry counters, when the target is a fanout transport. */
      stats?: {
        delivered: number;
        dropped: number;
        closedForBackpressure: number;
        held: number;
        conflated: number;
      };
    }
  | { op: 'error'; message: string };

/** Which clients a worker owns and where they connect. */
export interface ConnectSpec {
  port: number;
  path: string;
  client: ClientKind;
  /** Global index of this worker's first client (decides the loopback source address). */
  first: number;
  count: number;
  /** Clients per loopback source address (127.0.0.1, 127.0.0.2, ...). */
  perAddress: number;
  /** Connections in flight at once. */
  concurrency: number;
  timeoutMs: number;
}

/** What every client should receive in one measured run. */
export interface ArmSpec {
  id: number;
  firstSeq: number;
  messages: number;
  /** Global client indices that stop reading (slow consumers) for this run. */
  stalled: readonly number[];
}

/** parent -> load-generator process -> worker */
export type LoadCommand =
  | { op: 'connect'; spec: ConnectSpec }
  | { op: 'arm'; spec: ArmSpec }
  | { op: 'collect'; id: number }
  | { op: 'release-stalled' }
  | { op: 'stop' };

/** One worker's (or one process's, merged) view of a run. */
export interface RunResult {
  id: number;
  clients: number;
  /** Clients (not stalled) that received every message in order. */
  complete: number;
  received: number;
  /** Received by stalled clients (not counted in `received`). */
  stalledReceived: number;
  /** Clients (not stalled) with a gap, duplicate or reorder. */
  disordered: number;
  /** Clients (not stalled) whose connection closed during the run. */
  closed: number;
  firstRecvNs: number;
  lastRecvNs: number;
  /** Latency histogram (see histogram.ts), healthy clients only. */
  hist: number[];
  /** Event-loop utilization of the busiest worker during the run, 0..1. */
  maxElu: number;
  /** CPU time of the load generator processes in the run, in microseconds. */
  cpuUs: number;
  wallNs: number;
}

export type LoadReply =
  | { op: 'ready'; workers: number }
  | { op: 'connected'; ok: number; failed: number; error?: string }
  | { op: 'armed' }
  | { op: 'complete'; id: number }
  | { op: 'result'; result: RunResult }
  | { op: 'released' }
  | { op: 'stopped' }
  | { op: 'error'; message: string };
