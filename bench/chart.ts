/** An SVG chart: deliveries/s versus sessions, one line per target, one panel per shape. No dependencies. */
import type { BurstRow } from './scenarios.js';
import { LABELS, SHAPE_LABELS, TARGETS, type Shape } from './protocol.js';
import { int, rate } from './format.js';

const COLORS: Record<string, string> = {
  ws: '#1f77b4',
  uws: '#d62728',
  'ws-naive': '#7fb3e0',
  'uws-raw': '#f2a3a3',
  socketio: '#7f7f7f',
};

/** 1, 2 or 5 times a power of ten, at least `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function burstChart(rows: readonly BurstRow[]): string {
  const size = Math.max(...rows.map((r) => r.size));
  const data = rows.filter((r) => r.size === size);
  const shapes = [...new Set(data.map((r) => r.shape))] as Shape[];
  const sessions = [...new Set(data.map((r) => r.sessions))].sort((a, b) => a - b);
  const targets = TARGETS.filter((t) => data.some((r) => r.target === t));
  const W = 520;
  const H = 340;
  const pad = { l: 70, r: 20, t: 40, b: 50 };
  const legendH = 22 * targets.length + 10;
  const width = W * Math.max(1, shapes.length);
  const height = H + legendH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  shapes.forEach((shape, p) => {
    const x0 = p * W;
    const rowsOf = data.filter((r) => r.shape === shape);
    const step = niceStep(Math.max(1, ...rowsOf.map((r) => r.m.deliveriesPerSec)) / 4);
    const top = step * Math.ceil((Math.max(1, ...rowsOf.map((r) => r.m.deliveriesPerSec)) * 1.05) / step);
    const ticks = Math.round(top / step);
    const px = (n: number): number => {
      const i = sessions.indexOf(n);
      const span = W - pad.l - pad.r;
      return x0 + pad.l + (sessions.length === 1 ? span / 2 : (i / (sessions.length - 1)) * span);
    };
    const py = (v: number): number => pad.t + (1 - v / top) * (H - pad.t - pad.b);
    parts.push(
      `<text x="${x0 + W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(
        `Deliveries/s, ${SHAPE_LABELS[shape]}, ${int(size)} B`,
      )}</text>`,
    );
    for (let k = 0; k <= ticks; k++) {
      const v = step * k;
      const y = py(v);
      parts.push(`<line x1="${x0 + pad.l}" x2="${x0 + W - pad.r}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
      parts.push(
        `<text x="${x0 + pad.l - 6}" y="${y + 4}" text-anchor="end">${rate(v) === '-' ? '0' : rate(v)}</text>`,
      );
    }
    for (const n of sessions) {
      parts.push(`<text x="${px(n)}" y="${H - pad.b + 18}" text-anchor="middle">${int(n)}</text>`);
    }
    parts.push(`<text x="${x0 + W / 2}" y="${H - 10}" text-anchor="middle">sessions</text>`);
    for (const t of targets) {
      const pts = rowsOf.filter((r) => r.target === t).sort((a, b) => a.sessions - b.sessions);
      if (pts.length === 0) continue;
      const color = COLORS[t] ?? 'black';
      const dash = t === 'ws' || t === 'uws' ? '' : ' stroke-dasharray="5,3"';
      parts.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${pts
          .map((r) => `${px(r.sessions).toFixed(1)},${py(r.m.deliveriesPerSec).toFixed(1)}`)
          .join(' ')}"/>`,
      );
      for (const r of pts) {
        // Hollow marker: the run was invalid (loss, reorder or a saturated load generator).
        parts.push(
          `<circle cx="${px(r.sessions).toFixed(1)}" cy="${py(r.m.deliveriesPerSec).toFixed(1)}" r="4" stroke="${color}" stroke-width="2" fill="${r.m.valid ? color : 'white'}"><title>${esc(
            `${LABELS[t]}: ${rate(r.m.deliveriesPerSec)}/s at ${int(r.sessions)} sessions${r.m.valid ? '' : ' (invalid: ' + r.m.problems.join('; ') + ')'}`,
          )}</title></circle>`,
        );
      }
    }
  });
  targets.forEach((t, i) => {
    const y = H + 10 + i * 22;
    const dash = t === 'ws' || t === 'uws' ? '' : ' stroke-dasharray="5,3"';
    parts.push(
      `<line x1="${pad.l}" x2="${pad.l + 30}" y1="${y}" y2="${y}" stroke="${COLORS[t]}" stroke-width="2"${dash}/>`,
    );
    parts.push(`<text x="${pad.l + 38}" y="${y + 4}">${esc(LABELS[t])}</text>`);
  });
  parts.push(
    `<text x="${width - 10}" y="${height - 8}" text-anchor="end" fill="#666">hollow marker = invalid run</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
