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
 * Lossless mode (self-speculative decoding): a token that leaves a ramp is a
 * draft. It feeds the next position but is not streamed; its position is
 * deferred as above. The catch-up pass that reaches the head is then the
 * verification: the full model's token at each drafted position (drawn with
 * the same key as the draft) is compared with the draft, the agreeing
 * prefix goes out as the full model's tokens, and at the first disagreement
 * the full model's token goes out instead, the later drafts and the current
 * position are dropped and every layer's length rolls back to just past the
 * rejected position (`verify`). The text is exactly exits off's.
 *
 * A greedy lossless sequence decoding alone also drafts from its own text
 * before any ramp does (prompt lookup, as vLLM's n-gram speculator): where the
 * text so far repeats a stretch it had earlier, the tokens that followed
 * that stretch are drafts that cost no model call (`draftAhead`);
 * the position after them runs the whole model over them and verifies
 * them as above. A sequence whose context drafts the full model keeps
 * rejecting drafts them only now and then (ContextDraftGate). Where the
 * model has a trained lookahead head, each fused step and verification of
 * a lossless sequence also guesses the token after the one it emits (drawn
 * from the head's logits with that token's key, as a ramp's token is), and
 * the next step drafts that guess first, before the text's (`draftAhead`).
 * A batch of lossless rows drafts each row's guess and verifies them all in
 * one call over two positions a row (`decodeGuesses`).
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
import { FULL_MODEL_TOKEN, type ConfidenceKind, type DraftController, type ExitController, type TokenRecord } from '../exits/index.js';
import { contextConfidence, contextEvidence, contextMatch, type Model, type SpanEnd } from '../model/index.js';
import type { CostMeter } from './cost-meter.js';
import { choosePolicy, feedsController, mayDraft, type ExitPolicy, type PolicyContext } from './exit-policy.js';
import { argmax, logprobsOf, sample, type TokenLogprobs } from './sampler.js';
import { ModelCalls, type SlotLengths, type SpanRow } from './model-calls.js';
import type { StepPlan } from './scheduler.js';
import type { DeferredPosition, Sequence } from './sequence.js';
import type { RampReading } from './types.js';

/** How a token left the model, for the client and the playground. */
export interface ExitInfo {
  /** The ramp's layer (the token went to `onExit` at once), or null for the full model. */
  layer: number | null;
  /** The ramp's confidence when it exited there. */
  confidence: number | null;
  /** Lossless: `layer` (null: the context) drafted the token and the full model verified it; it was not streamed early. */
  verified?: true;
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
  /** Lossless mode's draft controller (null when exits are off). */
  drafts: DraftController | null;
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
/** While lossless sequences run and the draft controller lacks records for some ramp: drafting waits on them. */
const SHADOW_STEPS_DRAFTS = 16;

/**
 * Context drafts (prompt lookup): at most CONTEXT_DRAFT_MAX a pass, each the
 * token that followed an earlier occurrence of at least
 * CONTEXT_DRAFT_MIN_MATCH tokens that end the text. On stories260K the
 * fused graph's pass over 4 drafts and the position after them costs about
 * 1.4 single-position steps (211 against 154 µs in the engine). Replaying
 * the greedy continuations of prompts.json with a pass at 230 + 14 µs a
 * draft against 168 for a step, 4 drafts gave 1.21x, 3 gave 1.20x, 6 and 8
 * no more, and matches of 1 token 1.12x (ContextDraftGate decides when a
 * sequence drafts).
 * Only greedy sequences draft from their context: text sampled at 0.8 kept
 * about 25% of them, too few to pay for the positions they add to a pass
 * (lossless there ran 0.91-0.94x exits off with them, 0.96-0.99x without).
 */
const CONTEXT_DRAFT_MAX = 4;
const CONTEXT_DRAFT_MIN_MATCH = 2;
/** The exitLayer of a position drafted from the context: no block ran for it. */
const CONTEXT_DRAFT = -1;
/** The exitLayer of a position the lookahead head drafted (in the step before): no block ran for it either. */
const LOOKAHEAD_DRAFT = -2;

/** Where a lossless draft came from, as the draft controller counts it. */
function draftSource(exitLayer: number): number | 'context' | 'lookahead' {
  if (exitLayer === CONTEXT_DRAFT) return 'context';
  return exitLayer === LOOKAHEAD_DRAFT ? 'lookahead' : exitLayer;
}

/** What a token's exit cost the step it was decided in, for the controller (see exitSavingMs). */
interface ExitAccount {
  /** Sequences decoded in that step. */
  stepRows: number;
  /** Calls its deferral added later: a catch-up run apart from the batch (its share of them), in ms. */
  overheadMs?: number;
}

/**
 * The full model's verdict on a position: which ramps would have streamed
 * the token it produces. Ramp and full model draw with the same key (see
 * sampler.ts), so "agrees" means the same at every temperature.
 */
function verdict(readings: RampReading[], finalToken: number, exitLayer: number | null, account: ExitAccount): TokenRecord {
  return { ramps: readings.map((r) => ({ layer: r.layer, confidence: r.confidence, agrees: r.token === finalToken })), exitLayer, ...account };
}

const sameColumn = (column: number): number => column;

/** One decoding row of the batch during a step. */
interface Row {
  seq: Sequence;
  policy: ExitPolicy;
  position: number;
  hidden: Float32Array; // [dim]: output of the last block run for this position
  readings: RampReading[];
  /** Lossless: a draft before this position was rejected; every layer goes back to this length and the row emits nothing. */
  rollbackTo?: number;
}

/** What the parts of one execute() call share. */
interface Step {
  slotLengths: SlotLengths;
  /** Sequences in the decode batch. */
  decodeRows: number;
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
    this.policies = {
      controller: options.controller,
      drafts: options.drafts,
      candidates: model.manifest.rampCandidates,
      maxDeferred: options.maxDeferred,
      maxContext: options.maxContext,
    };
  }

  /** What the model calls have cost so far, for the controller. */
  get costs(): CostMeter {
    return this.calls.costs;
  }

  /** What the KV cache holds for `seq` at `layer` (tests, diagnostics). */
  cached(seq: Sequence, layer: number): { keys: Float32Array; values: Float32Array } {
    return this.calls.cached(seq, layer);
  }

  execute(plan: StepPlan, onExit: ExitSink): StepResult {
    this.calls.fitKv(plan.longestSequence, plan.slotLengths);
    const step: Step = { slotLengths: plan.slotLengths, decodeRows: plan.decode.length, tokens: [], onExit };
    // The decode batch goes first: its stray writes into rows that are mid-prompt
    // land at positions the prompt chunks below then overwrite.
    if (plan.decode.length > 0) this.decode(plan.decode, step);
    for (const { seq, numTokens } of plan.prefill) this.prefill(seq, numTokens, step);
    return { tokens: step.tokens };
  }

  /** Runs an ended sequence's deferred positions through the deep blocks, for their verdicts (a lossless sequence's drafts are dropped). */
  settle(seq: Sequence): void {
    if (seq.lossless) {
      seq.deferred.length = 0;
      seq.drafts.length = 0;
      return;
    }
    if (!feedsController(seq, this.policies)) return;
    const policy = choosePolicy(seq, this.policies, false);
    const numLayers = this.model.config.numLayers;
    while (seq.deferred.length > 0) {
      const from = Math.min(...seq.deferred.map((d) => d.layer)) + 1;
      if (from >= numLayers) break;
      this.catchUp(seq, policy, from, this.spanEnd(from, [{ seq, policy }]), null, true, null);
    }
  }

  private decode(batch: Sequence[], step: Step): void {
    const started = performance.now();
    const planned = this.policies.drafts?.plan != null;
    const shadow = this.isShadowStep(batch);
    const rows = batch.map((seq) => this.rowAt(seq, shadow));
    const only = batch.length === 1 && rows[0]!.policy.kind === 'lossless' ? batch[0]! : null;
    const drafted = only !== null && this.draftAhead(only, step);
    if (drafted) rows[0] = this.rowAt(only, shadow);
    const guessing = !drafted && !shadow && rows.every((row) => this.guesses(row.seq, row.policy, only !== null) && this.needsNoSingleBlock(row));
    const guesses = guessing ? rows.map((row) => this.usableGuess(row.seq)) : [];
    // A guess is for the step right after the one that made it: this step's own calls guess anew, where they do.
    for (const seq of batch) seq.lookahead = -1;
    let fused = false;
    if (guesses.some((guess) => guess >= 0)) this.decodeGuesses(rows, guesses, step);
    else {
      fused = this.model.hasFused && !shadow && (rows.every((row) => this.needsNoSingleBlock(row)) || this.timesFusedNow(rows));
      if (fused) this.decodeFused(rows, step, guessing || (only !== null && this.guesses(only, rows[0]!.policy, true)));
      else this.decodeBySpans(rows, step);
    }
    // Alone, it drafts on within the step, one span call per draft and none of a step's other
    // work, until a position goes all the way and verifies the run. In a batch the other rows
    // need their tokens: there it drafts one position per step.
    while (only && only.deferred.length > 0 && only.numPending === 1) {
      this.calls.growKv(only.numFed, step.slotLengths);
      this.decodeBySpans([this.rowAt(only, false)], step);
    }
    // A sequence decoding alone times its steps for its controller's clock (which judges the ramps' exits or drafts):
    // a lossless one every step, the passes over the lookahead head's and the text's drafts too, with its plan or without.
    const ms = performance.now() - started;
    if (only) this.policies.drafts?.recordStep(ms, step.tokens.length, planned);
    else if (batch.length === 1 && rows[0]!.policy.kind === 'controller') this.policies.controller?.recordStep(ms, step.tokens.length, fused);
  }

  /**
   * Drafts what costs no model call: the lookahead head's guess from the
   * step before, then what the sequence's own text suggests (see
   * CONTEXT_DRAFT_MAX). Each draft defers the position it follows, with
   * nothing computed for it yet, so that the next position's pass runs the
   * whole model over them. Returns whether it drafted.
   */
  private draftAhead(seq: Sequence, step: Step): boolean {
    // A sampled sequence drafts nothing from its text: its guess alone goes the cheaper way of a batch's (decodeGuesses).
    if (seq.request.sampling.temperature > 0) return false;
    const guess = this.usableGuess(seq);
    if (seq.deferred.length > 0) return false;
    const eos = this.model.config.eosTokenIds;
    const draft = (token: number, exitLayer: number) => {
      const position = seq.numFed - 1;
      const hidden = this.model.embed([seq.tokenAt(position)], [position]);
      seq.deferred.push({ position, hidden, layer: -1, exitLayer, readings: [], stepRows: 1, overheadMs: 0 });
      seq.drafts.push(token);
    };
    if (guess >= 0) draft(guess, LOOKAHEAD_DRAFT);
    const maxDrafts = seq.drafts.length + CONTEXT_DRAFT_MAX;
    if (seq.contextGate.opens()) {
      while (mayDraft(seq, maxDrafts, this.policies)) {
        const match = contextMatch((i) => seq.tokenAt(i), seq.numFed - 1);
        if (match.length < CONTEXT_DRAFT_MIN_MATCH || eos.includes(match.token)) break;
        draft(match.token, CONTEXT_DRAFT);
      }
    }
    if (seq.drafts.length === 0) return false;
    this.calls.growKv(seq.numFed, step.slotLengths);
    return true;
  }

  /**
   * Whether `seq`'s passes run the lookahead head: lossless, under the draft
   * controller (no forced plan), on a model with one, and greedy unless it
   * decodes `alone`. Alone, every fused step and verification does; in a
   * batch, when every row may (nothing deferred, no ramp to read;
   * decodeGuesses). A sampled row's guess held about half the time at
   * temperature 0.8 on stories260K (greedy: 72%): alone that ran lossless at
   * 1.03x exits off (0.94x without guesses), but the call over two
   * positions a row made batches of 4 and 16 rows slower (0.85x and 0.81x
   * against 0.96x).
   */
  private guesses(seq: Sequence, policy: ExitPolicy, alone: boolean): boolean {
    return this.model.hasLookahead && policy.kind === 'lossless' && (alone || seq.request.sampling.temperature === 0);
  }

  /**
   * The lookahead head's guess of `seq`'s token at `index`, from its logits
   * (`guessLogits`) at the position whose token, `token`, the full model's
   * `logits` there gave, or −1. The head reads the full model's most likely
   * token there, so a sampled row whose draw was another one has no guess.
   * The guess is drawn as a ramp's token is, with the key of `index`: where
   * the head's distribution is the full model's, so is its draw.
   */
  private guessAfter(seq: Sequence, index: number, token: number, logits: Float32Array, guessLogits: Float32Array): number {
    if (seq.request.sampling.temperature > 0 && token !== argmax(logits)) return -1;
    return this.rampToken(this.draw(seq, index, guessLogits, this.rampToken));
  }

  /**
   * The sequence's guess when it may be drafted (there is one, it does not
   * end the text, and a token after it still fits; the second position
   * fits the context too, since a request's prompt and max_tokens do), else −1.
   */
  private usableGuess(seq: Sequence): number {
    const guess = seq.lookahead;
    return guess >= 0 && !this.model.config.eosTokenIds.includes(guess) && mayDraft(seq, 1, this.policies) ? guess : -1;
  }

  /**
   * A batch of lossless rows with the lookahead head's guesses
   * (`guesses`, per row; −1: none usable): one fused call over two
   * positions a row, its own and its guess (a row without one feeds its own
   * token again there, and that position is dropped). Where the full model's token is the guess, the row
   * emits it (verified) and the token after it; else the full model's token,
   * and every layer keeps only the row's own position. Each position's guess
   * of the token after next is kept for the next step.
   */
  private decodeGuesses(rows: Row[], guesses: number[], step: Step): void {
    const vocabSize = this.model.config.vocabSize;
    const seconds = rows.map((row, i) => this.model.embed([guesses[i]! >= 0 ? guesses[i]! : row.seq.tokenAt(row.position)], [row.position + 1]));
    this.calls.growKv(Math.max(...rows.map((row) => row.seq.numFed + 1)), step.slotLengths);
    const { logits, firstSlot, lookahead } = this.calls.fusedPairs(rows, seconds, step.slotLengths);
    const width = this.model.rampWidth;
    rows.forEach((row, i) => {
      const at = 2 * (row.seq.slot - firstSlot);
      const logitsAt = (p: number) => logits.subarray((at + p) * vocabSize, (at + p + 1) * vocabSize);
      const token = this.draw(row.seq, row.position + 1, logitsAt(0));
      const held = guesses[i]! >= 0 && token === guesses[i];
      if (guesses[i]! >= 0) this.policies.drafts?.recordOutcome({ layer: 'lookahead', drafted: 1, accepted: held ? 1 : 0 });
      row.policy.feedback?.(FULL_MODEL_TOKEN);
      this.emit(step, row.seq, token, held ? { layer: null, confidence: null, verified: true } : { layer: null, confidence: null }, sameColumn, logitsAt(0));
      let last = { p: 0, token };
      if (held) {
        last = { p: 1, token: this.draw(row.seq, row.position + 2, logitsAt(1)) };
        row.policy.feedback?.(FULL_MODEL_TOKEN);
        this.emit(step, row.seq, last.token, { layer: null, confidence: null }, sameColumn, logitsAt(1));
      }
      row.seq.layerLengths.fill(row.position + 1 + last.p);
      const guessLogits = lookahead.subarray((at + last.p) * width, (at + last.p + 1) * width);
      row.seq.lookahead = this.guessAfter(row.seq, row.position + 2 + last.p, last.token, logitsAt(last.p), guessLogits);
    });
  }

  /** A decode row for the sequence's next position (its last fed token's): its input, and its policy for this step. */
  private rowAt(seq: Sequence, shadow: boolean): Row {
    const position = seq.numFed - 1;
    const hidden = this.model.embed([seq.tokenAt(position)], [position]);
    return { seq, policy: choosePolicy(seq, this.policies, shadow), position, hidden, readings: [] };
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
    const drafts = this.policies.drafts;
    const draftsLearning = drafts !== null && !drafts.hasEvidence && batch.some((seq) => seq.lossless);
    const period = draftsLearning ? SHADOW_STEPS_DRAFTS : controller.hasShadowEvidence ? SHADOW_STEPS : SHADOW_STEPS_EARLY;
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
    const tuned = (row: Row) => row.policy.kind === 'controller' || row.policy.kind === 'lossless';
    const mayFuse = (row: Row) => row.seq.deferred.length === 0 && (tuned(row) || this.needsNoSingleBlock(row));
    return rows.every(mayFuse) && ++this.stepsOffFused % FUSED_SAMPLE_STEPS === 0;
  }

  /** The whole batch through the fused graph: one call for every block and the head. */
  private decodeFused(rows: Row[], step: Step, guessAhead: boolean): void {
    const vocabSize = this.model.config.vocabSize;
    const { logits, firstSlot, lookahead } = this.calls.fusedBatch(rows, step.slotLengths, guessAhead);
    const width = this.model.rampWidth;
    for (const row of rows) {
      row.seq.layerLengths.fill(row.position + 1);
      // The controller counts tokens even while no ramp is active: its clock decides when to try ramps again.
      row.policy.feedback?.(FULL_MODEL_TOKEN);
      const at = row.seq.slot - firstSlot;
      const rowLogits = logits.subarray(at * vocabSize, (at + 1) * vocabSize);
      const token = this.draw(row.seq, row.position + 1, rowLogits);
      if (lookahead) row.seq.lookahead = this.guessAfter(row.seq, row.position + 2, token, rowLogits, lookahead.subarray(at * width, (at + 1) * width));
      this.emit(step, row.seq, token, { layer: null, confidence: null }, sameColumn, rowLogits);
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
    for (let from = 0; from < numLayers && active.length > 0;) {
      const to = this.spanEnd(from, active);
      const synced = active.filter((row) => row.seq.layerLengths[from] === row.position);
      const said = synced.length > 0 ? this.calls.batchedSpan(from, to, this.spanEndKind(to, synced), synced, step.slotLengths) : new Map<Row, SpanRow>();
      // A catch-up beside a batched call is a call the deferral added: its exits pay for it.
      for (const row of active)
        if (row.seq.layerLengths[from]! < row.position) said.set(row, this.catchUp(row.seq, row.policy, from, to, row, synced.length > 0, step)!);
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
      const { reading, column } = this.read(layer, spanRow, row.seq, row.position + 1);
      row.readings.push(reading);
      if (!row.policy.exits(layer, reading.confidence)) continue;
      // An end of text is never a draft: the position after it would be wasted work.
      if (row.seq.lossless && this.model.config.eosTokenIds.includes(reading.token)) continue;
      exited.add(row);
      row.seq.deferred.push({
        position: row.position,
        hidden: row.hidden,
        layer,
        exitLayer: layer,
        readings: row.readings,
        stepRows: step.decodeRows,
        overheadMs: 0,
      });
      if (row.seq.lossless) row.seq.drafts.push(reading.token);
      else this.emit(step, row.seq, column, { layer, confidence: reading.confidence }, this.rampToken, spanRow.logits?.subarray(0, this.model.rampVocab));
    }
    return exited.size === 0 ? active : active.filter((row) => !exited.has(row));
  }

  /** The rows that went all the way: the head's logits from their last span, their verdicts, their tokens. */
  private finalHead(rows: Row[], said: Map<Row, SpanRow>, step: Step): void {
    for (const row of rows) {
      if (row.rollbackTo !== undefined) {
        row.seq.layerLengths.fill(row.rollbackTo);
        continue;
      }
      const spanRow = said.get(row)!;
      const rowLogits = spanRow.logits!;
      const finalToken = this.draw(row.seq, row.position + 1, rowLogits);
      // A lossless pass whose drafts all held guesses after its own position (see verify).
      if (spanRow.lookahead) row.seq.lookahead = this.guessAfter(row.seq, row.position + 2, finalToken, rowLogits, spanRow.lookahead);
      row.policy.feedback?.(verdict(row.readings, finalToken, null, { stepRows: step.decodeRows }));
      const trace = row.policy.kind === 'trace' ? { ramps: row.readings, finalToken } : undefined;
      this.emit(step, row.seq, finalToken, { layer: null, confidence: null, trace }, sameColumn, rowLogits);
    }
  }

  /**
   * Runs the span `from`..`to` over a sequence's deferred positions that
   * wait for it, plus the current position when there is one: one causal
   * pass, batch 1. Where the span ends at a ramp the sequence reads, the
   * deferred positions get that ramp's reading too; where it ends the model
   * they get the full model's verdict, and leave the deferred list. Returns
   * what the span said about the current position. `apart`: the call runs
   * beside the batch's own (or after the sequence ended), so its time is
   * the deferral's overhead, shared by the positions it carries. A lossless
   * sequence's pass that reaches the head verifies its drafts (`verify`).
   */
  private catchUp(seq: Sequence, policy: ExitPolicy, from: number, to: number, current: Row | null, apart: boolean, step: Step | null): SpanRow | null {
    const dim = this.model.config.dim;
    const waiting = seq.deferred.filter((d) => d.layer === from - 1);
    const inputs = waiting.map((d) => d.hidden);
    if (current) inputs.push(current.hidden);
    const isLast = to === this.model.config.numLayers - 1;
    const reads = policy.looksAt(to) && (current !== null || policy.feedback !== null);
    // Sampled rows need the ramp's logits: the current one to draw its token, the deferred ones for their coupled readings.
    const draws = this.drawsFromLogits(seq);
    const end: SpanEnd = isLast ? { kind: 'head' } : reads ? { kind: 'ramp', confidence: this.options.confidence, logits: draws } : { kind: 'hidden' };
    const started = performance.now();
    // Only a pass of the whole model guesses: a catch-up from a ramp runs the deep blocks alone.
    const guessAhead = isLast && from === 0 && step?.decodeRows === 1 && this.guesses(seq, policy, true);
    const { hidden, said } = this.calls.sequenceSpan(from, to, end, seq, seq.layerLengths[from]!, inputs, guessAhead);
    if (apart) for (const d of waiting) d.overheadMs += (performance.now() - started) / waiting.length;
    waiting.forEach((d, i) => {
      if (hidden) d.hidden = hidden.slice(i * dim, (i + 1) * dim);
      d.layer = to;
    });
    if (current && hidden) current.hidden.set(hidden.subarray(waiting.length * dim));
    if (!current) seq.layerLengths.fill(waiting.at(-1)!.position + 1, from, to + 1);

    const feedback = policy.feedback;
    const account = (d: DeferredPosition): ExitAccount => ({ stepRows: d.stepRows, overheadMs: d.overheadMs });
    if (seq.lossless && isLast) {
      if (!current || !step) throw new Error('internal error: drafts are verified only by a position that goes all the way');
      this.verify(seq, policy, waiting, said, current, step, account);
      return said[waiting.length]!;
    }
    if (feedback && isLast) waiting.forEach((d, i) => feedback(verdict(d.readings, this.draw(seq, d.position + 1, said[i]!.logits!), d.exitLayer, account(d))));
    else if (feedback && end.kind === 'ramp') waiting.forEach((d, i) => d.readings.push(this.read(to, said[i]!, seq, d.position + 1).reading));
    if (isLast) seq.deferred.splice(0, seq.deferred.length, ...seq.deferred.filter((d) => !waiting.includes(d)));
    return current ? said[waiting.length]! : null;
  }

  /**
   * The full model's verdict on a lossless sequence's drafts, in order (all
   * its deferred positions, which this pass just ran to the head): each
   * draft the full model's own draw agrees with goes out as its token; at
   * the first that disagrees, the full model's token goes out instead, the
   * later drafts are dropped, and `current` (fed by a dropped draft) rolls
   * every layer back to just past the rejected position (see finalHead).
   */
  private verify(
    seq: Sequence,
    policy: ExitPolicy,
    waiting: DeferredPosition[],
    said: SpanRow[],
    current: Row,
    step: Step,
    account: (d: DeferredPosition) => ExitAccount,
  ): void {
    if (waiting.length !== seq.deferred.length || waiting.length !== seq.drafts.length)
      throw new Error(`internal error: ${waiting.length} positions reached the head but ${seq.drafts.length} drafts wait`);
    let accepted = 0;
    for (const [i, d] of waiting.entries()) {
      const logits = said[i]!.logits!;
      const token = this.draw(seq, d.position + 1, logits);
      policy.feedback?.(verdict(d.readings, token, d.exitLayer, account(d)));
      if (token !== seq.drafts[i]) {
        this.emit(step, seq, token, { layer: null, confidence: null }, sameColumn, logits);
        current.rollbackTo = d.position + 1;
        // The guess after the correction; where every draft holds, the current position's (finalHead).
        const guessLogits = said[i]!.lookahead;
        if (guessLogits) seq.lookahead = this.guessAfter(seq, d.position + 2, token, logits, guessLogits);
        break;
      }
      const byRamp = d.exitLayer >= 0;
      const confidence = byRamp ? (d.readings.find((r) => r.layer === d.exitLayer)?.confidence ?? null) : null;
      this.emit(step, seq, token, { layer: byRamp ? d.exitLayer : null, confidence, verified: true }, sameColumn, logits);
      accepted++;
    }
    this.countDrafts(seq, waiting, accepted);
    seq.deferred.length = 0;
    seq.drafts.length = 0;
  }

  /**
   * Credits a verified run's drafts to where they came from. A run holds
   * them by source, in order (the lookahead head's, the text's, a ramp's); a
   * source's drafts count only when verification reached its first one.
   */
  private countDrafts(seq: Sequence, waiting: DeferredPosition[], accepted: number): void {
    for (let first = 0; first < waiting.length && first <= accepted;) {
      const source = draftSource(waiting[first]!.exitLayer);
      let end = first;
      while (end < waiting.length && draftSource(waiting[end]!.exitLayer) === source) end++;
      const held = Math.min(end, accepted) - first;
      if (source === 'context') seq.contextGate.record(held);
      this.policies.drafts?.recordOutcome({ layer: source, drafted: end - first, accepted: held });
      first = end;
    }
  }

  /** A prompt chunk through every block; the chunk that ends the prompt samples the first token. */
  private prefill(seq: Sequence, numTokens: number, step: Step): void {
    const start = seq.numComputed;
    const positions = Array.from({ length: numTokens }, (_, i) => start + i);
    const input = this.model.embed(seq.tokens.slice(start, start + numTokens), positions);
    const endsPrompt = start + numTokens === seq.tokens.length;
    const logits = this.calls.sequenceChunk(seq, start, input, numTokens, endsPrompt);
    seq.layerLengths.fill(start + numTokens);
    if (logits) this.emit(step, seq, this.draw(seq, start + numTokens, logits), { layer: null, confidence: null }, sameColumn, logits);
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
   * the token it would stream there (its best scored column when greedy, its
   * draw among its scored columns when sampling) and its confidence (none
   * when its rest column wins), and that token's column.
   */
  private read(layer: number, said: SpanRow, seq: Sequence, index: number): { reading: RampReading; column: number } {
    const rest = this.rampToken(said.top) < 0;
    let column = rest ? said.second : said.top;
    if (seq.request.sampling.temperature > 0) {
      if (!said.logits) throw new Error(`internal error: the ramp after block ${layer} returned no logits for a sampled row`);
      column = this.draw(seq, index, said.logits.subarray(0, this.model.rampVocab), this.rampToken);
    }
    const token = this.rampToken(column);
    return { reading: { layer, token, confidence: rest ? 0 : this.weighContext(layer, said.confidence, token, seq, index - 1) }, column };
  }

  /** A trained ramp's probe confidence for `token` at the position after `end`, weighed against the sequence's text so far. */
  private weighContext(layer: number, confidence: number, token: number, seq: Sequence, end: number): number {
    const weights = this.options.confidence === 'probe' ? this.model.rampContext(layer) : null;
    if (!weights) return confidence;
    return contextConfidence(
      weights,
      confidence,
      contextEvidence((i) => seq.tokenAt(i), end, token, this.model.tokenizer.wordPieces),
    );
  }

  /** Hands on the token of `column` (a ramp's token also goes to onExit at once), with logprobs from `logits` when asked. */
  private emit(step: Step, seq: Sequence, column: number, exit: ExitInfo, tokenOf: (column: number) => number, logits?: Float32Array): void {
    const topN = seq.request.logprobs;
    let logprobs: TokenLogprobs | undefined;
    if (topN !== undefined && logits) {
      const { logprob, top } = logprobsOf(logits, column, topN);
      logprobs = { logprob, top: top.map((t) => ({ ...t, token: tokenOf(t.token) })) };
    }
    const sampled = { seq, tokenId: tokenOf(column), exit: logprobs ? { ...exit, logprobs } : exit };
    step.tokens.push(sampled);
    if (exit.layer !== null && !exit.verified) step.onExit(sampled);
  }
}
