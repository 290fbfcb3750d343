/** Number formatting shared by the console table and the Markdown report. */

export function rate(v: number): string {
  if (!Number.isFinite(v) || v <= 0) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(1);
}

export function ms(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function bytes(v: number): string {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 1024 * 1024) return `${(v / 1024 / 1024).toFixed(1)} MiB`;
  if (a >= 1024) return `${(v / 1024).toFixed(2)} KiB`;
  return `${v.toFixed(0)} B`;
}

export function ratio(v: number): string {
  return Number.isFinite(v) && v > 0 ? `${v.toFixed(2)}x` : '-';
}

export function int(v: number): string {
  return v.toLocaleString('en-US');
}

/** A plain text table with right-aligned columns after the first. */
export function textTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function mdTable(head: string[], rows: string[][]): string {
  const esc = (c: string): string => c.replace(/\|/g, '\\|');
  return [
    `| ${head.map(esc).join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}
