/**
 * The targets, checked against the figures of one run: every verdict says by how much a target is met
 * or missed, and a verdict resting on an invalid run says so instead of judging.
 */
import type { SocketResults } from './scenarios.js';
import { SHAPE_LABELS, type Shape, type Target } from './protocol.js';
import { bytes, int, ratio } from './format.js';

export interface Verdict {
  goal: string;
  where: string;
  value: string;
  /** met / missed / not judged (an invalid run or a missing figure). */
  status: 'met' | 'missed' | 'not judged';
  by: string;
}

interface RatioGoal {
  subject: Target;
  control: Target;
  shape: Shape;
  min: number;
}

const RATIO_GOALS: RatioGoal[] = [
  { subject: 'ws', control: 'ws-naive', shape: 'turn1', min: 1.2 },
  { subject: 'ws', control: 'ws-naive', shape: 'turn10', min: 5 },
  { subject: 'uws', control: 'uws-raw', shape: 'turn1', min: 0.95 },
  { subject: 'uws', control: 'uws-raw', shape: 'turn10', min: 0.95 },
  { subject: 'ws', control: 'socketio', shape: 'turn1', min: 2 },
  { subject: 'ws', control: 'socketio', shape: 'turn10', min: 2 },
  { subject: 'uws', control: 'socketio', shape: 'turn1', min: 2 },
  { subject: 'uws', control: 'socketio', shape: 'turn10', min: 2 },
  // Issue 9: a stream channel (envelope + history write) costs at most 10% of a raw channel's deliveries/s.
  { subject: 'ws-stream', control: 'ws', shape: 'turn1', min: 0.9 },
  { subject: 'ws-stream', control: 'ws', shape: 'turn10', min: 0.9 },
  { subject: 'uws-stream', control: 'uws', shape: 'turn1', min: 0.9 },
  { subject: 'uws-stream', control: 'uws', shape: 'turn10', min: 0.9 },
  // Issue 10: binding the Prometheus metrics costs a publish at most a few percent.
  { subject: 'ws-metrics', control: 'ws', shape: 'turn1', min: 0.97 },
  { subject: 'ws-metrics', control: 'ws', shape: 'turn10', min: 0.97 },
  { subject: 'uws-metrics', control: 'uws', shape: 'turn1', min: 0.97 },
  { subject: 'uws-metrics', control: 'uws', shape: 'turn10', min: 0.97 },
];

function atLeast(value: number, min: number): Pick<Verdict, 'status' | 'by'> {
  const pct = ((value - min) / min) * 100;
  const abs = Math.abs(pct);
  const shown = abs < 10 ? abs.toFixed(1) : abs.toFixed(0);
  return value >= min
    ? { status: 'met', by: `+${shown}% over` }
    : { status: 'missed', by: `short by ${shown}%` };
}

export function checkGoals(r: SocketResults): Verdict[] {
  const out: Verdict[] = [];
  const cells = new Set(r.burst.map((b) => `${b.sessions}|${b.size}`));
  for (const cell of [...cells].sort()) {
    const [n, size] = cell.split('|').map(Number) as [number, number];
    for (const g of RATIO_GOALS) {
      const find = (t: Target) =>
        r.burst.find((b) => b.target === t && b.sessions === n && b.size === size && b.shape === g.shape);
      const a = find(g.subject);
      const c = find(g.control);
      if (a === undefined || c === undefined) continue;
      const v = a.m.deliveriesPerSec / c.m.deliveriesPerSec;
      const goal = `${g.subject} >= ${g.min}x ${g.control}`;
      const where = `${int(n)} sessions, ${int(size)} B, ${SHAPE_LABELS[g.shape]}`;
      if (!a.m.valid || !c.m.valid)
        out.push({ goal, where, value: ratio(v), status: 'not judged', by: 'invalid run' });
      else out.push({ goal, where, value: ratio(v), ...atLeast(v, g.min) });
    }
  }
  const lat = (t: Target) => r.latency.find((l) => l.target === t);
  const u = lat('uws');
  const raw = lat('uws-raw');
  if (u !== undefined && raw !== undefined) {
    const v = u.m.latency.p99 / raw.m.latency.p99;
    const goal = 'uws p99 <= 1.1x raw uWS p99';
    const where = `${int(u.m.sessions)} sessions at ${u.m.rate}/s`;
    if (!u.m.valid || !raw.m.valid)
      out.push({ goal, where, value: ratio(v), status: 'not judged', by: 'invalid run' });
    else {
      const pct = ((v - 1.1) / 1.1) * 100;
      out.push({
        goal,
        where,
        value: ratio(v),
        status: v <= 1.1 ? 'met' : 'missed',
        by: v <= 1.1 ? `${(-pct).toFixed(0)}% under` : `over by ${pct.toFixed(0)}%`,
      });
    }
  }
  for (const [subject, control] of [
    ['ws', 'ws-naive'],
    ['uws', 'uws-raw'],
  ] as const) {
    const sizes = r.memory.filter((m) => m.target === subject).map((m) => m.sessions);
    for (const n of sizes) {
      const a = r.memory.find((m) => m.target === subject && m.sessions === n);
      const c = r.memory.find((m) => m.target === control && m.sessions === n);
      if (a === undefined || c === undefined) continue;
      const extra = a.heapPerSession - c.heapPerSession;
      out.push({
        goal: `registry adds <= 300 B per idle session (${subject} - ${control}, JS heap)`,
        where: `${int(n)} idle sessions`,
        value: bytes(extra),
        status: extra <= 300 ? 'met' : 'missed',
        by: extra <= 300 ? `${(300 - extra).toFixed(0)} B under` : `over by ${(extra - 300).toFixed(0)} B`,
      });
    }
  }
  return out;
}
