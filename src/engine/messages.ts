/**
 * What the engine's worker thread and the HTTP side say to each other: a few
 * plain, structured-clone-safe message types, defined once for both.
 *
 * main → worker: `submit`, `abort`, `close`, and the test-only `fault` and `gc`.
 * worker → main: `ready` (or `fatal`), then `events` (each step's `token` /
 * `finished` / `error` events, in order) or `refused` for a submit the
 * engine would not take, and `stats` whenever the engine's occupancy
 * changes. A `fatal` after `ready` means the engine loop failed: the worker
 * stops and the main side restarts it (see WorkerEngine). Errors cross as
 * EngineErrorData and are rebuilt as the same EngineError on the main side.
 *
 * @module
 */
import type { ControllerState, DraftState, ForcedDraftPlan, Ramp } from '../exits/index.js';
import type { RuntimeOptions } from '../model/index.js';
import type { EngineOptions } from './engine.js';
import type { EngineErrorData } from './errors.js';
import type { EngineClient, EngineEvent, GenerateRequest } from './types.js';

/** What the worker needs to start: `workerData`. */
export interface WorkerInit {
  /** A prepared model directory (resolveModel's result). */
  dir: string;
  runtime: RuntimeOptions;
  engine: EngineOptions;
  /** How often the worker checks whether its stats changed. */
  statsIntervalMs: number;
}

/** The engine's occupancy, as /metrics shows it. */
export interface EngineStats {
  /** Sequences holding a KV slot. */
  running: number;
  /** Sequences admitted by the engine but waiting for a slot. */
  waiting: number;
  freeSlots: number;
  /** Seconds this worker has spent in engine steps since it started: a running total, back to 0 in a new worker. */
  busySeconds: number;
  /** The early-exit controller's state (GET /exits), or null with exits off. */
  exits: ControllerState | null;
  /** Lossless mode's draft controller (GET /exits), or null with exits off. */
  lossless: DraftState | null;
}

// --- main → worker

export interface SubmitMessage {
  type: 'submit';
  request: GenerateRequest;
}

export interface AbortMessage {
  type: 'abort';
  requestId: string;
}

/** Release the model and exit. */
export interface CloseMessage {
  type: 'close';
}

/**
 * What an injected fault does to the worker: `step` throws inside the decode
 * loop (as a failing session.run would), which the worker catches and
 * reports as `fatal`; `crash` throws outside any handler, so the thread dies
 * with an uncaught exception and no goodbye; `slow` makes every step from now
 * on take `stepMs` longer (0 ends it), as a slow device would, so that a test
 * can act while a request is surely still decoding.
 */
export type Fault = { kind: 'step' } | { kind: 'crash' } | { kind: 'slow'; stepMs: number };

/**
 * Test and soak use only: fail or slow the worker on purpose to exercise
 * recovery and disconnects (WorkerEngine.injectFault, or POST /debug/fault
 * behind `--debug-routes`). A `step` fault waits for the next step, so it
 * lands when there is work.
 */
export interface FaultMessage {
  type: 'fault';
  fault: Fault;
}

/**
 * Soak use only: run a full garbage collection now (the worker runs with
 * --expose-gc; otherwise nothing happens), so that resident memory measured
 * before and after a long run compares like with like.
 */
export interface GcMessage {
  type: 'gc';
}

/**
 * Test use only: force the exit controller's ramps and thresholds and the
 * draft controller's plan, both frozen (the playground test needs tokens
 * that really come from ramps). Absent fields are left as they are.
 */
export interface ForceExitsMessage {
  type: 'force-exits';
  exits: ForcedExits;
}

export interface ForcedExits {
  ramps?: Ramp[];
  draft?: ForcedDraftPlan | null;
}

export type ToWorkerMessage = SubmitMessage | AbortMessage | CloseMessage | FaultMessage | GcMessage | ForceExitsMessage;

// --- worker → main

/** The engine would not take a submitted request (RequestError): the client's to fix. */
export interface RefusedMessage {
  type: 'refused';
  requestId: string;
  error: EngineErrorData;
}

export interface ReadyMessage {
  type: 'ready';
  stats: EngineStats;
}

export interface StatsMessage {
  type: 'stats';
  stats: EngineStats;
}

/** The worker cannot go on: the model failed to load (before `ready`), or the decode loop threw (after it). */
export interface FatalMessage {
  type: 'fatal';
  /** An EngineDeadError; `userFixable` when the model could not load for a reason the user can fix. */
  error: EngineErrorData;
}

/** The request events of one engine step (or of one early exit), in order. */
export interface EventsMessage {
  type: 'events';
  events: EngineEvent[];
}

export type FromWorkerMessage = RefusedMessage | EventsMessage | ReadyMessage | StatsMessage | FatalMessage;

/**
 * The engine as the HTTP side sees it: `restarting` after its worker failed
 * (in-flight requests have been failed; new ones get 503 until it is back),
 * `dead` when it cannot come back (a restart failed, or too many failures).
 */
export type EngineHealth = 'starting' | 'ready' | 'restarting' | 'dead';

/** What the HTTP side reads from, and (in tests and soaks) does to, the engine it serves: WorkerEngine. */
export interface ServedEngine extends EngineClient {
  /** The engine's occupancy for /metrics; null before it is ready and while it restarts. */
  readonly stats: EngineStats | null;
  /** /health answers 503 while it restarts or once it is dead. */
  readonly health: EngineHealth;
  /** Restarts after a failure, for /metrics. */
  readonly restarts: number;
  /** Makes the engine fail or slow down on purpose; served only with `debugRoutes`. */
  injectFault(fault: Fault): void;
  /** A full garbage collection in the engine; served only with `debugRoutes`. */
  collectGarbage(): void;
  /** Forces and freezes exits (see ForceExitsMessage); served only with `debugRoutes`. */
  forceExits(exits: ForcedExits): void;
}
