/**
 * Executes a StepPlan on the model and reports what it sampled: a plain
 * StepResult the engine applies (engine.ts).
 *
 * Decode: each sequence gets one exit policy for the step (exit-policy.ts).
 * When no row needs a block on its own (no ramp to read, nothing deferred),
 * the batch runs through the fused graph in one call (`decodeFused`).
 * Otherwise it climbs the model together in spans (`decodeBySpans`), one
 * call from ramp to ramp with the ramp's decision computed in it: at each
 * ramp its policy reads, a row that is confident enough leaves, and the
 * position's deeper blocks are deferred. The next position of that sequence
 * that does not exit first runs the deferred positions through the deep
 * blocks together with itself, one causal pass per span (`catchUp`), which
 * fills the deep KV cache exactly and yields the full model's verdict on
 * every exited token: the feedback the controller tunes on. A sequence that
 * ends with positions still deferred has them run in `settle`, for their
 * verdicts.
 *
 * Prompt chunks run after the decode batch, all blocks, no exits (`prefill`).
 *
 * The model calls themselves (reused buffers, timings, the KV cache, the
 * one ramp helper) are in model-calls.ts.
 *
 * Early emission: a token that leaves at a ramp goes to `onExit` the moment
 * its ramp decides, so the engine streams it before the deep blocks run
 * (that is the point of exiting); it is in the StepResult too, where the
 * engine applies it to its sequence with the step's other tokens. The runner
 * never changes a sequence's tokens or its ending: it advances only what it
 * computes, each layer's positions (`layerLengths`) and the deferred list.
 *
 * @module
 */
import type { ConfidenceKind, ExitController, TokenRecord } from '../exits/index.js';
import type { Model, SpanEnd } from '../model/index.js';
import type { CostMeter } from './cost-meter.js';
import { choosePolicy, feedsController, type ExitPolicy, type PolicyContext } from './exit-policy.js';
import { argmax, logprobsOf, sample, type TokenLogprobs } from './sampler.js';
import { ModelCalls, type SlotLengths, type SpanRow } from './model-calls.js';
import type { StepPlan } from './scheduler.js';
import type { Sequence } from './sequence.js';
import type { RampReading } from './types.js';

/** How a token left the model, for the client and the playground. */
export interface ExitInfo {
  /** The ramp's layer (the token went to `onExit` at once), or null for the full model. */
  layer: number | null;
  /** The ramp's confidence when it exited there. */
  confidence: number | null;
  /** Every ramp read for this token, with the full model's argmax (trace policy only). */
  trace?: { ramps: RampReading[]; finalArgmax: number };
  logprobs?: TokenLogprobs;
}

/** One token the runner sampled for one sequence. */
export interface SampledToken {
  seq: Sequence;
  tokenId: number;
  exit: ExitInfo;
}

/** What one step sampled, in the order it was decided. */
export interface StepResult {
  tokens: SampledToken[];
}

/** Where a token that left at a ramp goes the moment its ramp decides. */
export type ExitSink = (token: SampledToken) => void;

export interface RunnerOptions {
  /** null: exits off for every request. */
  controller: ExitController | null;
  confidence: ConfidenceKind;
  /** A sequence exits at most this many positions in a row before the deep blocks must catch up. */
  maxDeferred: number;
  /** KV slots. */
  maxRunning: number;
  /** Positions per slot. */
  maxContext: number;
}

/** While ramps are active, one step in this many is timed on the fused graph instead. */
const FUSED_SAMPLE_STEPS = 64;

/**
 * One decode step in this many is a shadow step (see `isShadowStep`) while
 * the controller has too few shadow records to judge a ramp by, then one in
 * SHADOW_STEPS: rare enough that about 0.2% of tokens pay for it (a step with
 * a ramp at every candidate layer), even at one stream.
 */
const SHADOW_STEPS_EARLY = 64;
const SHADOW_STEPS = 512;

/** The full model's verdict on a token: which ramps agreed with its argmax. */
function verdict(readings: RampReading[], finalArgmax: number, exitLayer: number | null): TokenRecord {
  return { ramps: readings.map((r) => ({ layer: r.layer, confidence: r.confidence, agrees: r.argmax === finalArgmax })), exitLayer };
}

/** One decoding row of the batch during a step. */
interface Row {
  seq: Sequence;
  policy: ExitPolicy;
  position: number;
  hidden: Float32Array; // [dim]: output of the last block run for this position
  readings: RampReading[];
}

/** What the parts of one execute() call share. */
interface Step {
  slotLengths: SlotLengths;
  tokens: SampledToken[];
  onExit: ExitSink;
}

export class ModelRunner {
  private readonly calls: ModelCalls;
  private readonly policies: PolicyContext;
  /** Decode steps that could have run fused while ramps were active (see timesFusedNow). */
  private stepsOffFused = 0;
  /** Decode steps that could have been shadow steps. */
  private shadowCandidates = 0;

  constructor(
    readonly model: Model,
    private readonly options: RunnerOptions,
  ) {
    this.calls = new ModelCalls(model, options.maxRunning, options.maxContext);
    this.policies = { controller: options.controller, candidates: model.manifest.rampCandidates, maxDeferred: options.maxDeferred };
  }

  /** What the model calls have cost so far, for the controller. */
  get costs(): CostMeter {
    return this.calls.costs;
  }

  execute(plan: StepPlan, onExit: ExitSink): StepResult {
    this.calls.fitKv(plan.longestSequence, plan.slotLengths);
    const step: Step = { slotLengths: plan.slotLengths, tokens: [], onExit };
    // The decode batch goes first: its stray writes into rows that are mid-prompt
    // land at positions the prompt chunks below then overwrite.
    if (plan.decode.length > 0) this.decode(plan.decode, step);
    for (const { seq, numTokens } of plan.prefill) this.prefill(seq, numTokens, step);
    return { tokens: step.tokens };
  }

  /** Runs an ended sequence's deferred positions through the deep blocks, for their verdicts. */
  settle(seq: Sequence): void {
    if (!feedsController(seq, this.policies)) return;
    const policy = choosePolicy(seq, this.policies, false);
    const numLayers = this.model.config.numLayers;
    while (seq.deferred.length > 0) {
      const from = Math.min(...seq.deferred.map((d) => d.layer)) + 1;
      if (from >= numLayers) break;
      this.catchUp(seq, policy, from, this.spanEnd(from, [{ seq, policy }]), null);
    }
  }

  private decode(batch: Sequence[], step: Step): void {
    const shadow = this.isShadowStep(batch);
    const rows: Row[] = batch.map((seq) => {
      const position = seq.numComputed;
      const hidden = this.model.embed([seq.tokens[position]!], [position]);
      return { seq, policy: choosePolicy(seq, this.policies, shadow), position, hidden, readings: [] };
    });
    const fused = this.model.hasFused && !shadow && (rows.every((row) => this.needsNoSingleBlock(row)) || this.timesFusedNow(rows));
    if (fused) this.decodeFused(rows, step);
    else this.decodeBySpans(rows, step);
  }

  /**
   * A shadow step scores every candidate ramp and lets no row exit: the
   * controller learns what ramps that are not active could do, without the
   * cost of trying them (on a small model, leaving the fused graph for every
   * token). Only steps where every row feeds the controller and none has
   * deferred positions qualify.
   */
  private isShadowStep(batch: Sequence[]): boolean {
    const controller = this.policies.controller;
    if (!controller || !batch.every((seq) => feedsController(seq, this.policies) && seq.deferred.length === 0)) return false;
    const period = controller.hasShadowEvidence ? SHADOW_STEPS : SHADOW_STEPS_EARLY;
    return ++this.shadowCandidates % period === 0;
  }

  /** True when a row can take the whole model in one call this step: nothing deferred, no ramp to read. */
  private needsNoSingleBlock(row: Row): boolean {
    if (row.seq.deferred.length > 0) return false;
    for (let layer = 0; layer < this.model.config.numLayers - 1; layer++) if (row.policy.looksAt(layer)) return false;
    return true;
  }

  /**
   * While ramps are active, one decode step in FUSED_SAMPLE_STEPS runs fused
   * anyway when every row may (nothing deferred, no plan or trace to follow),
   * so that the controller knows what leaving the fused graph costs.
   */
  private timesFusedNow(rows: Row[]): boolean {
    const mayFuse = (row: Row) => row.seq.deferred.length === 0 && (row.policy.kind === 'controller' || this.needsNoSingleBlock(row));
    return rows.every(mayFuse) && ++this.stepsOffFused % FUSED_SAMPLE_STEPS === 0;
  }

  /** The whole batch through the fused graph: one call for every block and the head. */
  private decodeFused(rows: Row[], step: Step): void {
    const vocabSize = this.model.config.vocabSize;
    const { logits, firstSlot } = this.calls.fusedBatch(rows, step.slotLengths);
    for (const row of rows) {
      row.seq.layerLengths.fill(row.position + 1);
      // The controller counts tokens even while no ramp is active: its clock decides when to try ramps again.
      row.policy.feedback?.({ ramps: [], exitLayer: null });
      const offset = (row.seq.slot - firstSlot) * vocabSize;
      this.sample(row.seq, logits.subarray(offset, offset + vocabSize), { layer: null, confidence: null }, step);
    }
  }

  /**
   * The batch up the model span by span: each span is one call over the
   * blocks up to the next ramp some row reads (or up to where a deferred
   * position waits, so that it can join the next span), with that ramp's
   * decision computed in the call; the rows that exit there leave. A
   * sequence with deferred positions runs each span over them and its
   * current position together (`catchUp`). The last span ends with the head.
   */
  private decodeBySpans(rows: Row[], step: Step): void {
    const numLayers = this.model.config.numLayers;
    let active = rows;
    for (let from = 0; from < numLayers && active.length > 0; ) {
      const to = this.spanEnd(from, active);
      const synced = active.filter((row) => row.seq.layerLengths[from] === row.position);
      const said = synced.length > 0 ? this.calls.batchedSpan(from, to, this.spanEndKind(to, synced), synced, step.slotLengths) : new Map<Row, SpanRow>();
      for (const row of active) if (row.seq.layerLengths[from]! < row.position) said.set(row, this.catchUp(row.seq, row.policy, from, to, row)!);
      for (const row of active) row.seq.layerLengths.fill(row.position + 1, from, to + 1);
      if (to === numLayers - 1) this.finalHead(active, said, step);
      else active = this.ramp(to, active, said, step);
      from = to + 1;
    }
  }

  /** The last block of the span that starts at `from`: the first that a ramp some row reads, or a deferred position, waits after; else the model's last. */
  private spanEnd(from: number, rows: readonly { seq: Sequence; policy: ExitPolicy }[]): number {
    const last = this.model.config.numLayers - 1;
    for (let layer = from; layer < last; layer++) {
      if (rows.some(({ seq, policy }) => policy.looksAt(layer) || seq.deferred.some((d) => d.layer === layer))) return layer;
    }
    return last;
  }

  /** What a span that ends after block `to` computes for `rows`: the head after the last block, else the ramp when one of them reads it. */
  private spanEndKind(to: number, rows: Row[]): SpanEnd {
    if (to === this.model.config.numLayers - 1) return { kind: 'head' };
    const reading = rows.filter((row) => row.policy.looksAt(to));
    if (reading.length === 0) return { kind: 'hidden' };
    return { kind: 'ramp', confidence: this.options.confidence, logits: reading.some((row) => this.drawsFromLogits(row.seq)) };
  }

  /** Whether a token of `seq` needs its logits: a draw at a temperature, or logprobs (a greedy token is the best column). */
  private drawsFromLogits(seq: Sequence): boolean {
    return seq.request.sampling.temperature > 0 || seq.request.logprobs !== undefined;
  }

  /** The ramp after `layer`, as the span said: reads the rows whose policy looks here, hands on the ones that exit; returns the rest. */
  private ramp(layer: number, active: Row[], said: Map<Row, SpanRow>, step: Step): Row[] {
    const exited = new Set<Row>();
    for (const row of active) {
      if (!row.policy.looksAt(layer)) continue;
      const spanRow = said.get(row)!;
      const reading = this.reading(layer, spanRow);
      row.readings.push(reading);
      if (!row.policy.exits(layer, reading.confidence)) continue;
      exited.add(row);
      row.seq.deferred.push({ position: row.position, hidden: row.hidden, layer, exitLayer: layer, readings: row.readings });
      const exit = { layer, confidence: reading.confidence };
      const tokenOf = (column: number) => this.model.rampToken(column);
      // Drawn among the ramp's tokens only (never the rest column), each column keyed by its token id.
      if (spanRow.logits) this.sample(row.seq, spanRow.logits.subarray(0, this.model.rampVocab), exit, step, tokenOf);
      else this.emit(row.seq, tokenOf(spanRow.top) < 0 ? spanRow.second : spanRow.top, exit, step, tokenOf);
    }
    return exited.size === 0 ? active : active.filter((row) => !exited.has(row));
  }

  /** The rows that went all the way: the head's logits from their last span, their verdicts, their tokens. */
  private finalHead(rows: Row[], said: Map<Row, SpanRow>, step: Step): void {
    for (const row of rows) {
      const rowLogits = said.get(row)!.logits!;
      const finalArgmax = argmax(rowLogits);
      row.policy.feedback?.(verdict(row.readings, finalArgmax, null));
      const trace = row.policy.kind === 'trace' ? { ramps: row.readings, finalArgmax } : undefined;
      this.sample(row.seq, rowLogits, { layer: null, confidence: null, trace }, step);
    }
  }

  /**
   * Runs the span `from`..`to` over a sequence's deferred positions that
   * wait for it, plus the current position when there is one: one causal
   * pass, batch 1. Where the span ends at a ramp the sequence reads, the
   * deferred positions get that ramp's reading too; where it ends the model
   * they get the full model's verdict, and leave the deferred list. Returns
   * what the span said about the current position.
   */
  private catchUp(seq: Sequence, policy: ExitPolicy, from: number, to: number, current: Row | null): SpanRow | null {
    const dim = this.model.config.dim;
    const waiting = seq.deferred.filter((d) => d.layer === from - 1);
    const numRows = waiting.length + (current ? 1 : 0);
    const input = new Float32Array(numRows * dim);
    waiting.forEach((d, i) => input.set(d.hidden, i * dim));
    if (current) input.set(current.hidden, waiting.length * dim);
    const isLast = to === this.model.config.numLayers - 1;
    const reads = policy.looksAt(to) && (current !== null || policy.feedback !== null);
    const draws = current !== null && this.drawsFromLogits(seq);
    const end: SpanEnd = isLast ? { kind: 'head' } : reads ? { kind: 'ramp', confidence: this.options.confidence, logits: draws } : { kind: 'hidden' };
    const { hidden, said } = this.calls.sequenceSpan(from, to, end, seq, seq.layerLengths[from]!, input, numRows);
    waiting.forEach((d, i) => {
      if (hidden) d.hidden = hidden.slice(i * dim, (i + 1) * dim);
      d.layer = to;
    });
    if (current && hidden) current.hidden.set(hidden.subarray(waiting.length * dim));
    if (!current) seq.layerLengths.fill(waiting.at(-1)!.position + 1, from, to + 1);

    const feedback = policy.feedback;
    if (feedback && isLast) waiting.forEach((d, i) => feedback(verdict(d.readings, argmax(said[i]!.logits!), d.exitLayer)));
    else if (feedback && end.kind === 'ramp') waiting.forEach((d, i) => d.readings.push(this.reading(to, said[i]!)));
    if (isLast) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
    return current ? said[waiting.length]! : null;
  }

  /** A prompt chunk through every block; the chunk that ends the prompt samples the first token. */
  private prefill(seq: Sequence, numTokens: number, step: Step): void {
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    const input = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const endsPrompt = start + numTokens === seq.tokens.length;
    const logits = this.calls.sequenceChunk(seq, start, input, numTokens, endsPrompt);
    seq.layerLengths.fill(start + numTokens);
    if (logits) this.sample(seq, logits, { layer: null, confidence: null }, step);
  }

  /** What the ramp after `layer` says about one row: its best column as a token id, and no confidence when its rest column wins. */
  private reading(layer: number, said: SpanRow): RampReading {
    const token = this.model.rampToken(said.top);
    return { layer, argmax: token, confidence: token < 0 ? 0 : said.confidence };
  }

  /** Log-probabilities over a row whose column c is token `tokenOf(c)`. */
  private logprobs(logits: Float32Array, column: number, topN: number, tokenOf: (column: number) => number): TokenLogprobs {
    const { logprob, top } = logprobsOf(logits, column, topN);
    return { logprob, top: top.map((t) => ({ ...t, token: tokenOf(t.token) })) };
  }

  /**
   * Samples the next token from one row of logits (column c is token `tokenOf(c)`); a ramp's token also goes to onExit at once.
   * The engine appends it after the step, so `seq.tokens.length` is the new token's index: its draw key.
   */
  private sample(seq: Sequence, logits: Float32Array, exit: ExitInfo, step: Step, tokenOf = (column: number) => column): void {
    this.emit(seq, sample(logits, seq.request.sampling, seq.drawKey(seq.tokens.length), tokenOf), exit, step, tokenOf, logits);
  }

  /** Hands on the token of `column` (logprobs from `logits`, which a request that asks for them always has). */
  private emit(seq: Sequence, column: number, exit: ExitInfo, step: Step, tokenOf: (column: number) => number, logits?: Float32Array): void {
    const tokenId = tokenOf(column);
    const topN = seq.request.logprobs;
    const sampled = { seq, tokenId, exit: topN === undefined || !logits ? exit : { ...exit, logprobs: this.logprobs(logits, column, topN, tokenOf) } };
    step.tokens.push(sampled);
    if (exit.layer !== null) step.onExit(sampled);
  }
}
