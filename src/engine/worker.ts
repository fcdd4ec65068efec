/**
 * The engine's worker thread: loads the model, runs a LocalEngine, and
 * relays its events to the main thread as messages (see messages.ts).
 *
 * onnxruntime-node runs each session synchronously on the calling thread, so
 * inference lives here and the HTTP event loop never waits on it. Between
 * engine steps the loop yields, which is when submits and aborts land.
 *
 * Started by WorkerEngine (worker-client.ts); not meant to be run directly.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Model } from '../model/index.js';
import { RequestError } from './engine.js';
import { LocalEngine } from './local.js';
import type { EngineStats, FromWorkerMessage, ToWorkerMessage, WorkerInit } from './messages.js';

if (!parentPort) throw new Error('worker.ts runs as a worker thread (see WorkerEngine)');
const port = parentPort;
const init = workerData as WorkerInit;

const post = (message: FromWorkerMessage): void => port.postMessage(message);

function statsOf(local: LocalEngine): EngineStats {
  const { numRunning, numWaiting } = local.engine;
  const exits = local.engine.controller?.state() ?? null;
  return { running: numRunning, waiting: numWaiting, freeSlots: init.engine.maxRunning - numRunning, exits };
}

async function main(): Promise<void> {
  let model: Model;
  let local: LocalEngine;
  try {
    model = await Model.load(init.dir, init.runtime);
    local = new LocalEngine(model, init.engine);
  } catch (error) {
    const { name, message } = error as Error;
    post({ type: 'fatal', name, message });
    port.close();
    return;
  }
  /** Requests submitted and not yet finished, so `close` can abort them. */
  const live = new Set<string>();
  let last = statsOf(local);
  post({ type: 'ready', stats: last });

  // Occupancy is sampled rather than pushed per step: a step is often shorter
  // than a millisecond, and the gauges only need to be fresh for a scrape.
  const statsTimer = setInterval(() => {
    const now = statsOf(local);
    if (now.running === last.running && now.waiting === last.waiting && now.exits?.tokens === last.exits?.tokens) return;
    last = now;
    post({ type: 'stats', stats: now });
  }, init.statsIntervalMs);

  const close = async (): Promise<void> => {
    clearInterval(statsTimer);
    for (const id of live) local.abort(id);
    // Aborts take effect at the next step boundary; release sessions only when no step runs.
    while (local.engine.hasWork) await new Promise((resolve) => setTimeout(resolve, 1));
    await model.release();
    port.close();
  };

  port.on('message', (message: ToWorkerMessage) => {
    switch (message.type) {
      case 'submit': {
        const { request } = message;
        try {
          local.submit(request, (event) => {
            if (event.type !== 'token') live.delete(request.id);
            post(event.type === 'error' ? { ...event, refused: false } : event);
          });
          live.add(request.id);
        } catch (error) {
          const refused = error instanceof RequestError;
          post({ type: 'error', requestId: request.id, message: (error as Error).message, refused });
        }
        return;
      }
      case 'abort':
        local.abort(message.requestId);
        return;
      case 'close':
        void close();
        return;
    }
  });
}

await main();
