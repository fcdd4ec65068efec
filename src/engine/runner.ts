/**
 * Executes a StepPlan on the model and reports what it sampled: a plain
 * StepResult the engine applies (engine.ts).
 *
 * Decode: each sequence gets one exit policy for the step (exit-policy.ts).
 * When no row needs a block on its own (no ramp to read, nothing deferred),
 * the batch runs through the fused graph in one call (`decodeFused`).
 * Otherwise it climbs the blocks together (`decodeByBlock`): at each ramp
 * its policy reads, a row that is confident enough leaves, and the
 * position's deeper blocks are deferred. The next position of that sequence
 * that does not exit first runs the deferred positions through the deep
 * blocks together with itself, one causal pass per block (`catchUp`), which
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
import { scoreLogits, type ConfidenceKind, type ExitController, type TokenRecord } from '../exits/index.js';
import type { Model } from '../model/index.js';
import type { CostMeter } from './cost-meter.js';
import { choosePolicy, feedsController, type ExitPolicy, type PolicyContext } from './exit-policy.js';
import { logprobsOf, sample, type TokenLogprobs } from './sampler.js';
import { ModelCalls, type SlotLengths } from './model-calls.js';
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
  trace?: { ramps: RampReading[]; finalToken: number };
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

/**
 * The full model's verdict on a position: which ramps would have streamed
 * the token it produces. Ramp and full model draw with the same key (see
 * sampler.ts), so "agrees" means the same at every temperature.
 */
function verdict(readings: RampReading[], finalToken: number, exitLayer: number | null): TokenRecord {
  return { ramps: readings.map((r) => ({ layer: r.layer, confidence: r.confidence, agrees: r.token === finalToken })), exitLayer };
}

const sameColumn = (column: number): number => column;

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
      const layer = Math.min(...seq.deferred.map((d) => d.layer)) + 1;
      if (layer >= numLayers) break;
      this.catchUp(seq, policy, layer, null);
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
    else this.decodeByBlock(rows, step);
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
      const rowLogits = logits.subarray(offset, offset + vocabSize);
      this.emit(step, row.seq, rowLogits, this.draw(row.seq, row.position + 1, rowLogits), { layer: null, confidence: null });
    }
  }

  /** The batch up the blocks one at a time, reading ramps between them; rows leave as they exit. */
  private decodeByBlock(rows: Row[], step: Step): void {
    const numLayers = this.model.config.numLayers;
    let active = rows;
    for (let layer = 0; layer < numLayers && active.length > 0; layer++) {
      const synced = active.filter((row) => row.seq.layerLengths[layer] === row.position);
      if (synced.length > 0) this.calls.batchedBlock(layer, synced, step.slotLengths);
      for (const row of active) if (row.seq.layerLengths[layer]! < row.position) this.catchUp(row.seq, row.policy, layer, row);
      for (const row of active) row.seq.layerLengths[layer] = row.position + 1;
      if (layer < numLayers - 1) active = this.ramp(layer, active, step);
    }
    if (active.length > 0) this.finalHead(active, step);
  }

  /** The ramp after `layer`: reads the rows whose policy looks here, hands on the ones that exit; returns the rest. */
  private ramp(layer: number, active: Row[], step: Step): Row[] {
    const looking = active.filter((row) => row.policy.looksAt(layer));
    if (looking.length === 0) return active;
    const { logits, width } = this.calls.rampRows(layer, looking);
    const exited = new Set<Row>();
    looking.forEach((row, i) => {
      const rowLogits = logits.subarray(i * width, (i + 1) * width);
      const { reading, column } = this.read(layer, rowLogits, row.seq, row.position + 1);
      row.readings.push(reading);
      if (!row.policy.exits(layer, reading.confidence)) return;
      exited.add(row);
      row.seq.deferred.push({ position: row.position, hidden: row.hidden, layer, exitLayer: layer, readings: row.readings });
      this.emit(step, row.seq, rowLogits.subarray(0, this.model.rampVocab), column, { layer, confidence: reading.confidence }, this.rampToken);
    });
    return exited.size === 0 ? active : active.filter((row) => !exited.has(row));
  }

  /** The rows that went all the way: the head, their verdicts, their tokens. */
  private finalHead(rows: Row[], step: Step): void {
    const vocabSize = this.model.config.vocabSize;
    const logits = this.calls.timedHead(rows);
    rows.forEach((row, i) => {
      const rowLogits = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const finalToken = this.draw(row.seq, row.position + 1, rowLogits);
      row.policy.feedback?.(verdict(row.readings, finalToken, null));
      const trace = row.policy.kind === 'trace' ? { ramps: row.readings, finalToken } : undefined;
      this.emit(step, row.seq, rowLogits, finalToken, { layer: null, confidence: null, trace });
    });
  }

  /**
   * Runs `layer` over a sequence's deferred positions that wait for it, plus
   * the current position when there is one: one causal pass, batch 1.
   * At ramp layers the deferred positions get that ramp's reading too; after
   * the last layer they get the full model's verdict, and leave the deferred list.
   */
  private catchUp(seq: Sequence, policy: ExitPolicy, layer: number, current: Row | null): void {
    const { dim, numLayers, vocabSize } = this.model.config;
    const waiting = seq.deferred.filter((d) => d.layer === layer - 1);
    const numRows = waiting.length + (current ? 1 : 0);
    const input = new Float32Array(numRows * dim);
    waiting.forEach((d, i) => input.set(d.hidden, i * dim));
    if (current) input.set(current.hidden, waiting.length * dim);
    const output = this.calls.sequenceBlock(layer, seq, seq.layerLengths[layer]!, input, numRows);
    waiting.forEach((d, i) => {
      d.hidden = output.slice(i * dim, (i + 1) * dim);
      d.layer = layer;
    });
    if (current) current.hidden.set(output.subarray(waiting.length * dim));
    if (!current) seq.layerLengths[layer] = waiting.at(-1)!.position + 1;
    if (waiting.length === 0) return;

    const isLast = layer === numLayers - 1;
    const feedback = policy.feedback;
    if (feedback && (isLast || policy.looksAt(layer))) {
      const hidden = output.subarray(0, waiting.length * dim);
      if (isLast) {
        const logits = this.calls.head(hidden, waiting.length);
        waiting.forEach((d, i) => feedback(verdict(d.readings, this.draw(seq, d.position + 1, logits.subarray(i * vocabSize, (i + 1) * vocabSize)), d.exitLayer)));
      } else {
        const { logits, width } = this.calls.ramp(layer, hidden, waiting.length);
        waiting.forEach((d, i) => d.readings.push(this.read(layer, logits.subarray(i * width, (i + 1) * width), seq, d.position + 1).reading));
      }
    }
    if (isLast) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
  }

  /** A prompt chunk through every block; the chunk that ends the prompt samples the first token. */
  private prefill(seq: Sequence, numTokens: number, step: Step): void {
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    const input = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const endsPrompt = start + numTokens === seq.tokens.length;
    const logits = this.calls.sequenceChunk(seq, start, input, numTokens, endsPrompt);
    seq.layerLengths.fill(start + numTokens);
    if (logits) this.emit(step, seq, logits, this.draw(seq, start + numTokens, logits), { layer: null, confidence: null });
  }

  /** Column c of a ramp's logits scores this token (-1: the rest column, the tokens the ramp does not score). */
  private readonly rampToken = (column: number): number => this.model.rampToken(column);

  /**
   * The column of `logits` the sequence's token at `index` comes from: the
   * argmax when greedy, else the draw with that position's key (coupled: a
   * ramp and the full model drawing there use the same key).
   */
  private draw(seq: Sequence, index: number, logits: Float32Array, tokenOf = sameColumn): number {
    return sample(logits, seq.request.sampling, seq.drawKey(index), tokenOf);
  }

  /**
   * What the ramp after `layer` says about the sequence's token at `index`:
   * the token it would stream there and its confidence (none when its rest
   * column wins), and that token's column.
   */
  private read(layer: number, rowLogits: Float32Array, seq: Sequence, index: number): { reading: RampReading; column: number } {
    const score = scoreLogits(rowLogits, this.options.confidence);
    const rest = this.model.rampToken(score.argmax) < 0;
    const tokens = rowLogits.subarray(0, this.model.rampVocab);
    const column = seq.request.sampling.temperature > 0 || rest ? this.draw(seq, index, tokens, this.rampToken) : score.argmax;
    return { reading: { layer, token: this.model.rampToken(column), confidence: rest ? 0 : score.confidence }, column };
  }

  /** Hands on the token of `column` (a ramp's token also goes to onExit at once), with logprobs when asked. */
  private emit(step: Step, seq: Sequence, logits: Float32Array, column: number, exit: ExitInfo, tokenOf = sameColumn): void {
    const topN = seq.request.logprobs;
    let logprobs: TokenLogprobs | undefined;
    if (topN !== undefined) {
      const { logprob, top } = logprobsOf(logits, column, topN);
      logprobs = { logprob, top: top.map((t) => ({ ...t, token: tokenOf(t.token) })) };
    }
    const sampled = { seq, tokenId: tokenOf(column), exit: logprobs ? { ...exit, logprobs } : exit };
    step.tokens.push(sampled);
    if (exit.layer !== null) step.onExit(sampled);
  }
}
