/**
 * Trains the ramps of a prepared model with the backbone frozen (Apparate
 * §3.1), by distillation on the model's own continuations:
 *
 * 1. Calibration text: the model continues prompts/prompts.json's story
 *    openings (one greedy and several sampled continuations each), and
 *    continues greedily from several sampled prefixes of each opening (a
 *    few to 40 tokens at temperature 1: many distinct starts of the greedy
 *    text the held-out set is, without one opening's loop repeated), and
 *    greedily from story openings it samples from nothing (the names and
 *    settings the prompts lack), all rows decoded as one batch, plus an
 *    optional text file. Every third
 *    opening is held out: its greedy continuation and its greedy
 *    continuations from sampled prefixes are only ever used for the report,
 *    which scores the positions that predict the greedy tokens.
 * 2. Candidates: the tokens of those continuations, most frequent first (at
 *    most RAMP_VOCAB): what the model itself says, not the lowest ids.
 * 3. One forward pass per sequence keeps every candidate block's hidden
 *    states and the full model's next-token distribution (on the candidates,
 *    plus the mass outside them).
 * 4. Per ramp, epochs of Adam over those positions (ramp-math.ts: a
 *    residual gated MLP before the model's own final norm and head, on a
 *    Llama model started from the next block's feed-forward layer), seeded; then
 *    its probe (probe-math.ts): a small classifier of whether the ramp's
 *    token is the full model's, fitted on the same positions; then its
 *    context model (context-math.ts), which weighs the probe against what
 *    the text before each position says (an induction match, the counts of
 *    what followed its last tokens).
 * 5. Report: held-out agreement with the full model's argmax and the share
 *    exitable at 99% / 95% precision, plain head (ranked by margin) beside
 *    trained ramp (ranked by its probe weighed against the context, as the
 *    server ranks, by its probe alone, and by margin).
 *
 * @module
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GREEDY, type SamplingParams } from '../engine/index.js';
import { scoreLogits } from '../exits/index.js';
import {
  blockMacs,
  ffnStart,
  loadPrompts,
  Model,
  probeFeatureCount,
  RAMP_VOCAB,
  readManifest,
  StoredWeights,
  WEIGHTS_FILE,
  writeTrainedRamps,
  type FfnStart,
  type FrozenHead,
  type Manifest,
  type ModelConfig,
  type RampReport,
  type RampTraining,
} from '../model/index.js';
import { progressBar } from '../util/index.js';
import {
  candidatesByFrequency,
  concatPositions,
  generateContinuations,
  generatedPositions,
  sampledPrefixes,
  sequencePositions,
  textSequences,
  type Positions,
} from './calibration.js';
import { fitRamps } from './fit-worker.js';
import { quality, trainedAgreement, trainedQuality, type FitOptions, type FitPositions } from './fit.js';

export { candidatesByFrequency } from './calibration.js';

export interface TrainRampsOptions {
  seed: number;
  epochs: number;
  learningRate: number;
  /**
   * Adam's learning rate for a ramp that starts from the next block's
   * feed-forward layer: a smaller step keeps what that start knows (seed 0
   * of stories260K, exitable at 99% after blocks 3 / 4: 44.5% / 58.2% at
   * 3e-3, 42.2% / 54.3% at 1e-2, the rate of a ramp started at random).
   */
  startedLearningRate: number;
  /** Positions per Adam step. */
  batchSize: number;
  /** Width of each ramp's MLP; null: DEFAULT_MLP_WIDTH, or a quarter of the model's width where that is more. */
  hidden: number | null;
  /** Epochs of the lookahead head: it fits beside the ramps, in a worker of its own, so more of them cost little wall time. */
  lookaheadEpochs: number;
  /** The probe's hidden width, epochs, learning rate and positions per step. */
  probeHidden: number;
  probeEpochs: number;
  probeLearningRate: number;
  probeBatchSize: number;
  /** Continuations per calibration prompt: one greedy, the rest sampled (temperatures alternate 1 and 0.7). */
  continuationsPerPrompt: number;
  /** Greedy continuations per calibration prompt from a sampled prefix of it (seeded lengths, 4..40 tokens). */
  prefixedPerPrompt: number;
  /**
   * Greedy continuations from the model's own story openings, sampled from
   * nothing (BOS, then 4..40 tokens at temperature 1): the names and
   * settings the prompts' openings do not have, which the ramps' probes
   * would otherwise take to be surer than they are.
   */
  unprompted: number;
  /** The same per held-out prompt, beside its plain greedy continuation: a larger, more varied report set. */
  heldOutPrefixedPerPrompt: number;
  /** New tokens per continuation (fewer when the model stops or its context ends). */
  newTokens: number;
  /** More calibration text (teacher-forced), beside the continuations. */
  textFile: string | null;
  /**
   * onnxruntime threads for the forward passes. The generation runs before
   * the fitting, so it has the cores to itself: two threads took it from
   * 14.6–19.0 s to 10.7–15.8 s on stories260K here, and gave the same ramps
   * byte for byte.
   */
  threads: number;
  /** Ramps fitted at once, each in a worker thread (1: one after the other, in this thread). */
  workers: number;
  /** Progress lines and the bar go to stderr when true. */
  verbose: boolean;
}

export const TRAIN_RAMPS_DEFAULTS: TrainRampsOptions = {
  seed: 0,
  epochs: 1,
  lookaheadEpochs: 2,
  learningRate: 1e-2,
  startedLearningRate: 3e-3,
  batchSize: 32,
  hidden: null,
  probeHidden: 32,
  probeEpochs: 2,
  probeLearningRate: 3e-3,
  probeBatchSize: 64,
  continuationsPerPrompt: 4,
  prefixedPerPrompt: 20,
  unprompted: 96,
  heldOutPrefixedPerPrompt: 12,
  newTokens: 200,
  textFile: null,
  threads: Math.min(2, os.availableParallelism()),
  workers: Math.min(2, os.availableParallelism()),
  verbose: false,
};

/** Every third story opening is held out for the report. */
const HELD_OUT_EVERY = 3;

/** Sampled continuations alternate these temperatures (greedy is the first continuation). */
const SAMPLED_TEMPERATURES = [1, 0.7];

/** Positions per call when the report scores held-out positions through the model's head. */
const EVAL_CHUNK = 256;

/**
 * Speeds measured here (2 cores shared by several jobs) for the estimate:
 * ramp-math's training loop in multiply-adds per second and worker, and
 * onnxruntime's forward passes in multiply-adds per second of weights read.
 */
const FIT_MACS_PER_SECOND = 1e9;
const FORWARD_MACS_PER_SECOND = 5e9;

/** Multiply-adds of one forward position: every block's weights and the head. */
function forwardMacs(config: ModelConfig): number {
  return config.numLayers * blockMacs(config) + config.vocabSize * config.dim;
}

/**
 * A ramp's MLP is this wide at least (stories260K, width 64: its two
 * products cost 0.36 of a block); wider models get a quarter of their width
 * (2·d·d/4 multiply-adds, about 4% of a Llama block of width d).
 */
const DEFAULT_MLP_WIDTH = 128;

/** The MLP width `options` give a model of width `dim`. */
function mlpWidth(options: TrainRampsOptions, dim: number): number {
  return options.hidden ?? Math.max(DEFAULT_MLP_WIDTH, Math.round(dim / 4));
}

/** About how long `trainRamps` takes on a model of `config`, in seconds. */
export function estimateTrainingSeconds(config: ModelConfig, overrides: Partial<TrainRampsOptions> = {}): number {
  const options = { ...TRAIN_RAMPS_DEFAULTS, ...overrides };
  const stories = loadPrompts().filter((p) => p.kind === 'story').length;
  const calibrationPrompts = stories - Math.floor(stories / HELD_OUT_EVERY);
  const rows = calibrationPrompts * (options.continuationsPerPrompt + options.prefixedPerPrompt) + options.unprompted;
  const positions = rows * options.newTokens;
  const candidates = Math.min(RAMP_VOCAB, config.vocabSize);
  const ramps = config.numLayers - 1;
  const { dim } = config;
  // Per position and epoch: the head twice (forward, back), the MLP's three products three times (forward, both gradients).
  const rampMacs = 2 * candidates * dim + 9 * dim * mlpWidth(options, dim);
  // The probe: one forward of the ramp for its features, then its first layer twice per epoch.
  const probeMacs = candidates * dim + 3 * dim * mlpWidth(options, dim) + 2 * options.probeEpochs * probeFeatureCount(dim) * options.probeHidden;
  const fit = (positions * ramps * (options.epochs * rampMacs + probeMacs)) / (FIT_MACS_PER_SECOND * Math.max(1, Math.min(options.workers, ramps)));
  // Generation runs every position forward once; small models pay about as much again in per-call overhead.
  const forward = (2 * positions * forwardMacs(config)) / FORWARD_MACS_PER_SECOND;
  return fit + forward;
}

/**
 * Why the ramps of this prepared model cannot be trained, or null when they
 * can: training reads the head in float32, which an untied int8 head is not.
 */
export function untrainableReason(manifest: Manifest): string | null {
  if (manifest.config.tiedEmbeddings || manifest.weights[StoredWeights.head]?.type === 'float') return null;
  return 'its LM head is stored in int8: train the ramps on the float32 model';
}

/** Reads float32 tensors of the prepared model in `dir` by name. */
function storedFloats(dir: string, manifest: Manifest): (name: string) => Float32Array {
  const bytes = fs.readFileSync(path.join(dir, WEIGHTS_FILE));
  return (name) => {
    const ref = manifest.weights[name]!;
    if (ref.type !== 'float') throw new Error(`cannot train the ramps of ${dir}: ${untrainableReason(manifest)}`);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + ref.offset, bytes.byteOffset + ref.offset + ref.byteLength));
  };
}

/** The frozen head every ramp shares, read from the prepared model's weights. */
function frozenHead(floats: (name: string) => Float32Array, manifest: Manifest, candidates: Int32Array): FrozenHead {
  const { dim, architecture, normEps, tiedEmbeddings } = manifest.config;
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

/**
 * Where the gated MLP of the ramp that reads block `layer`'s output starts:
 * the next block's feed-forward layer (ramp-math.ts's ffnStart), on a Llama
 * model whose weights for it are float32; else null (at random).
 */
function nextBlockStart(floats: (name: string) => Float32Array, manifest: Manifest, layer: number, width: number): FfnStart | null {
  const { architecture, dim, hiddenDim } = manifest.config;
  const names = ['w13', 'w2', 'ffn_norm'].map((name) => StoredWeights.layer(layer + 1, name));
  if (architecture !== 'llama' || !names.every((name) => manifest.weights[name]?.type === 'float')) return null;
  const [w13, w2, gain] = names.map(floats) as [Float32Array, Float32Array, Float32Array];
  return ffnStart(w13, w2, gain, dim, hiddenDim, width);
}

/** Root mean square of `values`. */
function rms(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += v * v;
  return Math.sqrt(sum / Math.max(1, values.length));
}

/**
 * The lookahead head's inputs and targets (see manifest.ts's `lookahead`):
 * at every position whose next token is the full model's own, the last
 * block's output plus `scale` times that token's embedding, and as target
 * the full model's distribution one position on.
 */
function lookaheadPositions(positions: Positions, embeddings: Float32Array, scale: number, dim: number, width: number): FitPositions {
  const at = Array.from(positions.next).flatMap((next, i) => (next >= 0 ? [i] : []));
  const hidden = new Float32Array(at.length * dim);
  const targets = new Float32Array(at.length * width);
  const finalArgmax = new Int32Array(at.length);
  at.forEach((i, k) => {
    const next = positions.next[i]!;
    const token = positions.finalArgmax[i]!;
    for (let j = 0; j < dim; j++) hidden[k * dim + j] = positions.final[i * dim + j]! + scale * embeddings[token * dim + j]!;
    targets.set(positions.targets.subarray(next * width, (next + 1) * width), k * width);
    finalArgmax[k] = positions.finalArgmax[next]!;
  });
  // No probe or context model is fitted for it: it reads no text.
  const none = new Int32Array(at.length);
  return { count: at.length, hidden, targets, finalArgmax, text: { ...positions.text, start: none, end: none } };
}

/** The plain head (final norm + LM head over the whole vocabulary, no map) on held-out positions, as the margin scores it. */
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

/**
 * Trains ramps for every candidate layer of the prepared model in `dir` and
 * stores them there (ramps.bin, ramp_{layer}.onnx, the manifest). Returns
 * how they were trained and the held-out report.
 */
export async function trainRamps(dir: string, overrides: Partial<TrainRampsOptions> = {}): Promise<RampTraining> {
  const options = { ...TRAIN_RAMPS_DEFAULTS, ...overrides };
  const log = (line: string) => options.verbose && process.stderr.write(`offramp: ${line}\n`);
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  /** Wall and CPU seconds so far (CPU: every thread of the process, the fitting workers' included). */
  const clock = () => {
    const cpu = process.cpuUsage(cpuStarted);
    return `${((performance.now() - started) / 1000).toFixed(1)} s (CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s)`;
  };
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
    // A model with no BOS token has nothing to sample a story from.
    const bos = model.config.bosTokenId;
    const unprompted = bos === null ? 0 : options.unprompted;
    // Held-out prefixes come first: their draws then do not depend on how many calibration rows there are.
    const numHeldOutPrefixed = heldOutPrompts.length * options.heldOutPrefixedPerPrompt;
    const prefixed = [
      ...heldOutPrompts.flatMap((p) => Array.from({ length: options.heldOutPrefixedPerPrompt }, () => encode(p))),
      ...calibrationPrompts.flatMap((p) => Array.from({ length: options.prefixedPerPrompt }, () => encode(p))),
      ...Array.from({ length: unprompted }, () => [bos!]),
    ];
    const prefixes = sampledPrefixes(model, prefixed, options.seed);
    const rows: { prompt: number[]; opening: number; sampling: SamplingParams }[] = [];
    for (const p of calibrationPrompts) {
      for (let k = 0; k < options.continuationsPerPrompt; k++) {
        const temperature = k === 0 ? 0 : SAMPLED_TEMPERATURES[(k - 1) % SAMPLED_TEMPERATURES.length]!;
        rows.push({ prompt: encode(p), opening: encode(p).length, sampling: { ...GREEDY, temperature } });
      }
    }
    prefixes.slice(numHeldOutPrefixed).forEach((prompt, i) => rows.push({ prompt, opening: prefixed[numHeldOutPrefixed + i]!.length, sampling: GREEDY }));
    const numCalibration = rows.length;
    for (const p of heldOutPrompts) rows.push({ prompt: encode(p), opening: encode(p).length, sampling: GREEDY });
    prefixes.slice(0, numHeldOutPrefixed).forEach((prompt, i) => rows.push({ prompt, opening: prefixed[i]!.length, sampling: GREEDY }));
    const generation = generateContinuations(
      model,
      rows.map((r) => r.prompt),
      rows.map((r) => r.sampling),
      options.seed,
      options.newTokens,
      layers,
    );
    const generated = generation.tokens;
    log(`generated ${generated.length} continuations at ${clock()}`);

    // 2-3. Candidates from what the model said, then the positions: every calibration position whose next token
    // was produced, and the text's; held out, only the positions that predicted a token of the greedy continuation
    // (after the opening and its sampled prefix, which are the continuation's prompt).
    const text = options.textFile ? textSequences(model, options.textFile) : [];
    const said = [...generated.slice(0, numCalibration).map((tokens, i) => tokens.slice(rows[i]!.opening)), ...text];
    const candidates = candidatesByFrequency(said, Math.min(RAMP_VOCAB, model.config.vocabSize));
    const calibrationRows = Array.from({ length: numCalibration }, (_, i) => i);
    const heldOutRows = Array.from({ length: generated.length - numCalibration }, (_, i) => numCalibration + i);
    const fromGenerated = generatedPositions(
      model,
      generation,
      calibrationRows,
      calibrationRows.map(() => 0),
      candidates,
    );
    const train = text.length ? concatPositions(fromGenerated, sequencePositions(model, text, layers, candidates)) : fromGenerated;
    const test = generatedPositions(
      model,
      generation,
      heldOutRows,
      heldOutRows.map((r) => Math.min(rows[r]!.prompt.length, generated[r]!.length) - 1),
      candidates,
    );
    const width = candidates.length + 1;
    let mass = 0;
    for (let i = 0; i < test.count; i++) mass += 1 - test.targets[i * width + candidates.length]!;
    const candidateMass = mass / Math.max(1, test.count);
    log(`${candidates.length} candidate tokens hold ${(100 * candidateMass).toFixed(2)}% of the full model's probability on held-out positions`);
    log(`${train.count} calibration and ${test.count} held-out positions at ${clock()}`);

    // 4. Fit each ramp, then its probe, a few at once; and the lookahead head, its input's embedding weighted to the
    // scale of the last block's outputs.
    const floats = storedFloats(dir, manifest);
    const head = frozenHead(floats, manifest, candidates);
    const { dim } = model.config;
    const fitOptions: FitOptions = { ...options, hidden: mlpWidth(options, dim) };
    const embeddings = floats(StoredWeights.embeddings);
    const embeddingScale = rms(train.final) / rms(embeddings);
    const lookaheadTrain = lookaheadPositions(train, embeddings, embeddingScale, dim, width);
    const lookaheadTest = lookaheadPositions(test, embeddings, embeddingScale, dim, width);
    const totalPositions = options.epochs * train.count * layers.length + options.lookaheadEpochs * lookaheadTrain.count;
    const bar = options.verbose ? progressBar('training ramps', totalPositions, 'positions') : null;
    let done = 0;
    let lossAverage = NaN;
    // The lookahead head first: its positions are the most, and it keeps one worker busy while the ramps share the rest.
    const jobs = [
      { head, candidates, positions: lookaheadTrain, options: { ...fitOptions, epochs: options.lookaheadEpochs }, probe: false, start: null },
      ...layers.map((layer, k) => {
        const start = nextBlockStart(floats, manifest, layer, fitOptions.hidden);
        const learningRate = start ? options.startedLearningRate : options.learningRate;
        return { head, candidates, positions: { ...train, hidden: train.hidden[k]! }, options: { ...fitOptions, learningRate }, probe: true, start };
      }),
    ];
    const jobNames = ['lookahead head', ...layers.map((layer) => `ramp after block ${layer + 1}`)];
    const results = await fitRamps(jobs, options.workers, (job, n, loss) => {
      done += n;
      if (!Number.isNaN(loss)) lossAverage = Number.isNaN(lossAverage) ? loss : 0.98 * lossAverage + 0.02 * loss;
      bar?.update(done, `${jobNames[job]}: loss ${lossAverage.toFixed(3)}`);
    });
    bar?.finish(`loss ${lossAverage.toFixed(3)}`);
    log(`fitted ${layers.length} ramps and their probes, and the lookahead head (${Math.min(options.workers, jobs.length)} at once) at ${clock()}`);
    const [lookaheadFit, ...rampFits] = results;
    const fitted = rampFits.map((result, k) => ({ layer: layers[k]!, ...result }));
    const lookahead = { params: lookaheadFit!.params, embeddingScale };

    // 5. Report on held-out positions.
    const ramps: RampReport[] = fitted.map((ramp, k) => ({
      afterBlocks: ramp.layer + 1,
      layer: ramp.layer,
      plain: plainQuality(model, test.hidden[k]!, test),
      trained: trainedQuality(head, ramp, candidates, { ...test, hidden: test.hidden[k]! }),
    }));
    const training: RampTraining = {
      method: 'distillation',
      seed: options.seed,
      epochs: options.epochs,
      learningRate: options.learningRate,
      startedLearningRate: options.startedLearningRate,
      batchSize: options.batchSize,
      probe: { epochs: options.probeEpochs, learningRate: options.probeLearningRate, batchSize: options.probeBatchSize },
      calibration: {
        prompts: calibrationPrompts.map((p) => p.id),
        continuationsPerPrompt: options.continuationsPerPrompt,
        prefixedPerPrompt: options.prefixedPerPrompt,
        unprompted,
        newTokens: options.newTokens,
        textFile: options.textFile,
        positions: train.count,
      },
      heldOut: { prompts: heldOutPrompts.map((p) => p.id), prefixedPerPrompt: options.heldOutPrefixedPerPrompt, positions: test.count },
      candidateMass,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      ramps,
      lookahead: {
        epochs: options.lookaheadEpochs,
        positions: lookaheadTest.count,
        agreement: trainedAgreement(head, lookahead.params, candidates, lookaheadTest),
      },
    };
    writeTrainedRamps(dir, manifest, {
      candidates,
      candidateRows: head.rows,
      hidden: mlpWidth(options, model.config.dim),
      probeHidden: options.probeHidden,
      ramps: fitted,
      lookahead,
      training,
    });
    return training;
  } finally {
    model.release();
  }
}

/** The report as a table: plain head beside trained ramp, per ramp. */
export function formatRampReport(training: RampTraining): string {
  const pct = (x: number | undefined) => (x === undefined ? '      -' : `${(100 * x).toFixed(1)}%`.padStart(7));
  const lines = [
    `held-out: ${training.heldOut.positions} positions (greedy continuations of ${training.heldOut.prompts.join(', ')}` +
      `${training.heldOut.prefixedPerPrompt ? `, and of ${training.heldOut.prefixedPerPrompt} sampled prefixes of each` : ''}); ` +
      `candidates hold ${pct(training.candidateMass).trim()} of the full model's probability there`,
    'exitable: ranked by margin (plain head; trained ramp "margin"), by the trained ramp\'s probe ("probe"), or by the probe',
    'weighed against the context ("context", what the server uses; see context-math.ts)',
    'afterBlocks  /exits layer   agreement        exitable@99%                      exitable@95%',
    '                            plain  trained   plain   margin   probe  context   plain   margin   probe  context',
  ];
  for (const r of training.ramps) {
    const { plain, trained } = r;
    lines.push(
      `${String(r.afterBlocks).padStart(11)}  ${String(r.layer).padStart(12)}  ${pct(plain.agreement)}${pct(trained.agreement)}  ` +
        `${pct(plain.exitable99)}${pct(trained.marginExitable99)}${pct(trained.probeExitable99)}${pct(trained.exitable99)}  ` +
        `${pct(plain.exitable95)}${pct(trained.marginExitable95)}${pct(trained.probeExitable95)}${pct(trained.exitable95)}`,
    );
  }
  const { lookahead } = training;
  if (lookahead)
    lines.push(
      `lookahead head: the full model's token after next on ${pct(lookahead.agreement).trim()} of ${lookahead.positions} held-out positions ` +
        `(${lookahead.epochs} epochs; lossless mode drafts it)`,
    );
  lines.push(`trained in ${training.seconds} s on ${training.calibration.positions} calibration positions (${training.epochs} epochs, seed ${training.seed})`);
  return lines.join('\n');
}
