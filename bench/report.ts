/** Turns one run's results into the console summary, the Markdown report and the JSON file. */
import type { Verdict } from './goals.js';
import type { MicroRow } from './micro.js';
import type { BurstRow, SocketResults } from './scenarios.js';
import { LABELS, SHAPE_LABELS, TARGETS, type Target } from './protocol.js';
import { bytes, int, mdTable, ms, rate, ratio, textTable } from './format.js';

export interface Machine {
  nproc: number;
  cpu: string;
  node: string;
  platform: string;
  memoryGiB: number;
  openFileLimit: number;
}

export interface Results extends SocketResults {
  machine: Machine;
  command: string;
  startedAt: string;
  durationMs: number;
  micro: MicroRow[];
  goals: Verdict[];
}

const RATIOS: [Target, Target][] = [
  ['ws', 'ws-naive'],
  ['ws', 'socketio'],
  ['uws', 'uws-raw'],
  ['uws', 'socketio'],
  ['ws-metrics', 'ws'],
  ['uws-metrics', 'uws'],
];

function burstPivot(rows: readonly BurstRow[]): { head: string[]; body: string[][] } {
  const targets = TARGETS.filter((t) => rows.some((r) => r.target === t));
  const ratios = RATIOS.filter(([a, b]) => targets.includes(a) && targets.includes(b));
  const keys = [...new Set(rows.map((r) => `${r.sessions}|${r.size}|${r.shape}`))];
  const body = keys.map((key) => {
    const [n, size, shape] = key.split('|') as [string, string, keyof typeof SHAPE_LABELS];
    const cell = (t: Target) =>
      rows.find(
        (r) => r.target === t && r.sessions === Number(n) && r.size === Number(size) && r.shape === shape,
      );
    return [
      `${int(Number(n))} x ${int(Number(size))} B, ${SHAPE_LABELS[shape]}`,
      ...targets.map((t) => {
        const c = cell(t);
        return c === undefined ? '-' : rate(c.m.deliveriesPerSec) + (c.m.valid ? '' : ' (!)');
      }),
      ...ratios.map(([a, b]) => {
        const x = cell(a);
        const y = cell(b);
        return x === undefined || y === undefined ? '-' : ratio(x.m.deliveriesPerSec / y.m.deliveriesPerSec);
      }),
    ];
  });
  return { head: ['deliveries/s', ...targets, ...ratios.map(([a, b]) => `${a}/${b}`)], body };
}

function verdictRows(goals: readonly Verdict[]): string[][] {
  return goals.map((g) => [g.goal, g.where, g.value, g.status, g.by]);
}

function invalid(r: Results): string[] {
  const out: string[] = [];
  for (const b of r.burst) {
    if (!b.m.valid) {
      const why = new Set([...b.m.problems, ...b.repeats.flatMap((x) => x.problems)]);
      out.push(`burst ${b.target} ${int(b.sessions)} x ${b.size} B ${b.shape}: ${[...why].join('; ')}`);
    }
  }
  for (const l of r.latency)
    if (!l.m.valid || !l.m.sustained) out.push(`latency ${l.target}: ${l.m.problems.join('; ')}`);
  return out;
}

/** The console summary: the pivot with ratios, the targets, what was invalid or skipped. */
export function consoleSummary(r: Results): string {
  const lines: string[] = [];
  if (r.burst.length > 0) {
    const p = burstPivot(r.burst);
    lines.push('Burst throughput, deliveries/s ((!) = invalid run)', textTable(p.head, p.body), '');
  }
  if (r.latency.length > 0) {
    lines.push(
      'Latency at a fixed rate (publish -> receive, ms)',
      textTable(
        ['target', 'sessions', 'rate/s', 'p50', 'p99', 'max', 'sustained'],
        r.latency.map((l) => [
          l.target,
          int(l.m.sessions),
          String(l.m.rate),
          ms(l.m.latency.p50),
          ms(l.m.latency.p99),
          ms(l.m.latency.max),
          l.m.sustained ? 'yes' : 'NO',
        ]),
      ),
      '',
    );
  }
  if (r.memory.length > 0) {
    lines.push(
      'Idle memory per session (server)',
      textTable(
        ['target', 'sessions', 'RSS/session', 'JS heap+external/session'],
        r.memory.map((m) => [m.target, int(m.sessions), bytes(m.rssPerSession), bytes(m.heapPerSession)]),
      ),
      '',
    );
  }
  if (r.capacity.length > 0) {
    lines.push(
      'Capacity (highest publish rate with p99 under target, nothing lost)',
      textTable(
        ['target', 'publishing', 'sessions', 'size', 'p99 target', 'publishes/s', 'deliveries/s'],
        r.capacity.map((c) => [
          c.target,
          c.steady === true ? '1 per turn' : 'due per tick',
          int(c.sessions),
          `${c.size} B`,
          `${c.p99Target} ms`,
          c.rate > 0 ? (c.loadgenLimited ? '>= ' : '') + int(c.rate) : 'none passed',
          rate(c.rate * c.sessions),
        ]),
      ),
      '',
    );
  }
  if (r.isolation.length > 0) lines.push('Slow consumers', textTable(...isolationTable(r)), '');
  if (r.micro.length > 0) lines.push('Registry micro-benchmarks', textTable(...microTable(r)), '');
  if (r.goals.length > 0) {
    lines.push('Targets', textTable(['goal', 'where', 'value', 'status', 'by'], verdictRows(r.goals)), '');
  }
  for (const s of r.skipped) lines.push(`${s.refused ? 'REFUSED' : 'SKIPPED'} ${s.target}: ${s.reason}`);
  for (const p of invalid(r)) lines.push(`INVALID ${p}`);
  return lines.join('\n');
}

function isolationTable(r: Results): [string[], string[][]] {
  return [
    [
      'target',
      'policy',
      'stalled',
      'healthy p50',
      'p99',
      'max',
      'healthy lost',
      'RSS before',
      'RSS after',
      'dropped',
      'closed (bp)',
      'held',
      'conflated',
    ],
    r.isolation.map((i) => [
      i.target,
      i.policy,
      `${i.stalled}/${int(i.sessions)}`,
      ms(i.m.latency.p50),
      ms(i.m.latency.p99),
      ms(i.m.latency.max),
      int(i.m.expected - i.m.received),
      bytes(i.rssBefore),
      bytes(i.m.serverRss),
      i.m.fanoutStats === undefined ? '-' : int(i.m.fanoutStats.dropped),
      i.m.fanoutStats === undefined ? '-' : int(i.m.fanoutStats.closedForBackpressure),
      i.m.fanoutStats?.held === undefined ? '-' : int(i.m.fanoutStats.held),
      i.m.fanoutStats?.conflated === undefined ? '-' : int(i.m.fanoutStats.conflated),
    ]),
  ];
}

function microTable(r: Results): [string[], string[][]] {
  return [
    ['case', 'ops/s', '+/-', 'deliveries/s'],
    r.micro.map((m) => [
      m.name,
      rate(m.opsPerSec),
      `${m.rme.toFixed(1)}%`,
      m.deliveriesPerSec === undefined ? '-' : rate(m.deliveriesPerSec),
    ]),
  ];
}

const CONTROL: Partial<Record<Target, Target>> = { ws: 'ws-naive', uws: 'uws-raw' };

/**
 * Before -> after for every burst cell both runs measured. Absolute figures move with the machine's load, so
 * the ratio to the control of the same run is shown too: it is the figure to compare across runs.
 */
export function comparison(now: Results, base: Results): [string[], string[][]] {
  const key = (b: BurstRow): string => `${b.target}|${b.sessions}|${b.size}|${b.shape}`;
  const index = (r: Results): Map<string, BurstRow> => new Map(r.burst.map((b) => [key(b), b]));
  const then = index(base);
  const current = index(now);
  const vsControl = (map: Map<string, BurstRow>, b: BurstRow): number => {
    const control = CONTROL[b.target];
    const c = control === undefined ? undefined : map.get(key({ ...b, target: control }));
    return c === undefined ? NaN : b.m.deliveriesPerSec / c.m.deliveriesPerSec;
  };
  const rows: string[][] = [];
  for (const b of now.burst) {
    const a = then.get(key(b));
    if (a === undefined) continue;
    const change = (b.m.deliveriesPerSec / a.m.deliveriesPerSec - 1) * 100;
    const control = CONTROL[b.target];
    rows.push([
      `${b.target} ${int(b.sessions)} x ${int(b.size)} B, ${SHAPE_LABELS[b.shape]}`,
      rate(a.m.deliveriesPerSec) + (a.m.valid ? '' : ' (!)'),
      rate(b.m.deliveriesPerSec) + (b.m.valid ? '' : ' (!)'),
      `${change >= 0 ? '+' : ''}${change.toFixed(0)}%`,
      control === undefined ? '-' : `${ratio(vsControl(then, a))} -> ${ratio(vsControl(current, b))}`,
    ]);
  }
  return [['cell', 'before', 'after', 'change', 'vs its control, before -> after'], rows];
}

export function markdown(r: Results, chartFile: string | null): string {
  const m = r.machine;
  const out: string[] = [
    `# fanout bench, ${r.startedAt}`,
    '',
    `Machine: ${m.nproc} CPU (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}, open-file limit ${int(m.openFileLimit)}.`,
    `Command: \`${r.command}\` (${(r.durationMs / 1000).toFixed(0)} s). Server, load generator and this runner share the machine:`,
    'compare figures within this run only.',
    '',
  ];
  if (r.burst.length > 0) {
    const p = burstPivot(r.burst);
    out.push(
      '## Burst throughput',
      '',
      'deliveries/s = N x M / (first publish -> last message received by the last client); (!) = invalid run.',
      '',
    );
    out.push(mdTable(p.head, p.body), '');
    if (chartFile !== null) out.push(`![deliveries/s versus sessions](${chartFile})`, '');
    out.push(
      mdTable(
        [
          'target',
          'sessions',
          'size',
          'shape',
          'messages',
          'deliveries/s',
          'each repeat',
          'elapsed ms',
          'p50 ms',
          'p99 ms',
          'server cores',
          'loadgen cores',
          'other load (cores)',
          'loadgen busiest loop',
          'valid',
        ],
        r.burst.map((b) => [
          LABELS[b.target],
          int(b.sessions),
          `${b.size} B`,
          SHAPE_LABELS[b.shape],
          int(b.m.messages),
          rate(b.m.deliveriesPerSec),
          b.repeats.map((x) => rate(x.deliveriesPerSec) + (x.valid ? '' : ' (!)')).join(', '),
          ms(b.m.elapsedMs),
          ms(b.m.latency.p50),
          ms(b.m.latency.p99),
          b.m.serverCores.toFixed(2),
          b.m.loadgenCores.toFixed(2),
          b.m.otherCores === null ? '-' : b.m.otherCores.toFixed(2),
          `${(b.m.loadgenMaxElu * 100).toFixed(0)}%`,
          b.m.valid ? 'yes' : `no: ${b.m.problems.join('; ')}`,
        ]),
      ),
      '',
    );
  }
  if (r.latency.length > 0) {
    out.push(
      '## Latency at a fixed rate',
      '',
      mdTable(
        ['target', 'sessions', 'size', 'rate/s', 'seconds', 'p50 ms', 'p99 ms', 'max ms', 'sustained'],
        r.latency.map((l) => [
          LABELS[l.target],
          int(l.m.sessions),
          `${l.m.size} B`,
          String(l.m.rate),
          String(l.m.seconds),
          ms(l.m.latency.p50),
          ms(l.m.latency.p99),
          ms(l.m.latency.max),
          l.m.sustained ? 'yes' : `no: ${l.m.problems.join('; ')}`,
        ]),
      ),
      '',
    );
  }
  if (r.capacity.length > 0) {
    out.push('## Capacity', '');
    for (const c of r.capacity) {
      out.push(
        `**${LABELS[c.target]}**, ${c.steady === true ? 'steady (1 publish per turn), ' : ''}` +
          `${int(c.sessions)} sessions, ${c.size} B, p99 target ${c.p99Target} ms: ` +
          (c.rate > 0
            ? `**${c.loadgenLimited ? 'at least ' : ''}${int(c.rate)} publishes/s** (${rate(c.rate * c.sessions)} deliveries/s)` +
              (c.loadgenLimited
                ? ': a faster step saturated the load generator, so this is a lower bound here.'
                : '.')
            : 'no rate passed.'),
        '',
        mdTable(
          ['rate/s', 'p99 ms', 'passed', 'why not'],
          c.steps.map((s) => [
            int(Math.round(s.rate)),
            ms(s.p99),
            s.ok ? 'yes' : 'no',
            s.problems.join('; '),
          ]),
        ),
        '',
      );
    }
  }
  if (r.memory.length > 0) {
    out.push(
      '## Idle memory',
      '',
      'Server RSS and JS heap (+ external) growth per connected idle session, after a forced GC.',
      '',
      mdTable(
        ['target', 'sessions', 'RSS/session', 'JS heap+external/session'],
        r.memory.map((x) => [
          LABELS[x.target],
          int(x.sessions),
          bytes(x.rssPerSession),
          bytes(x.heapPerSession),
        ]),
      ),
      '',
    );
  }
  if (r.isolation.length > 0) {
    out.push('## Slow-consumer isolation', '', mdTable(...isolationTable(r)), '');
  }
  if (r.micro.length > 0)
    out.push('## Registry micro-benchmarks (in-memory sessions)', '', mdTable(...microTable(r)), '');
  if (r.goals.length > 0) {
    out.push('## Targets', '', mdTable(['goal', 'where', 'value', 'status', 'by'], verdictRows(r.goals)), '');
  }
  const bad = invalid(r);
  if (bad.length > 0 || r.skipped.length > 0) {
    out.push('## Invalid or skipped', '');
    for (const s of r.skipped) out.push(`- skipped ${s.target}: ${s.reason}`);
    for (const p of bad) out.push(`- ${p}`);
    out.push('');
  }
  return out.join('\n');
}
