/**
 * `manifest.json`: what a prepared model directory holds.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ModelConfigSchema, ModelFormatError } from './checkpoint.js';
import { CONTEXT_WEIGHTS, EARLIER_CONTEXT_WEIGHTS } from './context-math.js';

export const MANIFEST_FILE = 'manifest.json';
export const WEIGHTS_FILE = 'weights.bin';
export const MANIFEST_FORMAT = 'offramp-model/14';
/** Trained ramps' tensors, beside weights.bin (rewritten alone by `offramp train-ramps`). */
export const RAMPS_FILE = 'ramps.bin';

/**
 * How the linear layers' weights are stored: 'none' in float32 (MatMul),
 * 'int8' in 8-bit blocks of 32 with a float scale each (MatMulNBits; see
 * quantize.ts). The token embedding stays float32 either way.
 */
export const QUANTIZATIONS = ['none', 'int8'] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

/** The weights' format as logs and tables name it. */
export function weightsLabel(quantization: Quantization): string {
  return quantization === 'none' ? 'float32' : quantization;
}

/** What a prepared directory's name carries after the model's name: nothing for float32, `-int8` for int8. */
export function quantizationSuffix(quantization: Quantization): string {
  return quantization === 'none' ? '' : `-${quantization}`;
}

const WeightRefSchema = z.object({
  offset: z.number().int().nonnegative(),
  byteLength: z.number().int().nonnegative(),
  dims: z.array(z.number().int().nonnegative()),
  type: z.enum(['float', 'uint8', 'int8', 'int32', 'int64', 'float16']),
});

/** A ramp's quality on held-out positions, beside the full model. */
const RampQualitySchema = z.object({
  /** Share of positions where the ramp's argmax is the full model's. */
  agreement: z.number(),
  /**
   * Largest share of positions that can exit (most confident first) at 99% / 95% precision,
   * ranked by the confidence the server uses by default: the probe where the ramp has one (weighed
   * against the context where it has a context model), else the margin.
   */
  exitable99: z.number(),
  exitable95: z.number(),
  /** The same, ranked by the probe alone, for ramps whose probe is weighed against the context (see context-math.ts). */
  probeExitable99: z.number().optional(),
  probeExitable95: z.number().optional(),
  /** The same, ranked by the margin (top-1 minus top-2 probability), for ramps with a probe. */
  marginExitable99: z.number().optional(),
  marginExitable95: z.number().optional(),
});

export const RampReportSchema = z.object({
  /** Blocks run before the ramp (1…layers−1); `/exits` names it by `layer` = afterBlocks − 1. */
  afterBlocks: z.number().int().positive(),
  layer: z.number().int().nonnegative(),
  /** The plain head (final norm + LM head over the whole vocabulary, no map) and the trained ramp with its probe. */
  plain: RampQualitySchema,
  trained: RampQualitySchema,
});
export type RampReport = z.infer<typeof RampReportSchema>;

/** How the ramps were trained, and what they reached on held-out prompts. */
export const RampTrainingSchema = z.object({
  method: z.literal('distillation'),
  seed: z.number().int(),
  epochs: z.number().int().positive(),
  learningRate: z.number().positive(),
  /** That of the ramps that start from the next block's feed-forward layer. */
  startedLearningRate: z.number().positive(),
  batchSize: z.number().int().positive(),
  /** The probe's training (logistic loss against agreement with the full model's argmax, on the same positions). */
  probe: z.object({ epochs: z.number().int().positive(), learningRate: z.number().positive(), batchSize: z.number().int().positive() }),
  calibration: z.object({
    /** Prompt ids (prompts/prompts.json) whose continuations were the training text. */
    prompts: z.array(z.string()),
    /** Continuations per prompt: one greedy, the rest sampled. */
    continuationsPerPrompt: z.number().int().positive(),
    /** Greedy continuations per prompt from a sampled prefix of it (absent in ramps trained before they were added). */
    prefixedPerPrompt: z.number().int().nonnegative().optional(),
    /** Greedy continuations from the model's own sampled story openings, no prompt (absent in ramps trained before they were added). */
    unprompted: z.number().int().nonnegative().optional(),
    newTokens: z.number().int().positive(),
    textFile: z.string().nullable(),
    positions: z.number().int().nonnegative(),
  }),
  heldOut: z.object({
    prompts: z.array(z.string()),
    /** Greedy continuations per held-out prompt from a sampled prefix of it, beside its plain greedy one (absent: none). */
    prefixedPerPrompt: z.number().int().nonnegative().optional(),
    positions: z.number().int().nonnegative(),
  }),
  /** Held-out share of the full model's probability that the candidate tokens hold. */
  candidateMass: z.number(),
  seconds: z.number(),
  ramps: z.array(RampReportSchema),
  /** The lookahead head on held-out positions whose next token is the full model's: how often its guess is the full model's token after it. */
  lookahead: z.object({ epochs: z.number().int().positive(), positions: z.number().int().nonnegative(), agreement: z.number() }).optional(),
});
export type RampTraining = z.infer<typeof RampTrainingSchema>;

/** A trained map's tensors, a ramp's or the lookahead head's: b, U, c, V and D of t = h + b + D·(silu(U·x + c) ⊙ V·x) (below), and the rest logit's row and bias. */
const rampMapShape = {
  bias: WeightRefSchema, // [dim]
  up: WeightRefSchema, // [hidden, dim] (out, in)
  upBias: WeightRefSchema, // [hidden]
  linear: WeightRefSchema, // [hidden, dim] (out, in)
  down: WeightRefSchema, // [dim, hidden] (out, in)
  restRow: WeightRefSchema, // [1, dim]
  restBias: WeightRefSchema, // [1]
};

/**
 * Trained ramps (see ramp-math.ts and probe-math.ts): per candidate layer,
 * t = h + b + D·(silu(U·x + c) ⊙ V·x) with x = h / rms(h), the model's final norm,
 * the head's rows of the candidate tokens and a trained rest logit; and a
 * probe that estimates from the ramp's probabilities, normed state and input
 * whether its token is the full model's. Tensors live in `file` (ramps.bin).
 */
export const TrainedRampsSchema = z.object({
  file: z.string(),
  /** 'glu': the residual gated MLP above (format 13's plain MLP and format 8's affine d×d map are gone). */
  form: z.literal('glu'),
  /** The MLP's width. */
  hidden: z.number().int().positive(),
  /** The probe's hidden width; its features are [p1, p2, entropy, normed state, normed input]. */
  probeHidden: z.number().int().positive(),
  /** int32 token ids the ramps score, most frequent in the calibration text first. */
  candidates: WeightRefSchema,
  /** [candidates, dim]: the head's rows of those tokens (float32). */
  candidateRows: WeightRefSchema,
  ramps: z.array(
    z.object({
      /** 0-based block index whose output it reads (as `/exits` names ramps). */
      layer: z.number().int().nonnegative(),
      graph: z.string(),
      ...rampMapShape,
      probe: z.object({
        weight: WeightRefSchema, // [probeHidden, features] (out, in)
        bias: WeightRefSchema, // [probeHidden]
        out: WeightRefSchema, // [probeHidden, 1]
        outBias: WeightRefSchema, // [1]
      }),
      /** The context model's weights (context-math.ts); absent in ramps trained before it: the probe alone. Fewer in ramps trained before its last terms. */
      context: z
        .array(z.number())
        .refine((w) => w.length === CONTEXT_WEIGHTS || EARLIER_CONTEXT_WEIGHTS.includes(w.length), {
          message: `a context model has ${CONTEXT_WEIGHTS} weights (${EARLIER_CONTEXT_WEIGHTS.join(' or ')} in ramps trained before its last terms)`,
        })
        .optional(),
    }),
  ),
  /**
   * The lookahead head (absent in ramps trained before it): a map of the same
   * form over the last block's output plus `embeddingScale` times the
   * embedding of the full model's next token, guessing the token after it.
   * Its graph is the fused graph with that guess as one more output; lossless
   * greedy decoding drafts it.
   */
  lookahead: z
    .object({
      graph: z.string(),
      embeddingScale: z.number().positive(),
      ...rampMapShape,
    })
    .optional(),
  training: RampTrainingSchema,
});
export type TrainedRamps = z.infer<typeof TrainedRampsSchema>;

export const ManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  /** The checkpoint it was compiled from. */
  source: z.string(),
  config: ModelConfigSchema,
  /** How the linear layers' weights are stored. */
  quantization: z.enum(QUANTIZATIONS),
  graphs: z.object({
    blocks: z.array(z.string()),
    head: z.string(),
    /** The plain ramps' head: scores token ids below `vocab` (the whole vocabulary for small models). */
    ramp: z.object({ file: z.string(), vocab: z.number().int().positive() }),
    /** Every block and the head in one graph (KV inputs `past_key_{layer}`). */
    fused: z.string(),
  }),
  /** Block indices whose output a ramp may read. */
  rampCandidates: z.array(z.number().int().nonnegative()),
  /** Trained ramps, used in place of the plain head at every candidate layer; null: plain-head ramps. */
  trainedRamps: TrainedRampsSchema.nullable(),
  /** Where each stored tensor lies in weights.bin. */
  weights: z.record(z.string(), WeightRefSchema),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** What a model's ramps are, for logs: trained (where, on what) or the plain head. */
export function describeRamps(manifest: Manifest): string {
  const trained = manifest.trainedRamps;
  if (!trained) return `plain-head ramps (untrained; \`offramp train-ramps\` trains them)`;
  const after = trained.ramps.map((r) => r.layer + 1).join(', ');
  const { training } = trained;
  const probe = trained.ramps.every((r) => r.context) ? 'a confidence probe weighed against the context' : 'a confidence probe';
  const held = training.lookahead ? `, its guess held on ${(100 * training.lookahead.agreement).toFixed(1)}% of held-out positions` : '';
  const lookahead = trained.lookahead ? `; a lookahead head that drafts for lossless decoding${held}` : '';
  return (
    `trained ramps after blocks ${after} (residual gated MLP of width ${trained.hidden} and ${probe}; ${trained.candidates.dims[0]} candidate tokens, ` +
    `distilled on ${training.calibration.positions} positions, seed ${training.seed})${lookahead}`
  );
}

/** True when `dir` holds a model prepared by this version of the compiler (an older one compiles again). */
export function isPreparedModel(dir: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as { format?: unknown }).format === MANIFEST_FORMAT;
  } catch {
    return false; // absent or unreadable: not prepared
  }
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ModelFormatError(file, `cannot read: ${(error as Error).message}`);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ModelFormatError(file, `invalid manifest at ${issue.path.join('.') || '(root)'}: ${issue.message}; prepare the model again`);
  }
  if (parsed.data.graphs.blocks.length !== parsed.data.config.numLayers) {
    throw new ModelFormatError(file, 'the number of block graphs does not match numLayers; prepare the model again');
  }
  return parsed.data;
}
