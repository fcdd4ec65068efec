/**
 * Fitting one ramp, its probe and its context model to calibration
 * positions (ramp-math.ts, probe-math.ts, context-math.ts), and scoring a
 * fitted ramp on held-out positions. Pure
 * computation on arrays: it runs in the trainer's thread or in a worker
 * (fit-worker.ts), with the same result either way.
 *
 * @module
 */
import { scoreLogits } from '../exits/index.js';
import {
  Adam,
  contextConfidence,
  exitableShare,
  featureMoments,
  fitContext,
  foldStandardization,
  initialParams,
  initialProbe,
  paramLayout,
  probeConfidence,
  probeFeatureCount,
  probeFeatures,
  probeLossAndGrad,
  ProbeScratch,
  rampLogits,
  rampLossAndGrad,
  RampTrainScratch,
  shuffled,
  standardize,
  type FfnStart,
  type FrozenHead,
} from '../model/index.js';
import { Rng } from '../util/index.js';
import { evidenceAt, type PositionText } from './calibration.js';

/** What fitting one ramp reads of the calibration positions (see calibration.ts's Positions): one layer's hidden states. */
export interface FitPositions {
  count: number;
  /** [count, dim]: the block output the ramp reads. */
  hidden: Float32Array;
  /** [count, candidates + 1]: the full model's probabilities of the candidates, then the rest. */
  targets: Float32Array;
  /** The full model's argmax over the whole vocabulary. */
  finalArgmax: Int32Array;
  /** The text before each position (see calibration.ts). */
  text: PositionText;
}

/** The settings fitting reads (see TrainRampsOptions). */
export interface FitOptions {
  seed: number;
  epochs: number;
  learningRate: number;
  batchSize: number;
  /** The MLP's width. */
  hidden: number;
  probeHidden: number;
  probeEpochs: number;
  probeLearningRate: number;
  probeBatchSize: number;
}

/** The rest logit starts at log(this) when the candidates hold (nearly) everything. */
const MIN_REST_SHARE = 1e-4;

/** Quality of one ramp from its confidence and agreement per held-out position. */
export function quality(confidence: Float64Array | Float32Array, agrees: boolean[]) {
  return {
    agreement: agrees.filter(Boolean).length / Math.max(1, agrees.length),
    exitable99: exitableShare(confidence, agrees, 0.99),
    exitable95: exitableShare(confidence, agrees, 0.95),
  };
}

/** Positions a trained ramp scores at a time when it reads many: its logits are needed only for this long. */
const READING_CHUNK = 256;

/**
 * What a trained ramp says at `count` positions: the probe's features, the
 * margin, its token (−1: the rest column won) and whether that is the full
 * model's.
 */
function rampReadings(head: FrozenHead, params: Float32Array, candidates: Int32Array, hidden: Float32Array, positions: Omit<FitPositions, 'hidden'>) {
  const { dim, numCandidates } = head;
  const width = numCandidates + 1;
  const numFeatures = probeFeatureCount(dim);
  const features = new Float32Array(positions.count * numFeatures);
  const margin = new Float64Array(positions.count);
  const tokens = new Int32Array(positions.count);
  const agrees = new Uint8Array(positions.count);
  const logits = new Float32Array(READING_CHUNK * width);
  for (let from = 0; from < positions.count; from += READING_CHUNK) {
    const n = Math.min(READING_CHUNK, positions.count - from);
    rampLogits(head, params, hidden.subarray(from * dim, (from + n) * dim), n, logits, (batch, first, count) => {
      const rows = logits.subarray(first * width, (first + count) * width);
      probeFeatures(rows, width, batch.n, batch.x, dim, count, features.subarray((from + first) * numFeatures, (from + first + count) * numFeatures));
    });
    for (let i = 0; i < n; i++) {
      const score = scoreLogits(logits.subarray(i * width, (i + 1) * width), 'margin');
      // The rest column wins: no single token, so the server gives it confidence 0 and it never exits.
      const token = score.argmax < numCandidates ? candidates[score.argmax]! : -1;
      margin[from + i] = token < 0 ? 0 : score.confidence;
      tokens[from + i] = token;
      agrees[from + i] = token === positions.finalArgmax[from + i] ? 1 : 0;
    }
  }
  return { features, margin, tokens, agrees };
}

/** The probe's confidence at each position of `readings` (0 where the rest column won: it never exits). */
function probeConfidences(head: FrozenHead, probe: Float32Array, readings: ReturnType<typeof rampReadings>): Float32Array {
  const confidence = new Float32Array(readings.tokens.length);
  probeConfidence(probe, readings.features, probeFeatureCount(head.dim), readings.tokens.length, confidence);
  readings.tokens.forEach((token, i) => token < 0 && (confidence[i] = 0));
  return confidence;
}

/** How often a fitted map's best column is the full model's token on held-out positions (the lookahead head's measure). */
export function trainedAgreement(head: FrozenHead, params: Float32Array, candidates: Int32Array, heldOut: FitPositions): number {
  const { agrees } = rampReadings(head, params, candidates, heldOut.hidden, heldOut);
  return agrees.reduce((n, a) => n + a, 0) / Math.max(1, agrees.length);
}

/**
 * A trained ramp on held-out positions, scored as the server scores it: by
 * its probe weighed against the context (and by the probe alone and the
 * margin, beside it).
 */
export function trainedQuality(head: FrozenHead, fitted: FittedRampParams, candidates: Int32Array, heldOut: FitPositions) {
  const readings = rampReadings(head, fitted.params, candidates, heldOut.hidden, heldOut);
  const probe = probeConfidences(head, fitted.probe, readings);
  const confidence = probe.map((p, i) => {
    const token = readings.tokens[i]!;
    return token < 0 ? 0 : contextConfidence(fitted.context, p, evidenceAt(heldOut.text, i, token));
  });
  const said = Array.from(readings.agrees, Boolean);
  const byProbe = quality(probe, said);
  const byMargin = quality(readings.margin, said);
  return {
    ...quality(confidence, said),
    probeExitable99: byProbe.exitable99,
    probeExitable95: byProbe.exitable95,
    marginExitable99: byMargin.exitable99,
    marginExitable95: byMargin.exitable95,
  };
}

/** Cosine decay to a tenth over `totalSteps`: big steps while far off, small ones to settle. */
const cosineScale = (step: number, totalSteps: number) => 0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * step) / totalSteps));

/** Fits one ramp's parameters to the calibration positions, from `start` (see initialParams); reports positions done to `onBatch`. */
function fit(
  head: FrozenHead,
  positions: FitPositions,
  start: FfnStart | null,
  options: FitOptions,
  onBatch: (positions: number, loss: number) => void,
): Float32Array {
  const { dim } = head;
  const { hidden } = positions;
  const width = head.numCandidates + 1;
  const mlp = options.hidden;
  let rest = 0;
  for (let i = 0; i < positions.count; i++) rest += positions.targets[i * width + head.numCandidates]!;
  const rng = new Rng(options.seed);
  const params = initialParams(dim, mlp, Math.log(Math.max(MIN_REST_SHARE, rest / Math.max(1, positions.count))), rng, start);
  const grad = new Float32Array(paramLayout(dim, mlp).size);
  const adam = new Adam(params.length, options.learningRate);
  const scratch = new RampTrainScratch(head, mlp, options.batchSize);
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
      const loss = rampLossAndGrad(head, params, batchHidden, batchTargets, n, grad, scratch);
      adam.step(params, grad, cosineScale(step++, totalSteps));
      onBatch(n, loss);
    }
  }
  return params;
}

/** What a fitted ramp says at the calibration positions: its probe and its context model are fitted to it. */
type Readings = ReturnType<typeof rampReadings>;

/**
 * Fits a trained ramp's probe on the calibration positions' `readings`:
 * whether the ramp's token is the full model's, from its features
 * (standardised while training, folded back into the first layer after).
 * Returns the probe's parameters, reading raw features.
 */
function fitProbe(head: FrozenHead, readings: Readings, options: FitOptions): Float32Array {
  const numFeatures = probeFeatureCount(head.dim);
  const { agrees } = readings;
  const count = agrees.length;
  // A copy: the readings' raw features go on to the context model's fit.
  const features = readings.features.slice();
  const moments = featureMoments(features, numFeatures, count);
  standardize(features, numFeatures, count, moments);
  const rng = new Rng(options.seed + 1);
  const probe = initialProbe(numFeatures, options.probeHidden, rng);
  const grad = new Float32Array(probe.length);
  const adam = new Adam(probe.length, options.probeLearningRate);
  const size = options.probeBatchSize;
  const scratch = new ProbeScratch(options.probeHidden, size, numFeatures);
  const batchFeatures = new Float32Array(size * numFeatures);
  const batchLabels = new Uint8Array(size);
  const totalSteps = options.probeEpochs * Math.ceil(count / size);
  let step = 0;
  for (let epoch = 0; epoch < options.probeEpochs; epoch++) {
    const order = shuffled(count, rng);
    for (let from = 0; from < count; from += size) {
      const n = Math.min(size, count - from);
      for (let i = 0; i < n; i++) {
        const p = order[from + i]!;
        batchFeatures.set(features.subarray(p * numFeatures, (p + 1) * numFeatures), i * numFeatures);
        batchLabels[i] = agrees[p]!;
      }
      grad.fill(0);
      probeLossAndGrad(probe, batchFeatures, batchLabels, numFeatures, n, grad, scratch);
      adam.step(probe, grad, cosineScale(step++, totalSteps));
    }
  }
  return foldStandardization(probe, numFeatures, moments);
}

/** A fitted ramp: its parameters (ramp-math.ts), its probe's (probe-math.ts) and its context model's weights (context-math.ts). */
export interface FittedRampParams {
  params: Float32Array;
  probe: Float32Array;
  context: Float64Array;
}

/** Fits the context model on the calibration positions, from the fitted ramp's tokens (`readings`) and its probe's confidence. */
function fitRampContext(head: FrozenHead, probe: Float32Array, readings: Readings, positions: FitPositions): Float64Array {
  const confidence = probeConfidences(head, probe, readings);
  // Where the rest column won the ramp never exits, whatever the context says: those positions teach it nothing.
  const kept = Array.from(readings.tokens.keys()).filter((i) => readings.tokens[i]! >= 0);
  return fitContext({
    count: kept.length,
    confidence: Float32Array.from(kept, (i) => confidence[i]!),
    evidence: kept.map((i) => evidenceAt(positions.text, i, readings.tokens[i]!)),
    agrees: Uint8Array.from(kept, (i) => readings.agrees[i]!),
  });
}

/** One ramp to fit (in this thread or a worker's). */
export interface FitJob {
  head: FrozenHead;
  candidates: Int32Array;
  positions: FitPositions;
  options: FitOptions;
  /** False: the map alone, no probe or context model (the lookahead head). */
  probe: boolean;
  /** The feed-forward layer its gated MLP starts from (ramp-math.ts's ffnStart); null: at random, D = 0. */
  start: FfnStart | null;
}

/**
 * Fits one ramp (epochs of Adam on the distillation loss, seeded), then its
 * probe and its context model on the same positions; without `probe` (the
 * lookahead head, which drafts unscored) the map alone, its probe and
 * context empty. `onBatch` hears of every batch of the ramp's fitting:
 * positions done and the batch's loss.
 */
export function fitRamp(job: FitJob, onBatch: (positions: number, loss: number) => void = () => {}): FittedRampParams {
  const { head, candidates, positions, options } = job;
  const params = fit(head, positions, job.start, options, onBatch);
  if (!job.probe) return { params, probe: new Float32Array(0), context: new Float64Array(0) };
  // Read once: the probe and the context model both fit to what the fitted ramp says.
  const readings = rampReadings(head, params, candidates, positions.hidden, positions);
  const probe = fitProbe(head, readings, options);
  return { params, probe, context: fitRampContext(head, probe, readings, positions) };
}
