import { BUCKETS, merge } from './histogram.js';
import type { RunResult } from './protocol.js';

/** Adds up the results of several workers (or load-generator processes) for one run. */
export function mergeResults(id: number, parts: readonly RunResult[]): RunResult {
  const out: RunResult = {
    id,
    clients: 0,
    complete: 0,
    received: 0,
    stalledReceived: 0,
    disordered: 0,
    closed: 0,
    firstRecvNs: 0,
    lastRecvNs: 0,
    hist: new Array<number>(BUCKETS).fill(0),
    maxElu: 0,
    cpuUs: 0,
    wallNs: 0,
  };
  for (const p of parts) {
    out.clients += p.clients;
    out.complete += p.complete;
    out.received += p.received;
    out.stalledReceived += p.stalledReceived;
    out.disordered += p.disordered;
    out.closed += p.closed;
    if (p.firstRecvNs > 0 && (out.firstRecvNs === 0 || p.firstRecvNs < out.firstRecvNs))
      out.firstRecvNs = p.firstRecvNs;
    if (p.lastRecvNs > out.lastRecvNs) out.lastRecvNs = p.lastRecvNs;
    merge(out.hist, p.hist);
    out.maxElu = Math.max(out.maxElu, p.maxElu);
    out.cpuUs += p.cpuUs;
  }
  out.wallNs = out.lastRecvNs - out.firstRecvNs;
  return out;
}
