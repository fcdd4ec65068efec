/**
 * The decode loop: `step()` is plan, run, finish (vLLM's EngineCore.step).
 * Requests come in with `add`, leave with `abort` or when they finish; every
 * outcome leaves as an EngineEvent through the listener. Tokens are emitted
 * the moment the runner decides them (an early exit mid-step included);
 * requests that end are finished at the step boundary.
 *
 * @module
 */
import { ExitController, type ConfidenceKind, type ExitControllerInput } from '../exits/index.js';
import { KvCache, type Model } from '../model/index.js';
import { OutputProcessor } from './output.js';
import { ModelRunner, type ExitInfo } from './runner.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';
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

export const EXITS_OFF: EarlyExitOptions = { enabled: false, accuracy: 0.99, rampBudget: 0.1, confidence: 'margin', maxDeferred: 16 };

/** A request the engine refuses before it runs (too long, empty). */
export class RequestError extends Error {
  override name = 'RequestError';
}

/** How often (steps) measured costs reach the controller. */
const COST_UPDATE_STEPS = 64;

export class Engine {
  readonly scheduler: Scheduler;
  readonly controller: ExitController | null;
  private readonly runner: ModelRunner;
  private readonly outputs = new Map<string, OutputProcessor>();
  private readonly sequences = new Map<string, Sequence>();
  private numSteps = 0;

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
    this.scheduler = new Scheduler(options);
    const kv = new KvCache(model.config, options.maxRunning, options.maxContext, 0);
    this.runner = new ModelRunner(
      model,
      kv,
      this.scheduler,
      { controller: this.controller, confidence: exits.confidence, maxDeferred: exits.maxDeferred },
      (seq, token, exit) => this.accept(seq, token, exit),
    );
  }

  /** Queues a request. Throws RequestError when it cannot fit. */
  add(request: GenerateRequest): void {
    const promptLength = request.promptTokens.length;
    if (promptLength === 0) throw new RequestError('the prompt is empty after tokenization');
    if (promptLength + request.maxTokens > this.options.maxContext) {
      throw new RequestError(
        `this model's context is ${this.options.maxContext} tokens; the prompt has ${promptLength} and max_tokens asks for ${request.maxTokens} more`,
      );
    }
    if (this.sequences.has(request.id)) throw new RequestError(`request id ${request.id} is already running`);
    const seq = new Sequence(request, this.model.config.numLayers);
    this.sequences.set(seq.id, seq);
    this.outputs.set(seq.id, new OutputProcessor(this.model.tokenizer, request.promptTokens, request.stop));
    this.scheduler.add(seq);
  }

  /** Ends a request at the next step boundary, freeing its slot. */
  abort(requestId: string): void {
    const seq = this.sequences.get(requestId);
    if (seq) seq.abortRequested = true;
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

  step(): void {
    for (const seq of this.sequences.values()) if (seq.abortRequested) this.finish(seq, 'abort');
    const plan = this.scheduler.schedule();
    if (plan.decode.length === 0 && plan.prefill.length === 0) return;
    // Room for every running sequence's known tokens, plus one position for stray writes (see KvCache).
    const running = this.scheduler.running;
    const longest = Math.max(...running.map((seq) => seq.tokens.length));
    const slotsInUse = Math.max(...running.map((seq) => seq.slot)) + 1;
    this.runner.kv.fit(Math.min(this.options.maxContext, longest + 1), slotsInUse);
    this.runner.execute(plan);
    for (const seq of [...plan.decode, ...plan.prefill.map((p) => p.seq)]) {
      if (seq.finishReason) this.finish(seq, seq.finishReason);
    }
    if (this.controller && ++this.numSteps % COST_UPDATE_STEPS === 0) {
      const costs = this.runner.costs.snapshot();
      if (costs) this.controller.setCosts(costs);
    }
  }

  /** Ends every request with an error (the engine cannot go on). */
  failAll(message: string): void {
    for (const seq of [...this.sequences.values()]) {
      this.scheduler.release(seq);
      this.forget(seq);
      this.emit({ type: 'error', requestId: seq.id, message });
    }
  }

  /** A token decided by the runner: streamed now; an ending is applied at the step boundary. */
  private accept(seq: Sequence, token: number, exit: ExitInfo): void {
    if (seq.abortRequested || seq.finishReason) return;
    if (this.model.config.eosTokenIds.includes(token)) {
      seq.finishReason = 'stop';
      return;
    }
    seq.tokens.push(token);
    const { text, stopped } = this.outputs.get(seq.id)!.push(token);
    this.emit({
      type: 'token',
      requestId: seq.id,
      text,
      tokenIds: [token],
      exitLayer: exit.layer,
      confidence: exit.confidence,
      ...(exit.trace && { trace: exit.trace }),
      ...(exit.logprobs && { logprobs: exit.logprobs }),
    });
    if (stopped) seq.finishReason = 'stop';
    else if (seq.numGenerated >= seq.request.maxTokens || seq.tokens.length >= this.options.maxContext) seq.finishReason = 'length';
  }

  private finish(seq: Sequence, reason: FinishReason): void {
    const text = reason === 'abort' ? '' : this.outputs.get(seq.id)!.finish();
    // Exited tokens still owe the controller their verdicts.
    if (reason !== 'abort' && seq.deferred.length > 0) this.runner.flush(seq);
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
    this.outputs.delete(seq.id);
  }
}
