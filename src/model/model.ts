/**
 * A loaded model: one onnxruntime session per decoder block, the head, the
 * ramp head and (for small models) the fused whole-model graph, the token
 * embedding read straight from weights.bin, and the tokenizer.
 *
 * The engine decodes through `runSpan`, the blocks from one ramp to the
 * next and that ramp's decision (or the head), so it can stop after any
 * block, score a ramp, and come back later for the deep blocks of deferred
 * positions; `runFused` does every block and the head in one call when a
 * step needs none of that. `runBlock`, `runRamp` and `runHead` are the
 * single calls (prompts on large models, ramp training, benchmarks).
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { ModelConfig } from './checkpoint.js';
import {
  BlockIO,
  buildDecisionGraph,
  buildSpanGraph,
  FusedIO,
  HeadIO,
  RampIO,
  SpanIO,
  StoredWeights,
  type SpanEnd,
  type SpanRamp,
  type WeightLookup,
} from './graphs.js';
import { probeFeatureCount } from './probe-math.js';
import type { BlockRows, KvCache } from './kv-cache.js';
import { readManifest, WEIGHTS_FILE, type Manifest } from './manifest.js';
import { readCandidates } from './ramps-store.js';
import { createSession, type RuntimeOptions, type SyncSession } from './session.js';
import { TextTokenizer } from './tokenizer.js';

export type { BlockRows } from './kv-cache.js';

/** Below this size of weights.bin the fused graph is loaded by default: up to about 130M float32 parameters. */
export const FUSED_MAX_BYTES = 512 * 1024 * 1024;

/**
 * Below this size of weights.bin a span runs as a session of its own (see
 * runSpan); larger models compose spans from the block sessions they hold.
 */
const SPAN_SESSIONS_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Fused span sessions a model keeps (see runSpan). A steady set of active
 * ramps uses a few, but a forced plan or the catch-up after exits at
 * several ramps uses many (stories260K: 35 spans in all, 6-18 ms to compile
 * each), so the cache holds them all on a small model. onnxruntime keeps
 * its own prepacked copy of the weights a session multiplies by (weights.bin
 * itself is mapped, and shared; disabling prepacking halved block speed),
 * so the sessions' weights are also held to SPAN_WEIGHTS_SHARE times
 * weights.bin, or SPAN_SESSIONS_MAX_BYTES if more: the spans of the current ramps
 * and of the previous ones. The least recently used goes first, but never
 * one used in the last RECENT_SPAN_CALLS span calls: a step whose spans
 * alone exceed the budget would otherwise recompile them every step
 * (stories15M: 0.2 s a step), so the budget gives way instead.
 */
const MAX_SPANS = 64;
const SPAN_WEIGHTS_SHARE = 2;
const RECENT_SPAN_CALLS = 64;

/** The per-call inputs every block shares, for one shape of call. */
interface PositionTensors {
  positions: BigInt64Array; // [rows, seq]
  mask: Float32Array; // [rows, 1, group * seq, context + seq]
  tensors: { positions: ort.Tensor; mask: ort.Tensor };
}

/**
 * Calls with at most this many new positions a row reuse their per-call
 * tensors: decoding, its catch-up and lossless verification ask for the
 * same few shapes every step.
 */
const REUSED_SEQ_LEN = 8;

/**
 * What `make` builds for a call with `seqLen` new positions a row: reused
 * per `key` and `seqLen` for decoding-sized calls, built anew for prompt
 * chunks (they come in many lengths, and keeping theirs would hold
 * megabytes for nothing).
 */
function reusedForDecoding<T>(cache: Map<string, T>, seqLen: number, key: string, make: () => T): T {
  if (seqLen > REUSED_SEQ_LEN) return make();
  const fullKey = `${key}/${seqLen}`;
  let value = cache.get(fullKey);
  if (value === undefined) {
    value = make();
    cache.set(fullKey, value);
  }
  return value;
}

/** A call's BlockIO.newKv output, and each of its blocks' keys and values within it. */
interface NewKv {
  tensor: ort.Tensor;
  keys: Float32Array[];
  values: Float32Array[];
}

const tensorCache = new WeakMap<Float32Array, ort.Tensor>();

/** FusedIO.logitPositions for the head over each row's last new position. */
const LAST_POSITION = new ort.Tensor('int64', BigInt64Array.of(-1n), [1]);

/** What a span that ends at a ramp decides per row (see buildSpanGraph); its logits go to the caller's buffer when asked. */
export interface SpanRampResult {
  /** [rows, 2]: the ramp's best and second-best columns. */
  top: Int32Array;
  /** [rows]: its confidence, of the configured kind, over the whole row. */
  confidence: Float32Array;
}

/** Where a span writes: the last block's output (spans that do not end the model), head or ramp logits when it makes them. */
export interface SpanBuffers {
  hidden?: Float32Array; // [numRows, seqLen, dim]
  logits?: Float32Array; // [numRows * seqLen, vocab] (head) or [numRows * seqLen, rampWidth] (ramp with logits)
  /** [numRows * seqLen, rampWidth]: the lookahead head's logits per position (a span of the whole model, where hasLookahead). */
  lookahead?: Float32Array;
}

/** An onnxruntime tensor over `data` (no copy), reused while the buffer and shape stay the same. */
function tensorOver(data: Float32Array, dims: number[]): ort.Tensor {
  const cached = tensorCache.get(data);
  if (cached && cached.dims.length === dims.length && cached.dims.every((d, i) => d === dims[i])) return cached;
  const tensor = new ort.Tensor('float32', data, dims);
  tensorCache.set(data, tensor);
  return tensor;
}

export class Model {
  private readonly positionCache = new Map<string, PositionTensors>();
  private readonly newKvCache = new Map<string, NewKv>();
  private readonly everyPositionCache = new Map<string, ort.Tensor>();
  /** Fused span sessions by what they compute, least recently used first, with the bytes of the weights each reads and its last use. */
  private readonly spans = new Map<string, { session: SyncSession; weightBytes: number; lastUse: number }>();
  /** Span calls so far: the clock of `lastUse`. */
  private spanCalls = 0;
  /** The decision graphs of composed spans, by confidence kind (see composedSpan). */
  private readonly decisions = new Map<string, SyncSession>();
  /** onnxruntime calls made so far: what fused spans save (tests count them). */
  calls = 0;

  private constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    readonly tokenizer: TextTokenizer,
    private readonly blocks: SyncSession[],
    private readonly head: SyncSession,
    private readonly rampHead: SyncSession,
    /** Trained ramps by block index, and the token ids their columns stand for; empty / null: plain-head ramps. */
    private readonly trainedRamps: Map<number, SyncSession>,
    private readonly candidates: Int32Array | null,
    private readonly fused: SyncSession | null,
    /** The fused graph with the lookahead head (see hasLookahead), else null. */
    private readonly lookaheadFused: SyncSession | null,
    /** [vocab, dim] */
    private readonly embeddings: Float32Array,
    /** [maxSeqLen, dim], GPT-2 only */
    private readonly positionEmbeddings: Float32Array | null,
    private readonly runtime: RuntimeOptions,
    /** Size of weights.bin, which the fused spans' weights are budgeted against. */
    private readonly weightsBytes: number,
  ) {}

  get config(): ModelConfig {
    return this.manifest.config;
  }

  /** A short name for APIs and logs: the checkpoint's file or directory name. */
  get name(): string {
    return path.basename(this.manifest.source).replace(/\.bin$/, '');
  }

  static async load(dir: string, options: RuntimeOptions): Promise<Model> {
    const manifest = readManifest(dir);
    const tokenizer = await TextTokenizer.load(dir);
    const weightsBytes = fs.readFileSync(path.join(dir, WEIGHTS_FILE));
    const floats = (name: string): Float32Array => {
      const ref = manifest.weights[name]!;
      // Copied out so the rest of weights.bin (block weights, owned by the sessions) can be freed.
      return new Float32Array(weightsBytes.buffer.slice(weightsBytes.byteOffset + ref.offset, weightsBytes.byteOffset + ref.offset + ref.byteLength));
    };
    const embeddings = floats(StoredWeights.embeddings);
    const positionEmbeddings = manifest.config.architecture === 'gpt2' ? floats(StoredWeights.positionEmbeddings) : null;
    const blocks = manifest.graphs.blocks.map((file) => createSession(path.join(dir, file), options));
    const head = createSession(path.join(dir, manifest.graphs.head), options);
    const rampHead = manifest.graphs.ramp.file === manifest.graphs.head ? head : createSession(path.join(dir, manifest.graphs.ramp.file), options);
    const trained = manifest.trainedRamps;
    const trainedRamps = new Map((trained?.ramps ?? []).map((ramp) => [ramp.layer, createSession(path.join(dir, ramp.graph), options)] as const));
    const candidates = trained ? readCandidates(dir, trained) : null;
    const useFused = options.fused ?? weightsBytes.length < FUSED_MAX_BYTES;
    const fusedOptions = { ...options, spinning: options.spinning ?? 'always' };
    const fused = useFused ? createSession(path.join(dir, manifest.graphs.fused), fusedOptions) : null;
    // Only where spans get sessions of their own (small models): it holds the weights once more.
    const lookahead = trained?.lookahead && fused && weightsBytes.length < SPAN_SESSIONS_MAX_BYTES ? trained.lookahead : null;
    const lookaheadFused = lookahead ? createSession(path.join(dir, lookahead.graph), fusedOptions) : null;
    return new Model(
      dir,
      manifest,
      tokenizer,
      blocks,
      head,
      rampHead,
      trainedRamps,
      candidates,
      fused,
      lookaheadFused,
      embeddings,
      positionEmbeddings,
      options,
      weightsBytes.length,
    );
  }

  /** Hidden states [tokens, dim] for `tokens` at `positions`. */
  embed(tokens: ArrayLike<number>, positions: ArrayLike<number>): Float32Array {
    const { dim, vocabSize } = this.config;
    const out = new Float32Array(tokens.length * dim);
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (!(token >= 0 && token < vocabSize)) throw new RangeError(`token id ${token} is outside the vocabulary (0..${vocabSize - 1})`);
      out.set(this.embeddings.subarray(token * dim, (token + 1) * dim), i * dim);
      if (this.positionEmbeddings) {
        const p = positions[i]!;
        for (let d = 0; d < dim; d++) out[i * dim + d]! += this.positionEmbeddings[p * dim + d]!;
      }
    }
    return out;
  }

  /**
   * Runs decoder block `layer` over `input` [numRows, seqLen, dim] into
   * `output` (same shape), appending each row's new keys and values to its
   * slot.
   *
   * Rows of a batched call that have nothing to compute still get a write at
   * their own next position (pastLengths[r]); a later call for that row
   * overwrites it before anything reads it.
   */
  runBlock(layer: number, input: Float32Array, output: Float32Array, rows: BlockRows, kv: KvCache): void {
    const cache = kv.view(layer, rows.firstSlot, rows.numRows);
    const dims = [rows.numRows, rows.seqLen, this.config.dim];
    const added = this.newKv(1, rows);
    const feeds: Record<string, ort.Tensor> = {
      [BlockIO.hidden]: tensorOver(input, dims),
      [BlockIO.pastKey]: cache.key,
      [BlockIO.pastValue]: cache.value,
      ...this.positionFeeds(rows, kv),
    };
    this.run(this.blocks[layer]!, feeds, { [BlockIO.hiddenOut]: tensorOver(output, dims), [BlockIO.newKv]: added.tensor });
    kv.append(layer, rows, added.keys[0]!, added.values[0]!);
  }

  /** Logits [numRows, vocab] into `logits` from hidden states [numRows, dim]: the final head, or a ramp. */
  runHead(hidden: Float32Array, numRows: number, logits: Float32Array): void {
    this.run(
      this.head,
      { [HeadIO.hidden]: tensorOver(hidden, [numRows, this.config.dim]) },
      { [HeadIO.logits]: tensorOver(logits, [numRows, this.config.vocabSize]) },
    );
  }

  /** Whether `runFused` is available. */
  get hasFused(): boolean {
    return this.fused !== null;
  }

  /**
   * Whether `runFused` can also guess the token after next (the trained
   * lookahead head). Only where the fused graph is loaded and spans get
   * sessions of their own (small models): its graph is the fused one again,
   * and holds the weights once more. Loaded with the model, not on first
   * use: opening it mid-request stalled that step by milliseconds.
   */
  get hasLookahead(): boolean {
    return this.lookaheadFused !== null;
  }

  /**
   * Every block and the head in one call: logits of each row's last new
   * position [numRows, vocab], or with `scored` 'every', of all of them
   * [numRows * seqLen, vocab]; KV appended as `runBlock` would for each
   * layer. With `lookahead` (where hasLookahead), also the lookahead head's
   * logits at each of those positions [rows, rampWidth]: its scores of the
   * token after the full model's most likely next one, as a ramp's columns
   * (rampToken maps them).
   */
  runFused(input: Float32Array, rows: BlockRows, kv: KvCache, logits: Float32Array, scored: 'last' | 'every' = 'last', lookahead?: Float32Array): void {
    const { numLayers, dim, vocabSize } = this.config;
    const every = scored === 'every' && rows.seqLen > 1;
    const feeds: Record<string, ort.Tensor> = {
      [BlockIO.hidden]: tensorOver(input, [rows.numRows, rows.seqLen, dim]),
      [FusedIO.logitPositions]: every ? this.everyPosition(rows.seqLen) : LAST_POSITION,
      ...this.positionFeeds(rows, kv),
    };
    const added = this.newKv(numLayers, rows);
    const logitRows = every ? rows.numRows * rows.seqLen : rows.numRows;
    const fetches: Record<string, ort.Tensor> = { [HeadIO.logits]: tensorOver(logits, [logitRows, vocabSize]), [BlockIO.newKv]: added.tensor };
    for (let layer = 0; layer < numLayers; layer++) {
      const cache = kv.view(layer, rows.firstSlot, rows.numRows);
      feeds[`${BlockIO.pastKey}_${layer}`] = cache.key;
      feeds[`${BlockIO.pastValue}_${layer}`] = cache.value;
    }
    if (lookahead && !this.lookaheadFused) throw new Error('internal error: this model has no lookahead head loaded');
    if (lookahead) fetches[FusedIO.lookahead] = tensorOver(lookahead, [logitRows, this.rampWidth]);
    this.run(lookahead ? this.lookaheadFused! : this.fused!, feeds, fetches);
    for (let layer = 0; layer < numLayers; layer++) kv.append(layer, rows, added.keys[layer]!, added.values[layer]!);
  }

  /** FusedIO.logitPositions naming all `seqLen` new positions. */
  private everyPosition(seqLen: number): ort.Tensor {
    return reusedForDecoding(
      this.everyPositionCache,
      seqLen,
      'every',
      () =>
        new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: seqLen }, (_, i) => BigInt(i)),
          [seqLen],
        ),
    );
  }

  /** The output tensor for `count` blocks' new keys and values over `rows` (BlockIO.newKv), and each block's keys and values in it. */
  private newKv(count: number, rows: BlockRows): NewKv {
    const size = rows.numRows * rows.seqLen * this.config.numKvHeads * this.config.headDim;
    return reusedForDecoding(this.newKvCache, rows.seqLen, `${count}:${rows.numRows}`, () => {
      const data = new Float32Array(2 * count * size);
      const block = (i: number) => data.subarray(i * size, (i + 1) * size);
      return {
        tensor: new ort.Tensor('float32', data, [2 * count * rows.numRows, this.config.numKvHeads, rows.seqLen, this.config.headDim]),
        keys: Array.from({ length: count }, (_, b) => block(2 * b)),
        values: Array.from({ length: count }, (_, b) => block(2 * b + 1)),
      };
    });
  }

  /**
   * Blocks `from`..`to` over `input` [numRows, seqLen, dim], appending each
   * layer's new keys and values as runBlock does, then `end`: the head's
   * logits into `out.logits`, or the ramp after `to`'s decision per position
   * (returned) and its logits when `end.logits`; the last block's output
   * goes to `out.hidden` unless the span ends the model.
   *
   * A span of every block and the head is the fused graph's call, where it
   * is loaded. Otherwise small models that load the fused graph (under
   * SPAN_SESSIONS_MAX_BYTES, whose time goes to per-call overhead) run a
   * span in one call, its graph compiled on first use (see
   * buildSpanGraph). Larger ones compose it from the block, ramp and head
   * sessions they hold anyway: a fused span would hold its weights once
   * more for a per-call saving that is noise beside their blocks.
   */
  runSpan(from: number, to: number, end: SpanEnd, input: Float32Array, rows: BlockRows, kv: KvCache, out: SpanBuffers): SpanRampResult | null {
    // The whole model is the fused graph: one session fewer, and its caches stay warm (a lossless pass verifies there
    // between fused steps; through a span session of its own, the step after each pass cost about 40 µs more).
    if (this.fused && from === 0 && to === this.config.numLayers - 1 && end.kind === 'head') {
      this.runFused(input, rows, kv, out.logits!, 'every', out.lookahead);
      return null;
    }
    if (out.lookahead) throw new Error('internal error: only a span of the whole model guesses ahead');
    const ownSession = this.fused && this.weightsBytes < SPAN_SESSIONS_MAX_BYTES;
    return ownSession ? this.fusedSpan(from, to, end, input, rows, kv, out) : this.composedSpan(from, to, end, input, rows, kv, out);
  }

  /** A span as one session's call. */
  private fusedSpan(from: number, to: number, end: SpanEnd, input: Float32Array, rows: BlockRows, kv: KvCache, out: SpanBuffers): SpanRampResult | null {
    const { dim, vocabSize } = this.config;
    const positions = rows.numRows * rows.seqLen;
    const feeds: Record<string, ort.Tensor> = { [BlockIO.hidden]: tensorOver(input, [rows.numRows, rows.seqLen, dim]), ...this.positionFeeds(rows, kv) };
    const added = this.newKv(to - from + 1, rows);
    const fetches: Record<string, ort.Tensor | null> = { [BlockIO.newKv]: added.tensor };
    for (let layer = from; layer <= to; layer++) {
      const cache = kv.view(layer, rows.firstSlot, rows.numRows);
      feeds[`${BlockIO.pastKey}_${layer}`] = cache.key;
      feeds[`${BlockIO.pastValue}_${layer}`] = cache.value;
    }
    if (end.kind === 'head') fetches[SpanIO.logits] = tensorOver(out.logits!, [positions, vocabSize]);
    else fetches[SpanIO.hiddenOut] = tensorOver(out.hidden!, [rows.numRows, rows.seqLen, dim]);
    if (end.kind === 'ramp') {
      fetches[SpanIO.rampTop] = null;
      fetches[SpanIO.rampConfidence] = null;
      if (end.logits) fetches[SpanIO.rampLogits] = tensorOver(out.logits!, [positions, this.rampWidth]);
    }
    const results = this.run(this.spanSession(from, to, end), feeds, fetches);
    for (let layer = from; layer <= to; layer++) kv.append(layer, rows, added.keys[layer - from]!, added.values[layer - from]!);
    if (end.kind !== 'ramp') return null;
    return { top: results[SpanIO.rampTop]!.data as Int32Array, confidence: results[SpanIO.rampConfidence]!.data as Float32Array };
  }

  /**
   * A span as the calls it stands for: each block, then the head or the
   * ramp, and the ramp's decision from its logits (a graph without weights,
   * so that the decision is computed as a fused span computes it).
   */
  private composedSpan(from: number, to: number, end: SpanEnd, input: Float32Array, rows: BlockRows, kv: KvCache, out: SpanBuffers): SpanRampResult | null {
    let hidden = input;
    for (let layer = from; layer <= to; layer++) {
      const output = layer === to && end.kind !== 'head' ? out.hidden! : new Float32Array(input.length);
      this.runBlock(layer, hidden, output, rows, kv);
      hidden = output;
    }
    const positions = rows.numRows * rows.seqLen;
    if (end.kind === 'head') this.runHead(hidden, positions, out.logits!);
    if (end.kind !== 'ramp') return null;
    const logits = end.logits ? out.logits! : new Float32Array(positions * this.rampWidth);
    // A trained ramp's graph computes its probe beside its logits; the decision passes it through.
    const probe = end.confidence === 'probe' && this.hasTrainedRamps ? new Float32Array(positions) : null;
    this.runRamp(to, hidden, positions, logits, probe ?? undefined);
    const key = `${end.confidence}${probe ? '+probe' : ''}`;
    let decision = this.decisions.get(key);
    if (!decision) {
      decision = createSession(buildDecisionGraph(this.rampWidth, end.confidence, probe !== null), this.runtime, this.dir);
      this.decisions.set(key, decision);
    }
    const feeds: Record<string, ort.Tensor> = { [HeadIO.logits]: tensorOver(logits, [positions, this.rampWidth]) };
    if (probe) feeds[RampIO.probe] = tensorOver(probe, [positions]);
    const results = this.run(decision, feeds, { [SpanIO.rampTop]: null, [SpanIO.rampConfidence]: null });
    return { top: results[SpanIO.rampTop]!.data as Int32Array, confidence: results[SpanIO.rampConfidence]!.data as Float32Array };
  }

  /** The session of one fused span, compiled on first use; the least recently used go beyond MAX_SPANS or the weights' budget. */
  private spanSession(from: number, to: number, end: SpanEnd): SyncSession {
    const key = end.kind === 'ramp' ? `${from}-${to}:ramp:${end.confidence}:${end.logits}` : `${from}-${to}:${end.kind}`;
    let span = this.spans.get(key);
    if (span) {
      this.spans.delete(key); // re-inserted below: the map's order is the order of use
    } else {
      const weight: WeightLookup = (name) => {
        const ref = this.manifest.weights[name];
        if (!ref) throw new Error(`internal error: span graph needs weight ${name}, which was not stored`);
        return ref;
      };
      const ramp = end.kind === 'ramp' ? this.spanRamp(to) : null;
      const { graph, weightBytes } = buildSpanGraph(this.config, from, to, end, weight, WEIGHTS_FILE, ramp);
      span = { session: createSession(graph, this.runtime, this.dir), weightBytes, lastUse: 0 };
      this.evictSpans(span.weightBytes);
    }
    span.lastUse = ++this.spanCalls;
    this.spans.set(key, span);
    return span.session;
  }

  /** Releases the least recently used spans to make room for one more reading `weightBytes` (see MAX_SPANS). */
  private evictSpans(weightBytes: number): void {
    const budget = Math.max(SPAN_WEIGHTS_SHARE * this.weightsBytes, SPAN_SESSIONS_MAX_BYTES);
    let held = [...this.spans.values()].reduce((sum, s) => sum + s.weightBytes, weightBytes);
    for (const [key, span] of this.spans) {
      if ((this.spans.size < MAX_SPANS && held <= budget) || span.lastUse > this.spanCalls - RECENT_SPAN_CALLS) break;
      span.session.release();
      this.spans.delete(key);
      held -= span.weightBytes;
    }
  }

  /** The ramp after block `layer` as a span graph adds it: the trained ramp, or the plain ramp head. */
  private spanRamp(layer: number): SpanRamp {
    const trained = this.manifest.trainedRamps;
    if (!trained) return { vocab: this.manifest.graphs.ramp.vocab };
    const ramp = trained.ramps.find((r) => r.layer === layer);
    if (!ramp) throw new RangeError(`no trained ramp after block ${layer}`);
    return { trained: { ...ramp, candidateRows: trained.candidateRows }, rampsFile: trained.file };
  }

  /** Runs one session, counted. */
  private run(session: SyncSession, feeds: Record<string, ort.Tensor>, fetches: Record<string, ort.Tensor | null>): Record<string, ort.Tensor> {
    this.calls++;
    return session.run(feeds, fetches);
  }

  /** The context model of the trained ramp after block `layer` (context-math.ts), or null: its probe stands alone. */
  rampContext(layer: number): readonly number[] | null {
    return this.manifest.trainedRamps?.ramps.find((r) => r.layer === layer)?.context ?? null;
  }

  /** Whether the ramps are trained (see ramp-math.ts); otherwise each is the plain head. */
  get hasTrainedRamps(): boolean {
    return this.candidates !== null;
  }

  /** How many tokens a ramp scores: the trained ramps' candidates, or the plain head's ids 0..rampVocab-1. */
  get rampVocab(): number {
    return this.candidates?.length ?? this.manifest.graphs.ramp.vocab;
  }

  /**
   * Multiply-adds of one ramp for one position: a trained ramp's gated MLP
   * (dim × hidden, three times) and its probe, then a head row per column.
   */
  get rampMacs(): number {
    const { dim } = this.config;
    const trained = this.manifest.trainedRamps;
    const own = trained ? 3 * dim * trained.hidden + (probeFeatureCount(dim) + 1) * trained.probeHidden : 0;
    return own + this.rampWidth * dim;
  }

  /** Columns of a ramp's logits: one per scored token, then (trained ramps) the rest logit for every other token. */
  get rampWidth(): number {
    return this.rampVocab + (this.candidates ? 1 : 0);
  }

  /** The token id a ramp logit column stands for; -1 for the rest column (no single token: never exits). */
  rampToken(column: number): number {
    if (!this.candidates) return column;
    return column < this.candidates.length ? this.candidates[column]! : -1;
  }

  /**
   * Ramp logits [numRows, rampWidth] into `logits` from block `layer`'s
   * output [numRows, dim]; a trained ramp's probe confidence [numRows] into
   * `probe` when given (plain-head ramps have none: asking is an error).
   */
  runRamp(layer: number, hidden: Float32Array, numRows: number, logits: Float32Array, probe?: Float32Array): void {
    const session = this.candidates ? this.trainedRamps.get(layer) : this.rampHead;
    if (!session) throw new RangeError(`no trained ramp after block ${layer}`);
    if (probe && !this.candidates) throw new RangeError('plain-head ramps have no probe');
    const fetches: Record<string, ort.Tensor | null> = { [RampIO.logits]: tensorOver(logits, [numRows, this.rampWidth]) };
    if (probe) fetches[RampIO.probe] = tensorOver(probe, [numRows]);
    this.run(session, { [RampIO.hidden]: tensorOver(hidden, [numRows, this.config.dim]) }, fetches);
  }

  /** Positions and the attention mask for `rows`: the inputs every block shares. */
  private positionFeeds(rows: BlockRows, kv: KvCache): Record<string, ort.Tensor> {
    const { numRows, seqLen, pastLengths } = rows;
    const context = kv.capacity;
    const io = this.positionTensors(numRows, seqLen, context);
    const group = this.config.numHeads / this.config.numKvHeads;
    const width = context + seqLen;
    for (let r = 0; r < numRows; r++) {
      const past = pastLengths[r]!;
      if (past + seqLen > context) throw new RangeError(`row ${r} needs ${past + seqLen} positions, the KV cache has ${context}`);
      for (let s = 0; s < seqLen; s++) io.positions[r * seqLen + s] = BigInt(past + s);
      // Query row q of a group is new position q % seqLen: it sees the row's cached positions and the new ones up to itself.
      for (let q = 0; q < group * seqLen; q++) {
        const at = (r * group * seqLen + q) * width;
        io.mask.fill(0, at, at + past).fill(-Infinity, at + past, at + context);
        io.mask.fill(0, at + context, at + context + (q % seqLen) + 1).fill(-Infinity, at + context + (q % seqLen) + 1, at + width);
      }
    }
    const feeds: Record<string, ort.Tensor> = { [BlockIO.attentionMask]: io.tensors.mask };
    if (this.config.rope) feeds[BlockIO.positions] = io.tensors.positions;
    return feeds;
  }

  /** The per-call inputs of one shape (filled by positionFeeds). */
  private positionTensors(numRows: number, seqLen: number, context: number): PositionTensors {
    return reusedForDecoding(this.positionCache, seqLen, `${numRows}x${context}`, () => {
      const group = this.config.numHeads / this.config.numKvHeads;
      const positions = new BigInt64Array(numRows * seqLen);
      const mask = new Float32Array(numRows * group * seqLen * (context + seqLen));
      return {
        positions,
        mask,
        tensors: {
          positions: new ort.Tensor('int64', positions, [numRows, seqLen]),
          mask: new ort.Tensor('float32', mask, [numRows, 1, group * seqLen, context + seqLen]),
        },
      };
    });
  }

  release(): void {
    const spans = [...this.spans.values()].map((span) => span.session);
    for (const session of new Set([
      ...this.blocks,
      this.head,
      this.rampHead,
      ...this.trainedRamps.values(),
      this.fused,
      this.lookaheadFused,
      ...spans,
      ...this.decisions.values(),
    ])) {
      session?.release();
    }
    this.spans.clear();
    this.decisions.clear();
  }
}
