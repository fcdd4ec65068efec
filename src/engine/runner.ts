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
import { KvCache, type Model } from '../model/index.js';
import { Buffers } from './buffers.js';
import { CostMeter } from './cost-meter.js';
import { choosePolicy, feedsController, type ExitPolicy, type PolicyContext } from './exit-policy.js';
import { argmax, logprobsOf, sample, type TokenLogprobs } from './sampler.js';
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
  /** Per slot, its owner's positions per layer (live: the runner advances them), or null for a free slot. */
  slotLengths: readonly (Int32Array | null)[];
  tokens: SampledToken[];
  onExit: ExitSink;
}

export class ModelRunner {
  private readonly buffers = new Buffers();
  private readonly kv: KvCache;
  private readonly policies: PolicyContext;
  readonly costs: CostMeter;
  /** Decode steps that could have run fused while ramps were active (see timesFusedNow). */
  private stepsOffFused = 0;
  /** Decode steps that could have been shadow steps. */
  private shadowCandidates = 0;

  constructor(
    readonly model: Model,
    private readonly options: RunnerOptions,
  ) {
    this.kv = new KvCache(model.config, options.maxRunning, options.maxContext, 0);
    this.policies = { controller: options.controller, candidates: model.manifest.rampCandidates, maxDeferred: options.maxDeferred };
    this.costs = new CostMeter(model.config.numLayers);
  }

  execute(plan: StepPlan, onExit: ExitSink): StepResult {
    this.fitKv(plan);
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

  /** Room for every running sequence's known tokens, plus one position for stray writes (see KvCache). */
  private fitKv(plan: StepPlan): void {
    let slotsInUse = 0;
    plan.slotLengths.forEach((lengths, slot) => {
      if (lengths) slotsInUse = slot + 1;
    });
    this.kv.fit(Math.min(this.options.maxContext, plan.longestSequence + 1), slotsInUse);
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
    // layerLengths[0] is the longest: every layer writes a stray row's position there before reading it.
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, 0, step);
    const logits = this.buffers.get('fused-logits', numRows * vocabSize);
    const started = performance.now();
    this.model.runFused(input, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv, logits);
    this.costs.addFused(performance.now() - started);
    for (const row of rows) {
      row.seq.layerLengths.fill(row.position + 1);
      // The controller counts tokens even while no ramp is active: its clock decides when to try ramps again.
      row.policy.feedback?.({ ramps: [], exitLayer: null });
      const offset = (row.seq.slot - firstSlot) * vocabSize;
      this.sample(row.seq, logits.subarray(offset, offset + vocabSize), { layer: null, confidence: null }, step);
    }
  }

  /** The batch up the blocks one at a time, reading ramps between them; rows leave as they exit. */
  private decodeByBlock(rows: Row[], step: Step): void {
    const numLayers = this.model.config.numLayers;
    let active = rows;
    for (let layer = 0; layer < numLayers && active.length > 0; layer++) {
      const synced = active.filter((row) => row.seq.layerLengths[layer] === row.position);
      if (synced.length > 0) this.batchedBlock(layer, synced, step);
      for (const row of active) if (row.seq.layerLengths[layer]! < row.position) this.catchUp(row.seq, row.policy, layer, row);
      for (const row of active) row.seq.layerLengths[layer] = row.position + 1;
      if (layer < numLayers - 1) active = this.ramp(layer, active, step);
    }
    if (active.length > 0) this.finalHead(active, step);
  }

  /** One call over the contiguous slot range of `rows`, all at their next position. */
  private batchedBlock(layer: number, rows: Row[], step: Step): void {
    const dim = this.model.config.dim;
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, layer, step);
    const output = this.buffers.get('output', numRows * dim);
    const started = performance.now();
    this.model.runBlock(layer, input, output, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv);
    this.costs.addBlock(layer, performance.now() - started);
    for (const row of rows) row.hidden.set(output.subarray((row.seq.slot - firstSlot) * dim, (row.seq.slot - firstSlot + 1) * dim));
  }

  /**
   * The contiguous slot range a batched call over `rows` covers, its input
   * (each row's hidden state, zeros elsewhere) and each slot's past length at
   * `layer`. Slots in the range that are not part of the call get a stray write
   * at their own next position for that layer, which their own later call
   * overwrites before anything reads it.
   */
  private slotRange(rows: Row[], layer: number, step: Step): { firstSlot: number; numRows: number; input: Float32Array; pastLengths: Int32Array } {
    const dim = this.model.config.dim;
    const slots = rows.map((row) => row.seq.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const input = this.buffers.get('input', numRows * dim).fill(0);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = Math.min(step.slotLengths[firstSlot + r]?.[layer] ?? 0, this.kv.capacity - 1);
    for (const row of rows) input.set(row.hidden, (row.seq.slot - firstSlot) * dim);
    return { firstSlot, numRows, input, pastLengths };
  }

  /** The ramp after `layer`: reads the rows whose policy looks here, hands on the ones that exit; returns the rest. */
  private ramp(layer: number, active: Row[], step: Step): Row[] {
    const looking = active.filter((row) => row.policy.looksAt(layer));
    if (looking.length === 0) return active;
    const dim = this.model.config.dim;
    const gathered = this.buffers.get('gathered', looking.length * dim);
    looking.forEach((row, i) => gathered.set(row.hidden, i * dim));
    const { logits, width } = this.rampLogits(layer, gathered, looking.length);
    const exited = new Set<Row>();
    looking.forEach((row, i) => {
      const rowLogits = logits.subarray(i * width, (i + 1) * width);
      const reading = { layer, ...scoreLogits(rowLogits, this.options.confidence) };
      row.readings.push(reading);
      if (!row.policy.exits(layer, reading.confidence)) return;
      exited.add(row);
      row.seq.deferred.push({ position: row.position, hidden: row.hidden, layer, exitLayer: layer, readings: row.readings });
      this.sample(row.seq, rowLogits, { layer, confidence: reading.confidence }, step);
    });
    return exited.size === 0 ? active : active.filter((row) => !exited.has(row));
  }

  /** The rows that went all the way: the head, their verdicts, their tokens. */
  private finalHead(rows: Row[], step: Step): void {
    const { dim, vocabSize } = this.model.config;
    const gathered = this.buffers.get('gathered', rows.length * dim);
    rows.forEach((row, i) => gathered.set(row.hidden, i * dim));
    const started = performance.now();
    const logits = this.head(gathered, rows.length);
    this.costs.addHead(performance.now() - started);
    rows.forEach((row, i) => {
      const rowLogits = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const finalArgmax = argmax(rowLogits);
      row.policy.feedback?.(verdict(row.readings, finalArgmax, null));
      const trace = row.policy.kind === 'trace' ? { ramps: row.readings, finalArgmax } : undefined;
      this.sample(row.seq, rowLogits, { layer: null, confidence: null, trace }, step);
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
    const output = new Float32Array(numRows * dim);
    const rows = { firstSlot: seq.slot, numRows: 1, seqLen: numRows, pastLengths: [seq.layerLengths[layer]!] };
    this.model.runBlock(layer, input, output, rows, this.kv);
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
        const logits = this.head(hidden, waiting.length);
        waiting.forEach((d, i) => feedback(verdict(d.readings, argmax(logits.subarray(i * vocabSize, (i + 1) * vocabSize)), d.exitLayer)));
      } else {
        const { logits, width } = this.rampLogits(layer, hidden, waiting.length);
        waiting.forEach((d, i) => d.readings.push({ layer, ...scoreLogits(logits.subarray(i * width, (i + 1) * width), this.options.confidence) }));
      }
    }
    if (isLast) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
  }

  private prefill(seq: Sequence, numTokens: number, step: Step): void {
    const { dim, numLayers, vocabSize } = this.model.config;
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    let input = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const rows = { firstSlot: seq.slot, numRows: 1, seqLen: numTokens, pastLengths: Int32Array.of(start) };
    const endsPrompt = start + numTokens === seq.tokens.length;
    if (this.model.hasFused) {
      const logits = this.buffers.get('fused-logits', vocabSize);
      this.model.runFused(input, rows, this.kv, logits);
      seq.layerLengths.fill(start + numTokens);
      if (endsPrompt) this.sample(seq, logits, { layer: null, confidence: null }, step);
      return;
    }
    for (let layer = 0; layer < numLayers; layer++) {
      const output = this.buffers.get(layer % 2 ? 'odd' : 'even', input.length);
      this.model.runBlock(layer, input, output, rows, this.kv);
      input = output;
    }
    seq.layerLengths.fill(start + numTokens);
    if (!endsPrompt) return;
    const logits = this.head(input.slice((numTokens - 1) * dim), 1).subarray(0, vocabSize);
    this.sample(seq, logits, { layer: null, confidence: null }, step);
  }

  /** Final-head logits [rows, vocab] over `hidden` rows. */
  private head(hidden: Float32Array, numRows: number): Float32Array {
    const logits = this.buffers.get('logits', numRows * this.model.config.vocabSize);
    this.model.runHead(hidden, numRows, logits);
    return logits;
  }

  /**
   * The ramp after `layer` over `hidden` rows: logits [rows, width], timed
   * for the controller. Every ramp call goes through here. Today one ramp
   * head serves every layer and its column i is token id i.
   */
  private rampLogits(layer: number, hidden: Float32Array, numRows: number): { logits: Float32Array; width: number } {
    const width = this.model.rampVocab;
    const logits = this.buffers.get('ramp', numRows * width);
    const started = performance.now();
    this.model.runRamp(hidden, numRows, logits);
    this.costs.addRamp(performance.now() - started);
    return { logits, width };
  }

  /** Samples the next token from one row of logits; a ramp's token also goes to onExit at once. */
  private sample(seq: Sequence, logits: Float32Array, exit: ExitInfo, step: Step): void {
    const tokenId = sample(logits, seq.request.sampling, seq.rng);
    const topN = seq.request.logprobs;
    const sampled = { seq, tokenId, exit: topN === undefined ? exit : { ...exit, logprobs: logprobsOf(logits, tokenId, topN) } };
    step.tokens.push(sampled);
    if (exit.layer !== null) step.onExit(sampled);
  }
}
