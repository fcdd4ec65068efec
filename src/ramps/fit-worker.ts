/**
 * Fits ramps in worker threads, a few at once: each ramp's fitting is
 * independent and seeded, so the result does not depend on which thread
 * fits it or in what order. The positions are SharedArrayBuffers (see
 * calibration.ts), so a worker reads them without a copy.
 *
 * This file is both the pool (the trainer's thread) and the worker's entry.
 *
 * @module
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { fitRamp, type FitJob, type FittedRampParams } from './fit.js';

type FitMessage = { type: 'batches'; positions: number; loss: number } | ({ type: 'done' } & FittedRampParams) | { type: 'failed'; message: string };

/** A worker reports progress after this many batches (and once at the end). */
const REPORT_EVERY = 64;

/** Marks this module's own workers' data (the module may also load inside another worker, such as model resolution's). */
const FIT_JOB = 'offramp-fit-ramp';

/** Fits one job in a worker; `onBatches` hears positions done and the last batch's loss now and then. */
function fitInWorker(job: FitJob, onBatches: (positions: number, loss: number) => void): Promise<FittedRampParams> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { kind: FIT_JOB, job } });
    let settled = false;
    worker.on('message', (message: FitMessage) => {
      if (message.type === 'batches') onBatches(message.positions, message.loss);
      else if (message.type === 'done') {
        settled = true;
        resolve({ params: message.params, probe: message.probe, context: message.context });
      } else {
        settled = true;
        reject(new Error(message.message));
      }
    });
    worker.on('error', (error) => {
      settled = true;
      reject(error);
    });
    worker.on('exit', (code) => {
      if (!settled) reject(new Error(`ramp fitting worker exited with code ${code}`));
    });
  });
}

/**
 * Fits every job, `workers` at a time (1: in this thread, one after the
 * other). `onBatches(job, positions, loss)` hears each job's progress.
 * Results come back in the jobs' order.
 */
export async function fitRamps(
  jobs: FitJob[],
  workers: number,
  onBatches: (job: number, positions: number, loss: number) => void,
): Promise<FittedRampParams[]> {
  if (workers <= 1) return jobs.map((job, i) => fitRamp(job, (n, loss) => onBatches(i, n, loss)));
  const results = new Array<FittedRampParams>(jobs.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await fitInWorker(jobs[i]!, (n, loss) => onBatches(i, n, loss));
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, jobs.length) }, lane));
  return results;
}

if (!isMainThread && (workerData as { kind?: unknown } | null)?.kind === FIT_JOB) {
  const { job } = workerData as { job: FitJob };
  const port = parentPort!;
  try {
    let pending = 0;
    let batches = 0;
    const fitted = fitRamp(job, (n, loss) => {
      pending += n;
      if (++batches % REPORT_EVERY === 0) {
        port.postMessage({ type: 'batches', positions: pending, loss } satisfies FitMessage);
        pending = 0;
      }
    });
    if (pending > 0) port.postMessage({ type: 'batches', positions: pending, loss: NaN } satisfies FitMessage);
    port.postMessage({ type: 'done', ...fitted } satisfies FitMessage);
  } catch (error) {
    port.postMessage({ type: 'failed', message: (error as Error).stack ?? String(error) } satisfies FitMessage);
  }
}
