/**
 * Trains the ramps of a prepared model with the backbone frozen (Apparate
 * §3.1), by distillation on the model's own continuations:
 *
 * 1. Calibration text: the model continues prompts/prompts.json's story
 *    openings (one greedy and several sampled continuations each), and
 *    continues greedily from several sampled prefixes of each opening (a
 *    few to 40 tokens at temperature 1: many distinct starts of the greedy
 *    text the held-out set is, without one opening's loop repeated), all
 *    rows decoded as one batch, plus an optional text file. Every third
 *    opening is held out: its greedy continuation and its greedy
 *    continuations from sampled prefixes are only ever used for the report.
 * 2. Candidates: the tokens of those continuations, most frequent first (at
 *    most RAMP_VOCAB): what the model itself says, not the lowest ids.
 * 3. One forward pass per sequence keeps every candidate block's hidden
 *    states and the full model's next-token distribution (on the candidates,
 *    plus the mass outside them).
 * 4. Per ramp, the least-squares affine map onto the last block's output,
 *    then epochs of Adam over those positions (ramp-math.ts), seeded.
 * 5. Report: held-out agreement with the full model's argmax and the share
 *    exitable at 99% / 95% precision, plain head beside trained ramp.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { argmax, drawKey, GREEDY, sample, softmax, type SamplingParams } from '../engine/index.js';
import { scoreLogits } from '../exits/index.js';
import {
  Adam,
  blockMacs,
  exitableShare,
  initialParams,
  KvCache,
  leastSquaresStart,
  loadPrompts,
  Model,
  paramLayout,
  RAMP_VOCAB,
  rampLogits,
  rampLossAndGrad,
  readManifest,
  shuffled,
  StoredWeights,
  WEIGHTS_FILE,
  writeTrainedRamps,
  type BlockRows,
  type FrozenHead,
  type Manifest,
  type ModelConfig,
  type RampReport,
  type RampTraining,
} from '../model/index.js';
import { progressBar, Rng } from '../util/index.js';

export interface TrainRampsOptions {
  seed: number;
  epochs: number;
  learningRate: number;
  /** Positions per Adam step. */
  batchSize: number;
  /** Continuations per calibration prompt: one greedy, the rest sampled (temperatures alternate 1 and 0.7). */
  continuationsPerPrompt: number;
  /** Greedy continuations per calibration prompt from a sampled prefix of it (seeded lengths, 4..40 tokens). */
  prefixedPerPrompt: number;
  /** The same per held-out prompt, beside its plain greedy continuation: a larger, more varied report set. */
  heldOutPrefixedPerPrompt: number;
  /** New tokens per continuation (fewer when the model stops or its context ends). */
  newTokens: number;
  /** More calibration text (teacher-forced), beside the continuations. */
  textFile: string | null;
  /** onnxruntime threads for the forward passes. */
  threads: number;
  /** Progress lines and the bar go to stderr when true. */
  verbose: boolean;
}

export const TRAIN_RAMPS_DEFAULTS: TrainRampsOptions = {
  seed: 0,
  epochs: 2,
  learningRate: 1e-2,
  batchSize: 32,
  continuationsPerPrompt: 4,
  prefixedPerPrompt: 12,
  heldOutPrefixedPerPrompt: 12,
  newTokens: 200,
  textFile: null,
  threads: 1,
  verbose: false,
};

/** Every third story opening is held out for the report. */
const HELD_OUT_EVERY = 3;

/** Sampled continuations alternate these temperatures (greedy is the first continuation). */
const SAMPLED_TEMPERATURES = [1, 0.7];

/** A sampled prefix adds PREFIX_MIN..PREFIX_MAX tokens (seeded) to its opening before the greedy continuation. */
const PREFIX_MIN = 4;
const PREFIX_MAX = 40;

/** Positions per call when the report scores held-out positions through the model's head. */
const EVAL_CHUNK = 256;

/** The rest logit starts at log(this) when the candidates hold (nearly) everything. */
const MIN_REST_SHARE = 1e-4;

/**
 * Speeds measured here (2 cores shared by several jobs) for the estimate:
 * ramp-math's training loop in multiply-adds per second, and onnxruntime's
 * forward passes in multiply-adds per second of weights read.
 */
const FIT_MACS_PER_SECOND = 0.5e9;
const FORWARD_MACS_PER_SECOND = 5e9;

/** Multiply-adds of one forward position: every block's weights and the head. */
function forwardMacs(config: ModelConfig): number {
  return config.numLayers * blockMacs(config) + config.vocabSize * config.dim;
}

/** About how long `trainRamps` takes on a model of `config`, in seconds. */
export function estimateTrainingSeconds(config: ModelConfig, overrides: Partial<TrainRampsOptions> = {}): number {
  const options = { ...TRAIN_RAMPS_DEFAULTS, ...overrides };
  const stories = loadPrompts().filter((p) => p.kind === 'story').length;
  const calibrationPrompts = stories - Math.floor(stories / HELD_OUT_EVERY);
  const rowsPerPrompt = options.continuationsPerPrompt + options.prefixedPerPrompt;
  const positions = calibrationPrompts * rowsPerPrompt * options.newTokens;
  const candidates = Math.min(RAMP_VOCAB, config.vocabSize);
  const ramps = config.numLayers - 1;
  const fit = (positions * ramps * options.epochs * (2 * candidates * config.dim + 2 * config.dim * config.dim)) / FIT_MACS_PER_SECOND;
  // Generation and the capture pass each run every position forward once.
  const forward = (2 * positions * forwardMacs(config)) / FORWARD_MACS_PER_SECOND;
  return fit + forward;
}

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
  return runBlocks(
    model,
    kv,
    model.embed(
      tokens,
      tokens.map((_, i) => i),
    ),
    rows,
    keep,
  );
}

/**
 * Continues every prompt at once (one batched call per block per step),
 * row r with `samplings[r]` and its own seed. A row stops at BOS or
 * EOS (llama2.c's stories end a story with BOS), after `newTokens`, or at the
 * context's end. Returns prompt + continuation per row.
 */
export function generateContinuations(model: Model, prompts: number[][], samplings: SamplingParams[], seed: number, newTokens: number): number[][] {
  const { dim, vocabSize, maxSeqLen, bosTokenId, eosTokenIds } = model.config;
  const stops = new Set([bosTokenId, ...eosTokenIds]);
  const numRows = prompts.length;
  const capacity = Math.min(maxSeqLen, Math.max(...prompts.map((p) => p.length)) + newTokens);
  const kv = new KvCache(model.config, numRows, capacity, capacity);
  const tokens = prompts.map((p) => p.slice(0, capacity));
  const done = tokens.map((t) => t.length >= capacity);
  const logits = new Float32Array(numRows * vocabSize);
  tokens.forEach((prompt, r) => {
    const hidden = runSequence(model, kv, prompt, r);
    model.runHead(hidden.slice((prompt.length - 1) * dim), 1, logits.subarray(r * vocabSize, (r + 1) * vocabSize));
  });
  for (;;) {
    tokens.forEach((row, r) => {
      if (done[r]) return;
      const token = sample(logits.subarray(r * vocabSize, (r + 1) * vocabSize), samplings[r]!, drawKey(seed * 7919 + r, row.length));
      row.push(token);
      done[r] = stops.has(token) || row.length - prompts[r]!.length >= newTokens || row.length >= capacity;
    });
    if (done.every(Boolean)) return tokens;
    // Finished rows run too (the call covers every slot), at their last position again: a harmless rewrite.
    const positions = tokens.map((row) => row.length - 1);
    const hidden = runBlocks(
      model,
      kv,
      model.embed(
        tokens.map((row) => row.at(-1)!),
        positions,
      ),
      { firstSlot: 0, numRows, seqLen: 1, pastLengths: positions },
    );
    model.runHead(hidden, numRows, logits);
  }
}

/**
 * Each opening with a sampled prefix of the model's own (temperature 1, its
 * length PREFIX_MIN..PREFIX_MAX drawn from `seed`), the start of a greedy
 * continuation. A prefix that ended the story keeps the tokens before its end.
 */
function sampledPrefixes(model: Model, openings: number[][], seed: number): number[][] {
  if (openings.length === 0) return [];
  const { bosTokenId, eosTokenIds } = model.config;
  const stops = new Set([bosTokenId, ...eosTokenIds]);
  const rng = new Rng(seed + 1);
  const sampled = generateContinuations(
    model,
    openings,
    openings.map(() => ({ ...GREEDY, temperature: 1 })),
    seed + 1,
    PREFIX_MAX,
  );
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

/** What one forward pass per sequence keeps of the positions trained or evaluated on. */
interface Positions {
  count: number;
  /** Per ramp: block outputs [count, dim]. */
  hidden: Float32Array[];
  /** [count, candidates + 1]: the full model's probabilities of the candidates, then the rest. */
  targets: Float32Array;
  /** The full model's argmax over the whole vocabulary. */
  finalArgmax: Int32Array;
  /** [count, dim]: the last block's output, what the ramps' maps aim at. */
  final: Float32Array;
}

/**
 * Runs each sequence through the model once and keeps positions `from`..end
 * of it (`from` per sequence): the ramp layers' hidden states and the full
 * model's next-token distribution restricted to `candidates`.
 */
function capture(model: Model, sequences: { tokens: number[]; from: number }[], layers: number[], candidates: Int32Array): Positions {
  const { dim, vocabSize } = model.config;
  const width = candidates.length + 1;
  const count = sequences.reduce((n, s) => n + s.tokens.length - s.from, 0);
  const out: Positions = {
    count,
    hidden: layers.map(() => new Float32Array(count * dim)),
    targets: new Float32Array(count * width),
    finalArgmax: new Int32Array(count),
    final: new Float32Array(count * dim),
  };
  const longest = Math.max(...sequences.map((s) => s.tokens.length));
  const kv = new KvCache(model.config, 1, longest, longest);
  let at = 0;
  for (const { tokens, from } of sequences) {
    const blocks: Float32Array[] = [];
    const last = runSequence(model, kv, tokens, 0, blocks);
    const kept = tokens.length - from;
    const logits = new Float32Array(kept * vocabSize);
    model.runHead(last.slice(from * dim), kept, logits);
    layers.forEach((layer, k) => out.hidden[k]!.set(blocks[layer]!.subarray(from * dim), at * dim));
    out.final.set(last.subarray(from * dim), at * dim);
    for (let i = 0; i < kept; i++) {
      const row = logits.subarray(i * vocabSize, (i + 1) * vocabSize);
      const probs = softmax(row);
      const target = out.targets.subarray((at + i) * width, (at + i + 1) * width);
      let inside = 0;
      candidates.forEach((token, c) => {
        target[c] = probs[token]!;
        inside += probs[token]!;
      });
      target[candidates.length] = Math.max(0, 1 - inside);
      out.finalArgmax[at + i] = argmax(row);
    }
    at += kept;
  }
  return out;
}

/**
 * Why the ramps of this prepared model cannot be trained, or null when they
 * can: training reads the head in float32, which an untied int8 head is not.
 */
export function untrainableReason(manifest: Manifest): string | null {
  if (manifest.config.tiedEmbeddings || manifest.weights[StoredWeights.head]?.type === 'float') return null;
  return 'its LM head is stored in int8: train the ramps on the float32 model';
}

/** The frozen head every ramp shares, read from the prepared model's weights. */
function frozenHead(dir: string, manifest: Manifest, candidates: Int32Array): FrozenHead {
  const { dim, architecture, normEps, tiedEmbeddings } = manifest.config;
  const bytes = fs.readFileSync(path.join(dir, WEIGHTS_FILE));
  const floats = (name: string): Float32Array => {
    const ref = manifest.weights[name]!;
    if (ref.type !== 'float') throw new Error(`cannot train the ramps of ${dir}: ${untrainableReason(manifest)}`);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + ref.offset, bytes.byteOffset + ref.offset + ref.byteLength));
  };
  // A tied head is the embedding, which stays float32 in every quantization.
  const head = floats(tiedEmbeddings ? StoredWeights.embeddings : StoredWeights.head);
  const rows = new Float32Array(candidates.length * dim);
  candidates.forEach((token, c) => rows.set(head.subarray(token * dim, (token + 1) * dim), c * dim));
  const bias = architecture === 'gpt2' ? floats(StoredWeights.finalNormBias) : null;
  return {
    dim,
    rows,
    numCandidates: candidates.length,
    norm: { kind: architecture === 'gpt2' ? 'layer' : 'rms', weight: floats(StoredWeights.finalNorm), bias, eps: normEps },
  };
}

/** Quality of one ramp from its confidence and agreement per held-out position. */
function quality(confidence: Float64Array, agrees: boolean[]) {
  return {
    agreement: agrees.filter(Boolean).length / Math.max(1, agrees.length),
    exitable99: exitableShare(confidence, agrees, 0.99),
    exitable95: exitableShare(confidence, agrees, 0.95),
  };
}

/** The plain head (final norm + whole LM head, no map) on held-out positions, as the margin scores it. */
function plainQuality(model: Model, hidden: Float32Array, heldOut: Positions) {
  const { dim, vocabSize } = model.config;
  const confidence = new Float64Array(heldOut.count);
  const agrees: boolean[] = [];
  const logits = new Float32Array(EVAL_CHUNK * vocabSize);
  for (let from = 0; from < heldOut.count; from += EVAL_CHUNK) {
    const n = Math.min(EVAL_CHUNK, heldOut.count - from);
    model.runHead(hidden.slice(from * dim, (from + n) * dim), n, logits.subarray(0, n * vocabSize));
    for (let i = 0; i < n; i++) {
      const score = scoreLogits(logits.subarray(i * vocabSize, (i + 1) * vocabSize), 'margin');
      confidence[from + i] = score.confidence;
      agrees.push(score.argmax === heldOut.finalArgmax[from + i]);
    }
  }
  return quality(confidence, agrees);
}

/** A trained ramp on held-out positions, scored as the server scores it (rest column: confidence 0). */
function trainedQuality(head: FrozenHead, params: Float32Array, candidates: Int32Array, hidden: Float32Array, heldOut: Positions) {
  const width = head.numCandidates + 1;
  const logits = new Float32Array(heldOut.count * width);
  rampLogits(head, params, hidden, heldOut.count, logits);
  const confidence = new Float64Array(heldOut.count);
  const agrees: boolean[] = [];
  for (let i = 0; i < heldOut.count; i++) {
    const score = scoreLogits(logits.subarray(i * width, (i + 1) * width), 'margin');
    const token = score.argmax < head.numCandidates ? candidates[score.argmax]! : -1;
    confidence[i] = token < 0 ? 0 : score.confidence;
    agrees.push(token === heldOut.finalArgmax[i]);
  }
  return quality(confidence, agrees);
}

/** Fits one ramp's parameters to the calibration positions; reports positions done to `onBatch`. */
function fit(
  head: FrozenHead,
  hidden: Float32Array,
  positions: Positions,
  options: TrainRampsOptions,
  onBatch: (positions: number, loss: number) => void,
): Float32Array {
  const { dim } = head;
  const width = head.numCandidates + 1;
  let rest = 0;
  for (let i = 0; i < positions.count; i++) rest += positions.targets[i * width + head.numCandidates]!;
  const params = initialParams(dim, Math.log(Math.max(MIN_REST_SHARE, rest / Math.max(1, positions.count))));
  leastSquaresStart(hidden, positions.final, positions.count, dim, params);
  const grad = new Float32Array(paramLayout(dim).size);
  const adam = new Adam(params.length, options.learningRate);
  const rng = new Rng(options.seed);
  const batchHidden = new Float32Array(options.batchSize * dim);
  const batchTargets = new Float32Array(options.batchSize * width);
  const totalSteps = options.epochs * Math.ceil(positions.count / options.batchSize);
  let step = 0;
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    const order = shuffled(positions.count, rng);
    for (let from = 0; from < positions.count; from += options.batchSize) {
      const n = Math.min(options.batchSize, positions.count - from);
      for (let i = 0; i < n; i++) {
        const p = order[from + i]!;
        batchHidden.set(hidden.subarray(p * dim, (p + 1) * dim), i * dim);
        batchTargets.set(positions.targets.subarray(p * width, (p + 1) * width), i * width);
      }
      grad.fill(0);
      const loss = rampLossAndGrad(head, params, batchHidden, batchTargets, n, grad);
      // Cosine decay to a tenth: big steps while far off, small ones to settle.
      adam.step(params, grad, 0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * step++) / totalSteps)));
      onBatch(n, loss);
    }
  }
  return params;
}

/** Token sequences of the text file, cut to the model's context. */
function textSequences(model: Model, file: string): number[][] {
  const tokens = model.tokenizer.encode(fs.readFileSync(file, 'utf8'));
  const length = model.config.maxSeqLen;
  return Array.from({ length: Math.ceil(tokens.length / length) }, (_, i) => tokens.slice(i * length, (i + 1) * length)).filter((s) => s.length > 1);
}

/**
 * Trains ramps for every candidate layer of the prepared model in `dir` and
 * stores them there (ramps.bin, ramp_{layer}.onnx, the manifest). Returns
 * how they were trained and the held-out report.
 */
export async function trainRamps(dir: string, overrides: Partial<TrainRampsOptions> = {}): Promise<RampTraining> {
  const options = { ...TRAIN_RAMPS_DEFAULTS, ...overrides };
  const log = (line: string) => options.verbose && process.stderr.write(`offramp: ${line}\n`);
  const started = performance.now();
  const model = await Model.load(dir, { device: 'cpu', threads: options.threads, fused: false });
  try {
    const manifest = readManifest(dir);
    const layers = manifest.rampCandidates;
    const stories = loadPrompts().flatMap((p) => (p.kind === 'story' ? [p] : []));
    const heldOutPrompts = stories.filter((_, i) => i % HELD_OUT_EVERY === HELD_OUT_EVERY - 1);
    const calibrationPrompts = stories.filter((p) => !heldOutPrompts.includes(p));

    // 1. Continuations. Sampled prefixes first (one batch), then every row in one batch: calibration rows
    // (greedy, then sampled; then greedy from the prefixes), then held-out rows (greedy; greedy from the prefixes).
    const encode = (p: { prompt: string }) => model.tokenizer.encode(p.prompt);
    const prefixed = [
      ...calibrationPrompts.flatMap((p) => Array.from({ length: options.prefixedPerPrompt }, () => encode(p))),
      ...heldOutPrompts.flatMap((p) => Array.from({ length: options.heldOutPrefixedPerPrompt }, () => encode(p))),
    ];
    const prefixes = sampledPrefixes(model, prefixed, options.seed);
    const rows: { prompt: number[]; opening: number; sampling: SamplingParams }[] = [];
    for (const p of calibrationPrompts) {
      for (let k = 0; k < options.continuationsPerPrompt; k++) {
        const temperature = k === 0 ? 0 : SAMPLED_TEMPERATURES[(k - 1) % SAMPLED_TEMPERATURES.length]!;
        rows.push({ prompt: encode(p), opening: encode(p).length, sampling: { ...GREEDY, temperature } });
      }
    }
    const numCalibrationPrefixed = calibrationPrompts.length * options.prefixedPerPrompt;
    prefixes.slice(0, numCalibrationPrefixed).forEach((prompt, i) => rows.push({ prompt, opening: prefixed[i]!.length, sampling: GREEDY }));
    const numCalibration = rows.length;
    for (const p of heldOutPrompts) rows.push({ prompt: encode(p), opening: encode(p).length, sampling: GREEDY });
    prefixes
      .slice(numCalibrationPrefixed)
      .forEach((prompt, i) => rows.push({ prompt, opening: prefixed[numCalibrationPrefixed + i]!.length, sampling: GREEDY }));
    const generated = generateContinuations(
      model,
      rows.map((r) => r.prompt),
      rows.map((r) => r.sampling),
      options.seed,
      options.newTokens,
    );
    const calibration = generated.slice(0, numCalibration).map((tokens) => ({ tokens, from: 0 }));
    const text = options.textFile ? textSequences(model, options.textFile) : [];
    calibration.push(...text.map((tokens) => ({ tokens, from: 0 })));
    // Held out: only the positions that predicted a token the model said after the opening (its sampled
    // prefix, then its greedy continuation; a prompt may have filled the context).
    const heldOut = generated.slice(numCalibration).map((tokens, i) => ({
      tokens: tokens.slice(0, -1),
      from: Math.min(rows[numCalibration + i]!.opening, tokens.length) - 1,
    }));
    log(`generated ${generated.length} continuations in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    // 2-3. Candidates from what the model said, then the positions.
    const said = [...generated.slice(0, numCalibration).map((tokens, i) => tokens.slice(rows[i]!.opening)), ...text];
    const candidates = candidatesByFrequency(said, Math.min(RAMP_VOCAB, model.config.vocabSize));
    const train = capture(model, calibration, layers, candidates);
    const test = capture(model, heldOut, layers, candidates);
    const width = candidates.length + 1;
    let mass = 0;
    for (let i = 0; i < test.count; i++) mass += 1 - test.targets[i * width + candidates.length]!;
    const candidateMass = mass / Math.max(1, test.count);
    log(`${candidates.length} candidate tokens hold ${(100 * candidateMass).toFixed(2)}% of the full model's probability on held-out positions`);

    // 4. Fit each ramp.
    const head = frozenHead(dir, manifest, candidates);
    const bar = options.verbose ? progressBar('training ramps', options.epochs * train.count * layers.length, 'positions') : null;
    let done = 0;
    let lossAverage = NaN;
    const fitted = layers.map((layer, k) => {
      const params = fit(head, train.hidden[k]!, train, options, (n, loss) => {
        done += n;
        lossAverage = Number.isNaN(lossAverage) ? loss : 0.98 * lossAverage + 0.02 * loss;
        bar?.update(done, `ramp after block ${layer + 1}: loss ${lossAverage.toFixed(3)}`);
      });
      return { layer, params };
    });
    bar?.finish(`loss ${lossAverage.toFixed(3)}`);

    // 5. Report on held-out positions.
    const ramps: RampReport[] = fitted.map(({ layer, params }, k) => ({
      afterBlocks: layer + 1,
      layer,
      plain: plainQuality(model, test.hidden[k]!, test),
      trained: trainedQuality(head, params, candidates, test.hidden[k]!, test),
    }));
    const training: RampTraining = {
      method: 'distillation',
      seed: options.seed,
      epochs: options.epochs,
      learningRate: options.learningRate,
      batchSize: options.batchSize,
      calibration: {
        prompts: calibrationPrompts.map((p) => p.id),
        continuationsPerPrompt: options.continuationsPerPrompt,
        prefixedPerPrompt: options.prefixedPerPrompt,
        newTokens: options.newTokens,
        textFile: options.textFile,
        positions: train.count,
      },
      heldOut: { prompts: heldOutPrompts.map((p) => p.id), prefixedPerPrompt: options.heldOutPrefixedPerPrompt, positions: test.count },
      candidateMass,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      ramps,
    };
    writeTrainedRamps(dir, manifest, { candidates, candidateRows: head.rows, ramps: fitted, training });
    return training;
  } finally {
    model.release();
  }
}

/** The report as a table: plain head beside trained ramp, per ramp. */
export function formatRampReport(training: RampTraining): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
  const lines = [
    `held-out: ${training.heldOut.positions} positions (greedy continuations of ${training.heldOut.prompts.join(', ')}` +
      `${training.heldOut.prefixedPerPrompt ? `, and of ${training.heldOut.prefixedPerPrompt} sampled prefixes of each` : ''}); ` +
      `candidates hold ${pct(training.candidateMass).trim()} of the full model's probability there`,
    'afterBlocks  /exits layer   agreement        exitable@99%     exitable@95%',
    '                            plain  trained   plain  trained   plain  trained',
  ];
  for (const r of training.ramps) {
    lines.push(
      `${String(r.afterBlocks).padStart(11)}  ${String(r.layer).padStart(12)}  ${pct(r.plain.agreement)}${pct(r.trained.agreement)}  ${pct(r.plain.exitable99)}${pct(r.trained.exitable99)}  ${pct(r.plain.exitable95)}${pct(r.trained.exitable95)}`,
    );
  }
  lines.push(`trained in ${training.seconds} s on ${training.calibration.positions} calibration positions (${training.epochs} epochs, seed ${training.seed})`);
  return lines.join('\n');
}
