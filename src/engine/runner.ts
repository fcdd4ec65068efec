/**
 * Executes a StepPlan on the model, one block at a time, with early exits.
 *
 * Decode: the batch climbs the blocks together. At each active ramp the
 * rows that are confident enough leave: their token is sampled from the
 * ramp, handed to the engine at once (so its chunk streams now, not at the
 * end of the step), and the position's deeper blocks are deferred. The next
 * position of that sequence that does not exit runs the deferred positions
 * through the deep blocks together with itself in one causal pass per block
 * (the catch-up), which fills the deep KV cache exactly and yields the full
 * model's verdict on every exited token: the feedback the controller tunes on.
 *
 * Prompt chunks run after the decode batch, all blocks, no exits.
 *
 * @module
 */
import type { KvCache, Model } from '../model/index.js';
import { scoreLogits, type ConfidenceKind, type ExitController, type TokenRecord } from '../exits/index.js';
import { argmax, logprobsOf, sample, type TokenLogprobs } from './sampler.js';
import type { Scheduler, StepPlan } from './scheduler.js';
import type { RampScore, Sequence } from './sequence.js';
import { CostMeter } from './cost-meter.js';

/** How a token left the model, for the client and the playground. */
export interface ExitInfo {
  /** The ramp's layer, or null for the full model. */
  layer: number | null;
  /** The ramp's confidence when it exited there. */
  confidence: number | null;
  /** Every ramp evaluated for this token, with the full model's argmax (trace mode only). */
  trace?: { ramps: RampScore[]; finalArgmax: number };
  logprobs?: TokenLogprobs;
}

export type TokenSink = (seq: Sequence, token: number, exit: ExitInfo) => void;

export interface ExitOptions {
  /** null: exits off for every request. */
  controller: ExitController | null;
  confidence: ConfidenceKind;
  /** A sequence exits at most this many positions in a row before the deep blocks must catch up. */
  maxDeferred: number;
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
function verdict(scores: RampScore[], finalArgmax: number, exitLayer: number | null): TokenRecord {
  return { ramps: scores.map((s) => ({ layer: s.layer, confidence: s.confidence, agrees: s.argmax === finalArgmax })), exitLayer };
}

/** One decoding row of the batch during a step. */
interface Row {
  seq: Sequence;
  position: number;
  hidden: Float32Array; // [dim]: output of the last block run for this position
  scores: RampScore[];
}

export class ModelRunner {
  /** Reused activation buffers by purpose and size: decoding asks for the same few every step. */
  private readonly buffers = new Map<string, Float32Array>();
  readonly costs: CostMeter;
  /** Decode steps that could have run fused while ramps were active (see timesFusedNow). */
  private stepsOffFused = 0;
  /** Decode steps that could have been shadow steps. */
  private shadowCandidates = 0;
  /** This step is a shadow step. */
  private shadowing = false;

  constructor(
    readonly model: Model,
    readonly kv: KvCache,
    private readonly scheduler: Scheduler,
    private readonly exits: ExitOptions,
    private readonly emit: TokenSink,
  ) {
    this.costs = new CostMeter(model.config.numLayers);
  }

  execute(plan: StepPlan): void {
    // The decode batch goes first: its stray writes into rows that are mid-prompt
    // land at positions the prompt chunks below then overwrite.
    if (plan.decode.length > 0) this.decode(plan.decode);
    this.shadowing = false;
    for (const { seq, numTokens } of plan.prefill) this.prefill(seq, numTokens);
  }

  /** Runs a finished sequence's deferred positions through the deep blocks, for their verdicts. */
  flush(seq: Sequence): void {
    if (!this.feedsController(seq)) return;
    const numLayers = this.model.config.numLayers;
    while (seq.deferred.length > 0) {
      const layer = Math.min(...seq.deferred.map((d) => d.layer)) + 1;
      if (layer >= numLayers) break;
      this.catchUp(seq, layer, null);
    }
  }

  private buffer(purpose: string, length: number): Float32Array {
    const key = `${purpose}:${length}`;
    let buffer = this.buffers.get(key);
    if (!buffer) {
      if (this.buffers.size >= 256) this.buffers.clear(); // prompt chunks come in many lengths
      buffer = new Float32Array(length);
      this.buffers.set(key, buffer);
    }
    return buffer;
  }

  /** Final-head logits [rows, vocab] over `hidden` rows. */
  private head(hidden: Float32Array, numRows: number): Float32Array {
    const logits = this.buffer('logits', numRows * this.model.config.vocabSize);
    this.model.runHead(hidden, numRows, logits);
    return logits;
  }

  /** Ramp logits [rows, rampWidth] over block `layer`'s output rows, timed for the controller. */
  private rampLogits(layer: number, hidden: Float32Array, numRows: number): Float32Array {
    const logits = this.buffer('ramp', numRows * this.model.rampWidth);
    const started = performance.now();
    this.model.runRamp(layer, hidden, numRows, logits);
    this.costs.addRamp(performance.now() - started);
    return logits;
  }

  /** A ramp's score on one row of its logits, its argmax as a token id; the rest column (no single token) scores 0. */
  private rampScore(layer: number, rowLogits: Float32Array): RampScore {
    const { argmax, confidence } = scoreLogits(rowLogits, this.exits.confidence);
    const token = this.model.rampToken(argmax);
    return { layer, argmax: token, confidence: token < 0 ? 0 : confidence };
  }

  private decode(batch: Sequence[]): void {
    const { dim, numLayers, vocabSize } = this.model.config;
    let active: Row[] = batch.map((seq) => {
      const position = seq.numComputed;
      return { seq, position, hidden: this.model.embed([seq.tokens[position]!], [position]), scores: [] };
    });
    this.shadowing = this.isShadowStep(batch);
    if (this.model.hasFused && !this.shadowing && (active.every((row) => this.needsNoSingleBlock(row)) || this.timesFusedNow(active))) return this.decodeFused(active);
    for (let layer = 0; layer < numLayers && active.length > 0; layer++) {
      const synced = active.filter((r) => r.seq.layerLengths[layer] === r.position);
      if (synced.length > 0) this.batchedBlock(layer, synced);
      for (const row of active) if (row.seq.layerLengths[layer]! < row.position) this.catchUp(row.seq, layer, row);
      for (const row of active) row.seq.layerLengths[layer] = row.position + 1;
      if (layer < numLayers - 1) active = this.ramp(layer, active);
    }
    if (active.length === 0) return;
    const gathered = this.buffer('gathered', active.length * dim);
    active.forEach((row, i) => gathered.set(row.hidden, i * dim));
    const started = performance.now();
    const logits = this.head(gathered, active.length);
    this.costs.addHead(performance.now() - started);
    active.forEach((row, i) => {
      const rowLogits = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const finalArgmax = argmax(rowLogits);
      if (this.feedsController(row.seq)) {
        const record = verdict(row.scores, finalArgmax, null);
        if (this.shadowing) this.exits.controller!.recordShadow(record);
        else this.exits.controller!.record(record);
      }
      const trace = row.seq.request.traceRamps ? { ramps: row.scores, finalArgmax } : undefined;
      this.sampleAndEmit(row.seq, rowLogits, { layer: null, confidence: null, trace });
    });
  }

  /** True when a row can take the whole model in one call this step: nothing deferred, no ramp to look at. */
  private needsNoSingleBlock(row: Row): boolean {
    if (row.seq.deferred.length > 0) return false;
    for (let layer = 0; layer < this.model.config.numLayers - 1; layer++) if (this.looksAt(row, layer)) return false;
    return true;
  }

  /**
   * A shadow step scores every candidate ramp and lets no row exit: the
   * controller learns what ramps that are not active could do, without the
   * cost of trying them (on a small model, leaving the fused graph for every
   * token). Only steps where every row feeds the controller and none has
   * deferred positions qualify.
   */
  private isShadowStep(batch: Sequence[]): boolean {
    if (!batch.every((seq) => this.feedsController(seq) && seq.deferred.length === 0)) return false;
    const period = this.exits.controller!.hasShadowEvidence ? SHADOW_STEPS : SHADOW_STEPS_EARLY;
    return ++this.shadowCandidates % period === 0;
  }

  /**
   * While ramps are active, one decode step in FUSED_SAMPLE_STEPS runs fused
   * anyway when every row may (nothing deferred, no plan or trace to follow),
   * so that the controller knows what leaving the fused graph costs.
   */
  private timesFusedNow(rows: Row[]): boolean {
    const mayFuse = (row: Row) => row.seq.deferred.length === 0 && (this.feedsController(row.seq) || this.needsNoSingleBlock(row));
    return rows.every(mayFuse) && ++this.stepsOffFused % FUSED_SAMPLE_STEPS === 0;
  }

  /** The whole batch through the fused graph: one call for every block and the head. */
  private decodeFused(rows: Row[]): void {
    const vocabSize = this.model.config.vocabSize;
    // layerLengths[0] is the longest: every layer writes a stray row's position there before reading it.
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, 0);
    const logits = this.buffer('fused-logits', numRows * vocabSize);
    const started = performance.now();
    this.model.runFused(input, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv, logits);
    this.costs.addFused(performance.now() - started);
    for (const row of rows) {
      row.seq.layerLengths.fill(row.position + 1);
      // The controller counts tokens even while no ramp is active: its clock decides when to try ramps again.
      if (this.feedsController(row.seq)) this.exits.controller!.record({ ramps: [], exitLayer: null });
      const offset = (row.seq.slot - firstSlot) * vocabSize;
      this.sampleAndEmit(row.seq, logits.subarray(offset, offset + vocabSize), { layer: null, confidence: null });
    }
  }

  /**
   * The contiguous slot range a batched call over `rows` covers, its input
   * (each row's hidden state, zeros elsewhere) and each slot's past length at
   * `layer`. Slots in the range that are not part of the call get a stray write
   * at their own next position for that layer, which their own later call
   * overwrites before anything reads it.
   */
  private slotRange(rows: Row[], layer: number): { firstSlot: number; numRows: number; input: Float32Array; pastLengths: Int32Array } {
    const dim = this.model.config.dim;
    const slots = rows.map((r) => r.seq.slot);
    const firstSlot = Math.min(...slots);
    const numRows = Math.max(...slots) - firstSlot + 1;
    const input = this.buffer('input', numRows * dim).fill(0);
    const pastLengths = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) pastLengths[r] = Math.min(this.scheduler.ownerOf(firstSlot + r)?.layerLengths[layer] ?? 0, this.kv.capacity - 1);
    for (const row of rows) input.set(row.hidden, (row.seq.slot - firstSlot) * dim);
    return { firstSlot, numRows, input, pastLengths };
  }

  /** One call over the contiguous slot range of `rows`, all at their next position. */
  private batchedBlock(layer: number, rows: Row[]): void {
    const dim = this.model.config.dim;
    const { firstSlot, numRows, input, pastLengths } = this.slotRange(rows, layer);
    const output = this.buffer('output', numRows * dim);
    const started = performance.now();
    this.model.runBlock(layer, input, output, { firstSlot, numRows, seqLen: 1, pastLengths }, this.kv);
    this.costs.addBlock(layer, performance.now() - started);
    for (const row of rows) row.hidden.set(output.subarray((row.seq.slot - firstSlot) * dim, (row.seq.slot - firstSlot + 1) * dim));
  }

  /**
   * Runs `layer` over a sequence's deferred positions that wait for it, plus
   * the current position when there is one: one causal pass, batch 1.
   * At ramp layers the deferred positions get that ramp's verdict too; after
   * the last layer they get the full model's, and leave the deferred list.
   */
  private catchUp(seq: Sequence, layer: number, current: Row | null): void {
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

    const controller = this.exits.controller;
    if (!controller || !this.feedsController(seq)) {
      if (layer === numLayers - 1) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
      return;
    }
    const isLast = layer === numLayers - 1;
    const isRamp = !isLast && controller.activeRamps().some((r) => r.layer === layer);
    if (!isLast && !isRamp) return;
    const hidden = output.subarray(0, waiting.length * dim);
    const width = isRamp ? this.model.rampWidth : vocabSize;
    const logits = isRamp ? this.rampLogits(layer, hidden, waiting.length) : this.head(hidden, waiting.length);
    waiting.forEach((d, i) => {
      const rowLogits = logits.subarray(i * width, (i + 1) * width);
      if (isRamp) d.scores.push(this.rampScore(layer, rowLogits));
      else controller.record(verdict(d.scores, argmax(rowLogits), d.exitLayer));
    });
    if (isLast) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
  }

  /** The ramp after `layer`: scores the rows that look here, emits the ones that exit; returns the rest. */
  private ramp(layer: number, active: Row[]): Row[] {
    const looking = active.filter((row) => this.looksAt(row, layer));
    if (looking.length === 0) return active;
    const dim = this.model.config.dim;
    const width = this.model.rampWidth;
    const gathered = this.buffer('gathered', looking.length * dim);
    looking.forEach((row, i) => gathered.set(row.hidden, i * dim));
    const logits = this.rampLogits(layer, gathered, looking.length);
    const exited = new Set<Row>();
    looking.forEach((row, i) => {
      const rowLogits = logits.subarray(i * width, (i + 1) * width);
      const score = this.rampScore(layer, rowLogits);
      row.scores.push(score);
      if (!this.exitsAt(row, layer, score.confidence)) return;
      exited.add(row);
      row.seq.deferred.push({ position: row.position, hidden: row.hidden, layer, exitLayer: layer, scores: row.scores });
      // Sampled among the ramp's tokens only (never the rest column), then mapped to token ids.
      const tokens = rowLogits.subarray(0, this.model.rampVocab);
      this.sampleAndEmit(row.seq, tokens, { layer, confidence: score.confidence }, (column) => this.model.rampToken(column));
    });
    return exited.size === 0 ? active : active.filter((row) => !exited.has(row));
  }

  /** Requests under the controller (not benchmark plans or traces) are its feedback. */
  private feedsController(seq: Sequence): boolean {
    const request = seq.request;
    return this.exits.controller !== null && request.earlyExit && !request.exitPlan && !request.traceRamps;
  }

  /** Whether a row evaluates the ramp after `layer`. */
  private looksAt(row: Row, layer: number): boolean {
    const request = row.seq.request;
    if (request.traceRamps || this.shadowing) return this.model.manifest.rampCandidates.includes(layer);
    if (request.exitPlan) return request.exitPlan[row.seq.numGenerated] === layer;
    if (!this.feedsController(row.seq)) return false;
    return this.exits.controller!.activeRamps().some((r) => r.layer === layer);
  }

  private exitsAt(row: Row, layer: number, confidence: number): boolean {
    const request = row.seq.request;
    if (request.traceRamps || this.shadowing) return false;
    if (request.exitPlan) return true; // looksAt already matched the planned layer
    if (row.seq.deferred.length >= this.exits.maxDeferred) return false;
    return this.exits.controller!.exitAt(layer, confidence);
  }

  private prefill(seq: Sequence, numTokens: number): void {
    const { dim, numLayers, vocabSize } = this.model.config;
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    let input = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const rows = { firstSlot: seq.slot, numRows: 1, seqLen: numTokens, pastLengths: Int32Array.of(start) };
    if (this.model.hasFused) {
      const logits = this.buffer('fused-logits', vocabSize);
      this.model.runFused(input, rows, this.kv, logits);
      seq.layerLengths.fill(start + numTokens);
      if (start + numTokens === seq.tokens.length) this.sampleAndEmit(seq, logits, { layer: null, confidence: null });
      return;
    }
    for (let layer = 0; layer < numLayers; layer++) {
      const output = this.buffer(layer % 2 ? 'odd' : 'even', input.length);
      this.model.runBlock(layer, input, output, rows, this.kv);
      input = output;
    }
    seq.layerLengths.fill(start + numTokens);
    if (start + numTokens < seq.tokens.length) return;
    const logits = this.head(input.slice((numTokens - 1) * dim), 1).subarray(0, vocabSize);
    this.sampleAndEmit(seq, logits, { layer: null, confidence: null });
  }

  /** Samples the next token from one row of logits (column c stands for token `tokenOf(c)`) and hands it to the engine. */
  private sampleAndEmit(seq: Sequence, logits: Float32Array, exit: ExitInfo, tokenOf = (column: number) => column): void {
    const column = sample(logits, seq.request.sampling, seq.rng);
    const topN = seq.request.logprobs;
    if (topN === undefined) return this.emit(seq, tokenOf(column), exit);
    const { logprob, top } = logprobsOf(logits, column, topN);
    this.emit(seq, tokenOf(column), { ...exit, logprobs: { logprob, top: top.map((t) => ({ ...t, token: tokenOf(t.token) })) } });
  }
}
