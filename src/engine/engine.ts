/**
 * The decode loop: `step()` is plan, run, apply (vLLM's EngineCore.step).
 * Requests come in with `add`, leave with `abort` or when they finish; every
 * outcome leaves as an EngineEvent through the listener.
 *
 * @module
 */
import { KvCache, type Model } from '../model/index.js';
import { OutputProcessor } from './output.js';
import { ModelRunner } from './runner.js';
import { Scheduler, type SchedulerOptions, type StepPlan, type StepResult } from './scheduler.js';
import { Sequence } from './sequence.js';
import type { EngineEvent, FinishReason, GenerateRequest } from './types.js';

export interface EngineOptions extends SchedulerOptions {
  /** Positions per sequence (prompt + generated); at most the model's maxSeqLen. */
  maxContext: number;
}

/** A request the engine refuses before it runs (too long, empty). */
export class RequestError extends Error {
  override name = 'RequestError';
}

export class Engine {
  readonly scheduler: Scheduler;
  private readonly runner: ModelRunner;
  private readonly outputs = new Map<string, OutputProcessor>();
  private readonly sequences = new Map<string, Sequence>();

  constructor(
    readonly model: Model,
    readonly options: EngineOptions,
    private readonly emit: (event: EngineEvent) => void,
  ) {
    if (options.maxContext > model.config.maxSeqLen) {
      throw new RangeError(`maxContext ${options.maxContext} exceeds the model's ${model.config.maxSeqLen} positions`);
    }
    this.scheduler = new Scheduler(options);
    this.runner = new ModelRunner(model, new KvCache(model.config, options.maxRunning, options.maxContext), this.scheduler);
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
    const seq = new Sequence(request);
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
    const result = this.runner.execute(plan);
    this.apply(plan, result);
  }

  /** Ends every request with an error (the engine cannot go on). */
  failAll(message: string): void {
    for (const seq of [...this.sequences.values()]) {
      this.scheduler.release(seq);
      this.forget(seq);
      this.emit({ type: 'error', requestId: seq.id, message });
    }
  }

  private apply(plan: StepPlan, result: StepResult): void {
    for (const seq of plan.decode) seq.numComputed += 1;
    for (const { seq, numTokens } of plan.prefill) seq.numComputed += numTokens;
    for (const [id, token] of result.sampled) {
      const seq = this.sequences.get(id);
      if (!seq || seq.abortRequested) continue;
      this.accept(seq, token);
    }
  }

  private accept(seq: Sequence, token: number): void {
    const output = this.outputs.get(seq.id)!;
    const config = this.model.config;
    if (config.eosTokenIds.includes(token)) return this.finish(seq, 'stop');
    seq.tokens.push(token);
    const { text, stopped } = output.push(token);
    this.emit({ type: 'token', requestId: seq.id, text, tokenIds: [token] });
    if (stopped) return this.finish(seq, 'stop');
    if (seq.numGenerated >= seq.request.maxTokens || seq.tokens.length >= this.options.maxContext) this.finish(seq, 'length');
  }

  private finish(seq: Sequence, reason: FinishReason): void {
    const text = reason === 'abort' ? '' : this.outputs.get(seq.id)!.finish();
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
