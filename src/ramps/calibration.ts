/**
 * The text ramps are trained and judged on, and what the model computes on
 * it: continuations of prompts (batched generation that keeps the block
 * outputs it computes on the way), the candidate tokens, and per position
 * the ramp layers' hidden states and the full model's next-token
 * distribution.
 *
 * @module
 */
import fs from 'node:fs';
import { argmax, drawKey, GREEDY, sample, softmax, type SamplingParams } from '../engine/index.js';
import { contextEvidence, KvCache, Model, type BlockRows, type ContextEvidence } from '../model/index.js';
import { Rng } from '../util/index.js';

/** A sampled prefix adds PREFIX_MIN..PREFIX_MAX tokens (seeded) to its opening before the greedy continuation. */
const PREFIX_MIN = 4;
const PREFIX_MAX = 40;

/** Positions per call when the head scores kept positions. */
const HEAD_CHUNK = 256;

/** Runs every block over `input` for `rows`; keeps each block's output in `keep` when given. Returns the last block's output. */
function runBlocks(model: Model, kv: KvCache, input: Float32Array, rows: BlockRows, keep?: Float32Array[]): Float32Array {
  let hidden = input;
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    const output = new Float32Array(hidden.length);
    model.runBlock(layer, hidden, output, rows, kv);
    keep?.push(output);
    hidden = output;
  }
  return hidden;
}

/** Every block over a whole sequence from position 0, in KV slot `slot`; keeps each block's output in `keep` when given. */
function runSequence(model: Model, kv: KvCache, tokens: number[], slot: number, keep?: Float32Array[]): Float32Array {
  const rows = { firstSlot: slot, numRows: 1, seqLen: tokens.length, pastLengths: [0] };
  const positions = tokens.map((_, i) => i);
  return runBlocks(model, kv, model.embed(tokens, positions), rows, keep);
}

/**
 * Block outputs a generation keeps, per row and position: each of `layers`
 * (0-based blocks) and the last block's. Rows are preallocated for the whole
 * context: [rows][kept layer][capacity, dim].
 */
class StateRecorder {
  readonly states: Float32Array[][];
  readonly counts: number[];
  constructor(
    private readonly dim: number,
    private readonly layers: readonly number[],
    private readonly lastLayer: number,
    numRows: number,
    capacity: number,
  ) {
    this.states = Array.from({ length: numRows }, () => [...layers, lastLayer].map(() => new Float32Array(capacity * dim)));
    this.counts = new Array<number>(numRows).fill(0);
  }

  /** Appends `numPositions` positions of row `row` from `blocks` (every block's output), starting at `offset` positions into them. */
  record(row: number, blocks: Float32Array[], offset: number, numPositions: number): void {
    const { dim } = this;
    [...this.layers, this.lastLayer].forEach((layer, k) => {
      this.states[row]![k]!.set(blocks[layer]!.subarray(offset * dim, (offset + numPositions) * dim), this.counts[row]! * dim);
    });
    this.counts[row]! += numPositions;
  }
}

/** Continuations, and (when asked) the block outputs of every position whose next token was produced. */
export interface Generation {
  tokens: number[][];
  recorder: StateRecorder | null;
}

/**
 * Continues every prompt at once (one batched call per block per step),
 * row r with `samplings[r]` and its own seed. A row stops at BOS or
 * EOS (llama2.c's stories end a story with BOS), after `newTokens`, or at the
 * context's end. Returns prompt + continuation per row; with `keepLayers`,
 * also those blocks' outputs (and the last block's) at positions
 * 0..length−2 of each row, so that they need no second pass.
 */
export function generateContinuations(
  model: Model,
  prompts: number[][],
  samplings: SamplingParams[],
  seed: number,
  newTokens: number,
  keepLayers?: readonly number[],
): Generation {
  const { dim, vocabSize, maxSeqLen, bosTokenId, eosTokenIds, numLayers } = model.config;
  const stops = new Set([bosTokenId, ...eosTokenIds]);
  const numRows = prompts.length;
  const capacity = Math.min(maxSeqLen, Math.max(...prompts.map((p) => p.length)) + newTokens);
  const kv = new KvCache(model.config, numRows, capacity, capacity);
  const recorder = keepLayers ? new StateRecorder(dim, keepLayers, numLayers - 1, numRows, capacity) : null;
  const tokens = prompts.map((p) => p.slice(0, capacity));
  const done = tokens.map((t) => t.length >= capacity);
  const logits = new Float32Array(numRows * vocabSize);
  tokens.forEach((prompt, r) => {
    const blocks: Float32Array[] = [];
    const hidden = runSequence(model, kv, prompt, r, recorder ? blocks : undefined);
    // A prompt that fills the context produces nothing: its last position predicted no token.
    recorder?.record(r, blocks, 0, done[r] ? prompt.length - 1 : prompt.length);
    model.runHead(hidden.slice((prompt.length - 1) * dim), 1, logits.subarray(r * vocabSize, (r + 1) * vocabSize));
  });
  for (;;) {
    tokens.forEach((row, r) => {
      if (done[r]) return;
      const token = sample(logits.subarray(r * vocabSize, (r + 1) * vocabSize), samplings[r]!, drawKey(seed * 7919 + r, row.length));
      row.push(token);
      done[r] = stops.has(token) || row.length - prompts[r]!.length >= newTokens || row.length >= capacity;
    });
    if (done.every(Boolean)) return { tokens, recorder };
    // Finished rows run too (the call covers every slot), at their last position again: a harmless rewrite,
    // and not recorded (nothing follows a finished row's last token).
    const positions = tokens.map((row) => row.length - 1);
    const blocks: Float32Array[] = [];
    const embedded = model.embed(
      tokens.map((row) => row.at(-1)!),
      positions,
    );
    const hidden = runBlocks(model, kv, embedded, { firstSlot: 0, numRows, seqLen: 1, pastLengths: positions }, recorder ? blocks : undefined);
    if (recorder) for (let r = 0; r < numRows; r++) if (!done[r]) recorder.record(r, blocks, r, 1);
    model.runHead(hidden, numRows, logits);
  }
}

/**
 * Each opening with a sampled prefix of the model's own (temperature 1, its
 * length PREFIX_MIN..PREFIX_MAX drawn from `seed`), the start of a greedy
 * continuation. A prefix that ended the story keeps the tokens before its end.
 */
export function sampledPrefixes(model: Model, openings: number[][], seed: number): number[][] {
  if (openings.length === 0) return [];
  const { bosTokenId, eosTokenIds } = model.config;
  const stops = new Set([bosTokenId, ...eosTokenIds]);
  const rng = new Rng(seed + 1);
  const samplings = openings.map(() => ({ ...GREEDY, temperature: 1 }));
  const sampled = generateContinuations(model, openings, samplings, seed + 1, PREFIX_MAX).tokens;
  return sampled.map((tokens, i) => {
    const cut = tokens.slice(0, openings[i]!.length + PREFIX_MIN + (rng.nextUint32() % (PREFIX_MAX - PREFIX_MIN + 1)));
    while (cut.length > openings[i]!.length && stops.has(cut.at(-1)!)) cut.pop();
    return cut;
  });
}

/** Token ids in order of how often `sequences` use them (ties: lower id first), at most `max`. */
export function candidatesByFrequency(sequences: ArrayLike<number>[], max: number): Int32Array {
  const counts = new Map<number, number>();
  for (const sequence of sequences) for (let i = 0; i < sequence.length; i++) counts.set(sequence[i]!, (counts.get(sequence[i]!) ?? 0) + 1);
  const byCount = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([token]) => token);
  return Int32Array.from(byCount.slice(0, max));
}

/**
 * The positions trained or evaluated on. Arrays over SharedArrayBuffers, so
 * that workers fitting the ramps read them without a copy.
 */
export interface Positions {
  count: number;
  /** Per ramp: block outputs [count, dim]. */
  hidden: Float32Array[];
  /** [count, candidates + 1]: the full model's probabilities of the candidates, then the rest. */
  targets: Float32Array;
  /** The full model's argmax over the whole vocabulary. */
  finalArgmax: Int32Array;
  /** [count, dim]: the last block's outputs, what the lookahead head reads (not shared: only the trainer's thread reads them, and onnxruntime takes no SharedArrayBuffer). */
  final: Float32Array;
  /**
   * The index of the next position of the same text when the token there is
   * the full model's argmax here (what greedy decoding would have fed), else
   * −1: the lookahead head learns the token after next only where the next
   * one is the model's own.
   */
  next: Int32Array;
  /** The text before each position, what the context model reads (see context-math.ts). */
  text: PositionText;
}

/**
 * The text before each position: its sequence starts at `tokens[start[i]]`,
 * and `end[i]` is the index of its last token in that sequence; with the
 * tokenizer's word pieces (TextTokenizer.wordPieces).
 */
export interface PositionText {
  tokens: Int32Array;
  start: Int32Array;
  end: Int32Array;
  wordPieces: Uint8Array;
}

/** Position `i`'s context evidence for `token` (see context-math.ts). */
export function evidenceAt(text: PositionText, i: number, token: number): ContextEvidence {
  const start = text.start[i]!;
  return contextEvidence((index) => text.tokens[start + index]!, text.end[i]!, token, text.wordPieces);
}

const sharedFloats = (length: number) => new Float32Array(new SharedArrayBuffer(length * 4));
const sharedInts = (length: number) => new Int32Array(new SharedArrayBuffer(length * 4));

/**
 * One kept stretch of a sequence: per ramp layer and for the last block, its
 * block outputs [positions, dim]; the sequence's tokens, and the index of the
 * stretch's first position in them.
 */
interface Stretch {
  states: Float32Array[];
  numPositions: number;
  tokens: readonly number[];
  first: number;
}

/**
 * Gathers kept stretches into Positions: the ramp layers' hidden states as
 * they are, and from the last block's output the head's logits, hence the
 * full model's distribution over `candidates` (the rest: its mass outside
 * them) and its argmax.
 */
function gather(model: Model, stretches: Stretch[], numLayers: number, candidates: Int32Array): Positions {
  const { dim, vocabSize } = model.config;
  const width = candidates.length + 1;
  const count = stretches.reduce((n, s) => n + s.numPositions, 0);
  const numTokens = stretches.reduce((n, s) => n + (s.numPositions > 0 ? s.tokens.length : 0), 0);
  const out: Positions = {
    count,
    hidden: Array.from({ length: numLayers }, () => sharedFloats(count * dim)),
    targets: sharedFloats(count * width),
    finalArgmax: sharedInts(count),
    final: new Float32Array(count * dim),
    next: sharedInts(count),
    text: { tokens: sharedInts(numTokens), start: sharedInts(count), end: sharedInts(count), wordPieces: model.tokenizer.wordPieces },
  };
  const { final, text } = out;
  let at = 0;
  let tokensAt = 0;
  for (const { states, numPositions, tokens, first } of stretches) {
    if (numPositions === 0) continue;
    for (let k = 0; k < numLayers; k++) out.hidden[k]!.set(states[k]!.subarray(0, numPositions * dim), at * dim);
    final.set(states[numLayers]!.subarray(0, numPositions * dim), at * dim);
    text.tokens.set(tokens, tokensAt);
    for (let i = 0; i < numPositions; i++) {
      text.start[at + i] = tokensAt;
      text.end[at + i] = first + i;
    }
    tokensAt += tokens.length;
    at += numPositions;
  }
  const logits = new Float32Array(HEAD_CHUNK * vocabSize);
  for (let from = 0; from < count; from += HEAD_CHUNK) {
    const n = Math.min(HEAD_CHUNK, count - from);
    model.runHead(final.subarray(from * dim, (from + n) * dim), n, logits.subarray(0, n * vocabSize));
    for (let i = 0; i < n; i++) {
      const row = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const probs = softmax(row);
      const target = out.targets.subarray((from + i) * width, (from + i + 1) * width);
      let inside = 0;
      candidates.forEach((token, c) => {
        target[c] = probs[token]!;
        inside += probs[token]!;
      });
      target[candidates.length] = Math.max(0, 1 - inside);
      out.finalArgmax[from + i] = argmax(row);
    }
  }
  at = 0;
  for (const { numPositions, tokens, first } of stretches) {
    for (let i = 0; i < numPositions; i++) {
      const follows = i + 1 < numPositions && tokens[first + i + 1] === out.finalArgmax[at + i];
      out.next[at + i] = follows ? at + i + 1 : -1;
    }
    at += numPositions;
  }
  return out;
}

/** Positions `from[r]`..length−2 of each row of a recorded generation (see generateContinuations). */
export function generatedPositions(model: Model, generation: Generation, rows: number[], from: number[], candidates: Int32Array): Positions {
  const recorder = generation.recorder!;
  const dim = model.config.dim;
  const stretches = rows.map((r, i) => {
    const kept = recorder.counts[r]! - from[i]!;
    const states = recorder.states[r]!.map((s) => s.subarray(from[i]! * dim, recorder.counts[r]! * dim));
    return { states, numPositions: Math.max(0, kept), tokens: generation.tokens[r]!, first: from[i]! };
  });
  return gather(model, stretches, recorder.states[0]!.length - 1, candidates);
}

/** Every position of each teacher-forced sequence (one pass each): the ramp layers' hidden states and the full model's distribution. */
export function sequencePositions(model: Model, sequences: number[][], layers: readonly number[], candidates: Int32Array): Positions {
  const longest = Math.max(0, ...sequences.map((s) => s.length));
  const kv = new KvCache(model.config, 1, longest, longest);
  const stretches = sequences.map((tokens) => {
    const blocks: Float32Array[] = [];
    runSequence(model, kv, tokens, 0, blocks);
    return { states: [...layers, model.config.numLayers - 1].map((layer) => blocks[layer]!), numPositions: tokens.length, tokens, first: 0 };
  });
  return gather(model, stretches, layers.length, candidates);
}

/** `x` then `y` in a new array from `make`. */
function joined<T extends Float32Array | Int32Array>(x: T, y: T, make: (length: number) => T): T {
  const out = make(x.length + y.length);
  out.set(x);
  out.set(y, x.length);
  return out;
}

/** Positions of `a` followed by those of `b`. */
export function concatPositions(a: Positions, b: Positions): Positions {
  if (b.count === 0) return a;
  const floats = (x: Float32Array, y: Float32Array) => joined(x, y, sharedFloats);
  const ints = (x: Int32Array, y: Int32Array) => joined(x, y, sharedInts);
  return {
    count: a.count + b.count,
    hidden: a.hidden.map((h, k) => floats(h, b.hidden[k]!)),
    targets: floats(a.targets, b.targets),
    finalArgmax: ints(a.finalArgmax, b.finalArgmax),
    final: joined(a.final, b.final, (length) => new Float32Array(length)),
    next: ints(
      a.next,
      b.next.map((i) => (i < 0 ? i : i + a.count)),
    ),
    text: {
      tokens: ints(a.text.tokens, b.text.tokens),
      start: ints(
        a.text.start,
        b.text.start.map((i) => i + a.text.tokens.length),
      ),
      end: ints(a.text.end, b.text.end),
      wordPieces: a.text.wordPieces,
    },
  };
}

/** Token sequences of the text file, cut to the model's context. */
export function textSequences(model: Model, file: string): number[][] {
  const tokens = model.tokenizer.encode(fs.readFileSync(file, 'utf8'));
  const length = model.config.maxSeqLen;
  return Array.from({ length: Math.ceil(tokens.length / length) }, (_, i) => tokens.slice(i * length, (i + 1) * length)).filter((s) => s.length > 1);
}
