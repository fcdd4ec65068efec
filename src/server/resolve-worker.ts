/**
 * resolveModel() in a short-lived worker thread. The first run compiles a
 * checkpoint into ONNX graphs synchronously (seconds to minutes for large
 * models); off the main thread, /health keeps answering 503 meanwhile
 * instead of leaving connections hanging.
 *
 * This file is both the helper (main thread) and the worker's entry.
 *
 * @module
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DownloadError, ModelFormatError, type Quantization, resolveModel } from '../model/index.js';
import { rampTrainer } from '../ramps/index.js';

interface ResolveJob {
  source: string;
  tokenizer?: string;
  quantization?: Quantization;
}

type ResolveMessage = { type: 'log'; line: string } | { type: 'done'; dir: string } | { type: 'failed'; name: string; message: string; file?: string };

/** The worker's error rebuilt in this thread, as its own class where the CLI treats that class as a user error. */
function rebuild(failed: Extract<ResolveMessage, { type: 'failed' }>): Error {
  if (failed.name === 'ModelFormatError' && failed.file !== undefined) {
    return new ModelFormatError(failed.file, failed.message.slice(failed.file.length + 2));
  }
  if (failed.name === 'DownloadError') return new DownloadError(failed.message);
  const error = new Error(failed.message);
  error.name = failed.name;
  return error;
}

/** Resolves (downloads, compiles) `source` into a prepared model directory off the main thread. Aborting `signal` stops the worker. */
export function resolveModelInWorker(job: ResolveJob, log: (line: string) => void, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const onAbort = (): void => void worker.terminate();
    signal?.addEventListener('abort', onAbort);
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    worker.on('message', (message: ResolveMessage) => {
      if (message.type === 'log') log(message.line);
      else if (message.type === 'done') settle(() => resolve(message.dir));
      else settle(() => reject(rebuild(message)));
    });
    worker.on('error', (error) => settle(() => reject(error)));
    worker.on('exit', (code) => settle(() => reject(new Error(signal?.aborted ? 'model loading was cancelled' : `the model resolver exited (code ${code})`))));
  });
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const job = workerData as ResolveJob;
  const post = (message: ResolveMessage): void => port.postMessage(message);
  try {
    const dir = await resolveModel(job.source, {
      tokenizer: job.tokenizer,
      quantization: job.quantization,
      trainer: rampTrainer(),
      log: (line) => post({ type: 'log', line }),
    });
    post({ type: 'done', dir });
  } catch (error) {
    const { name, message } = error as Error;
    post({ type: 'failed', name, message, ...(error instanceof ModelFormatError ? { file: error.file } : {}) });
  }
  port.close();
}
