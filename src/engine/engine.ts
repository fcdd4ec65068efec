/**
 * The decode loop: `step()` is plan, run, apply (vLLM's EngineCore.step).
 * Requests come in with `add`, leave with `abort` or when they finish; every
 * outcome leaves as an EngineEvent through the listener.
 *
 * The engine is the one owner of a request's state: the runner reports what
 * it sampled (a StepResult) and `apply` appends the tokens and decides the
 * endings. A token from a ramp is streamed (`stream`) the moment the runner
 * hands it over, mid-step, because leaving before the deep blocks run is
 * the point of exiting; `apply` then records it like any other. Requests
 * that end are finished at the step boundary, after the runner has settled
 * their deferred positions.
 *
 * @module
 */
import { DEFAULT_RAMP_BUDGET, DraftController, ExitController, type ConfidenceKind, type ExitControllerInput } from '../exits/index.js';
import type { Model } from '../model/index.js';
import { RequestError, requestProblem } from './errors.js';
import { ModelRunner, type SampledToken, type StepResult } from './runner.js';
import { Scheduler, type SchedulerOptions, type StepPlan } from './scheduler.js';
import { Sequence } from './sequence.js';
import type { EngineEvent, FinishReason, GenerateRequest } from './types.js';

export interface EarlyExitOptions {
  enabled: boolean;
  /** The constraint: share of streamed tokens equal to the full model's argmax. */
  accuracy: number;
  /** Share of a non-exiting step that all active ramps together may cost. */
  rampBudget: number;
  confidence: ConfidenceKind;
  /** Positions a sequence may exit in a row before its deep blocks must catch up. */
  maxDeferred: number;
}

export interface EngineOptions extends SchedulerOptions {
  /** Positions per sequence (prompt + generated); at most the model's maxSeqLen. */
  maxContext: number;
  earlyExit: EarlyExitOptions;
}

export const EXITS_OFF: EarlyExitOptions = { enabled: false, accuracy: 0.99, rampBudget: DEFAULT_RAMP_BUDGET, confidence: 'probe', maxDeferred: 16 };

/**
 * How often (tokens decoded) measured costs reach the controllers, which
 * decide per token too (an adjustment every 500): twice an adjustment at
 * any concurrency. Every 64 steps instead, the update (medians, the call
 * line, the controllers' checks) took 1.4% of the engine thread at one
 * stream with exits on.
 */
const COST_UPDATE_TOKENS = 256;

export class Engine {
  readonly scheduler: Scheduler;
  readonly controller: ExitController | null;
  /** Lossless mode's draft controller; null when exits are off. */
  readonly drafts: DraftController | null;
  private readonly runner: ModelRunner;
  private readonly sequences = new Map<string, Sequence>();
  /** Tokens decoded since the controllers last got the measured costs. */
  private tokensSinceCosts = 0;

  constructor(
    readonly model: Model,
    readonly options: EngineOptions,
    private readonly emit: (event: EngineEvent) => void,
  ) {
    if (options.maxContext > model.config.maxSeqLen) {
      throw new RangeError(`maxContext ${options.maxContext} exceeds the model's ${model.config.maxSeqLen} positions`);
    }
    const exits = options.earlyExit;
    const controllerOptions: ExitControllerInput = {
      numLayers: model.config.numLayers,
      candidateLayers: model.manifest.rampCandidates,
      accuracy: exits.accuracy,
      rampBudget: exits.rampBudget,
    };
    this.controller = exits.enabled ? new ExitController(controllerOptions) : null;
    const { numLayers, candidateLayers } = controllerOptions;
    this.drafts = exits.enabled ? new DraftController({ numLayers, candidateLayers, maxDraft: exits.maxDeferred }) : null;
    this.scheduler = new Scheduler(options);
    this.runner = new ModelRunner(model, {
      controller: this.controller,
      drafts: this.drafts,
      confidence: exits.confidence,
      maxDeferred: exits.maxDeferred,
      maxRunning: options.maxRunning,
      maxContext: options.maxContext,
    });
  }

  /** A running request's sequence (tests, diagnostics), or undefined. */
  sequence(requestId: string): Sequence | undefined {
    return this.sequences.get(requestId);
  }

  /** What the KV cache holds for a running request at `layer`: its positions so far (tests, diagnostics). */
  cached(requestId: string, layer: number): { keys: Float32Array; values: Float32Array } {
    const seq = this.sequences.get(requestId);
    if (!seq) throw new RangeError(`request ${requestId} is not running`);
    return this.runner.cached(seq, layer);
  }

  /** Queues a request. Throws RequestError when it cannot fit. */
  add(request: GenerateRequest): void {
    const { maxContext } = this.options;
    const numPromptTokens = request.promptTokens.length;
    const problem = requestProblem(numPromptTokens, request.maxTokens, maxContext);
    if (problem === 'empty') throw new RequestError('the prompt is empty after tokenization');
    if (problem)
      throw new RequestError(
        `this model's context is ${maxContext} tokens; the prompt has ${numPromptTokens} and max_tokens asks for ${request.maxTokens} more`,
      );
    if (this.sequences.has(request.id)) throw new RequestError(`request id ${request.id} is already running`);
    const seq = new Sequence(request, this.model.config.numLayers, this.model.tokenizer);
    this.sequences.set(seq.id, seq);
    this.scheduler.add(seq);
  }

  /** Ends a request at the next step boundary, freeing its slot. */
  abort(requestId: string): void {
    const seq = this.sequences.get(requestId);
    if (seq) seq.abortRequested = true;
  }

  /** Ends every request at the next step boundary. */
  abortAll(): void {
    for (const seq of this.sequences.values()) seq.abortRequested = true;
  }

  get hasWork(): boolean {
    return this.scheduler.hasWork;
  }

  get numRunning(): number {
    return this.scheduler.running.length;
  }

  get numWaiting(): number {
    return this.scheduler.waiting.length;
  }

  /** Plan, run, apply; then end what ended, at the step boundary. */
  step(): void {
    for (const seq of this.sequences.values()) if (seq.abortRequested) this.finish(seq, 'abort');
    const plan = this.scheduler.schedule();
    if (plan.decode.length === 0 && plan.prefill.length === 0) return;
    const result = this.runner.execute(plan, (token) => this.stream(token));
    this.apply(result);
    this.finishEnded(plan);
    this.shareCosts(result.tokens.length);
  }

  /** Every COST_UPDATE_TOKENS tokens, the measured costs reach the controllers. */
  private shareCosts(tokens: number): void {
    if (!this.controller) return;
    this.tokensSinceCosts += tokens;
    if (this.tokensSinceCosts < COST_UPDATE_TOKENS) return;
    this.tokensSinceCosts = 0;
    const costs = this.runner.costs.snapshot();
    if (!costs) return;
    this.controller.setCosts(costs);
    this.drafts?.setCosts(costs);
  }

  /** Ends every request with an error (the engine cannot go on). */
  failAll(message: string): void {
    for (const seq of [...this.sequences.values()]) {
      this.scheduler.release(seq);
      this.forget(seq);
      this.emit({ type: 'error', requestId: seq.id, message });
    }
  }

  /** Streams a sampled token to its client: a ramp's at once (see runner.ts), the others (verified drafts too) from `apply`. */
  private stream({ seq, tokenId, exit }: SampledToken): void {
    if (seq.abortRequested || this.isEos(tokenId)) return;
    const text = seq.output.push(tokenId);
    this.emit({
      type: 'token',
      requestId: seq.id,
      text,
      tokenIds: [tokenId],
      exitLayer: exit.layer,
      confidence: exit.confidence,
      ...(exit.verified && { verified: true }),
      ...(exit.trace && { trace: exit.trace }),
      ...(exit.logprobs && { logprobs: exit.logprobs }),
    });
  }

  /**
   * Applies a step's tokens to their sequences, in the order the runner
   * decided them; sets the endings. A lossless sequence may get several
   * (its verified drafts): those after the one that ends it are dropped.
   */
  private apply(result: StepResult): void {
    for (const token of result.tokens) {
      const { seq, tokenId, exit } = token;
      if (seq.abortRequested || seq.finishReason) continue;
      if (exit.layer === null || exit.verified) this.stream(token);
      if (seq.lossless) this.drafts?.countTokens(1, exit.verified ? 1 : 0);
      if (this.isEos(tokenId)) {
        seq.finishReason = 'stop';
        continue;
      }
      seq.tokens.push(tokenId);
      if (seq.output.stopped) seq.finishReason = 'stop';
      else if (seq.numGenerated >= seq.request.maxTokens || seq.tokens.length >= this.options.maxContext) seq.finishReason = 'length';
    }
  }

  /** Finishes the step's sequences that ended; exited tokens still owe the controller their verdicts. */
  private finishEnded(plan: StepPlan): void {
    for (const seq of [...plan.decode, ...plan.prefill.map((p) => p.seq)]) {
      if (!seq.finishReason) continue;
      if (seq.deferred.length > 0) this.runner.settle(seq);
      this.finish(seq, seq.finishReason);
    }
  }

  private isEos(tokenId: number): boolean {
    return this.model.config.eosTokenIds.includes(tokenId);
  }

  private finish(seq: Sequence, reason: FinishReason): void {
    const text = reason === 'abort' ? '' : seq.output.finish();
    this.scheduler.release(seq);
    this.forget(seq);
    this.emit({
      type: 'finished',
      requestId: seq.id,
      finishReason: reason,
      text,
      usage: { promptTokens: seq.numPromptTokens, completionTokens: seq.numGenerated },
    });
  }

  private forget(seq: Sequence): void {
    this.sequences.delete(seq.id);
  }
}
