/**
 * The engine: continuous batching, the decode loop with early exits, and
 * its hosts: LocalEngine (in the calling thread) and WorkerEngine (in a
 * worker thread, for the server).
 *
 * @module
 */
export { EXITS_OFF, type EarlyExitOptions, type EngineOptions } from './engine.js';
export { EngineDeadError, EngineError, EngineRestartingError, RequestError, requestProblem, type EngineErrorKind, type RequestProblem } from './errors.js';
export { LocalEngine } from './local.js';
export type { EngineHealth, EngineStats, Fault, ForcedExits, ServedEngine } from './messages.js';
export { argmax, drawKey, GREEDY, sample, softmax, type SamplingParams, type TokenLogprobs } from './sampler.js';
export type { EarlyExitMode, EngineClient, EngineEvent, FinishReason, FinishedEvent, GenerateRequest, RequestId, TokenEvent, Usage } from './types.js';
export { WorkerEngine, type RestartPolicy, type WorkerEngineOptions } from './worker-client.js';
