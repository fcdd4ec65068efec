/**
 * The load generator's two loops over a Target.
 *
 * - Closed loop: `concurrency` clients, each sending its next request as soon
 *   as its last one ends, until the point's list is used up.
 * - Open loop: requests sent at Poisson arrival times whether or not earlier
 *   ones have finished. A request's clock starts at its scheduled arrival,
 *   not when the timer got to run, so a busy event loop (or the peer, which
 *   blocks it while generating) cannot hide queueing.
 *
 * @module
 */
import type { RequestRecord, Target } from './target.js';
import type { Work } from './workload.js';

export type Load = { mode: 'closed'; concurrency: number } | { mode: 'poisson'; rate: number };

export interface SendParams {
  maxTokens: number;
  temperature: number;
  /** Called as each request ends (progress). */
  onRecord?: (record: RequestRecord) => void;
}

export function loadLabel(load: Load): string {
  return load.mode === 'closed' ? `c=${load.concurrency}` : `rate=${load.rate}/s`;
}

export async function runClosedLoop(target: Target, work: readonly Work[], concurrency: number, params: SendParams): Promise<RequestRecord[]> {
  const records: RequestRecord[] = [];
  let next = 0;
  const client = async (): Promise<void> => {
    while (next < work.length) {
      const item = work[next++]!;
      const record = await target.send(item, performance.now(), params.maxTokens, params.temperature);
      // sendLagMs stays 0: in a closed loop a request is due when it is sent.
      records.push(record);
      params.onRecord?.(record);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, work.length) }, client));
  return records.sort((a, b) => a.index - b.index);
}

export async function runOpenLoop(target: Target, work: readonly Work[], arrivalsMs: readonly number[], params: SendParams): Promise<RequestRecord[]> {
  if (arrivalsMs.length !== work.length) throw new Error(`open loop: ${work.length} requests for ${arrivalsMs.length} arrivals`);
  const base = performance.now();
  const pending: Promise<RequestRecord>[] = [];
  for (let i = 0; i < work.length; i++) {
    const due = base + arrivalsMs[i]!;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const sendLagMs = performance.now() - due;
    pending.push(
      target.send(work[i]!, due, params.maxTokens, params.temperature).then((record) => {
        const late = { ...record, sendLagMs };
        params.onRecord?.(late);
        return late;
      }),
    );
  }
  return Promise.all(pending);
}
