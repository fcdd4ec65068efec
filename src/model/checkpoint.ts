/**
 * What every importer produces: the model's shape and its weights under one
 * canonical naming, before anything is compiled.
 *
 * Linear weights are kept as PyTorch's `nn.Linear` stores them, `[out, in]`
 * row-major (llama2.c and Hugging Face Llama already do; GPT-2's Conv1D
 * weights are transposed by its importer). Canonical names:
 *
 *   tok_embeddings                 [vocab, dim]
 *   pos_embeddings                 [maxSeqLen, dim]          gpt2 only
 *   layers.{i}.attention_norm      [dim]    (+ attention_norm_bias for gpt2)
 *   layers.{i}.wq / wk / wv        [heads * headDim, dim]   (+ bq / bk / bv when attentionBias)
 *   layers.{i}.wo                  [dim, numHeads * headDim] (+ bo for gpt2)
 *   layers.{i}.ffn_norm            [dim]    (+ ffn_norm_bias for gpt2)
 *   layers.{i}.w1                  [hiddenDim, dim]  llama: gate; gpt2: c_fc (+ b1)
 *   layers.{i}.w3                  [hiddenDim, dim]  llama only: up
 *   layers.{i}.w2                  [dim, hiddenDim]  down / c_proj (+ b2 for gpt2)
 *   norm                           [dim]    (+ norm_bias for gpt2)
 *   output                         [vocab, dim]      only when the head is not tied
 *
 * @module
 */
import { z } from 'zod';

const positiveInt = z.number().int().positive();

/** The model's shape and conventions; stored as `manifest.json`'s `config`. */
export const ModelConfigSchema = z.object({
  /** 'llama': RMSNorm, rotary positions, SwiGLU. 'gpt2': LayerNorm, learned positions, GELU. */
  architecture: z.enum(['llama', 'gpt2']),
  dim: positiveInt,
  hiddenDim: positiveInt,
  numLayers: positiveInt,
  numHeads: positiveInt,
  numKvHeads: positiveInt,
  headDim: positiveInt,
  vocabSize: positiveInt,
  /** Longest sequence the model was trained for (and the rotary table covers). */
  maxSeqLen: positiveInt,
  normEps: z.number().positive(),
  /**
   * Rotary embedding, llama only. 'interleaved' rotates dims (2i, 2i+1) of
   * each head (llama2.c); 'half' rotates (i, i + headDim/2) (Hugging Face).
   */
  rope: z
    .object({
      theta: z.number().positive(),
      layout: z.enum(['interleaved', 'half']),
      /** Llama 3.1 style frequency scaling, when the checkpoint has it. */
      scaling: z
        .object({
          factor: z.number(),
          lowFreqFactor: z.number(),
          highFreqFactor: z.number(),
          originalMaxPositions: positiveInt,
        })
        .optional(),
    })
    .nullable(),
  /** The LM head reuses the token embedding matrix. */
  tiedEmbeddings: z.boolean(),
  /** q/k/v projections carry a bias (Qwen2, GPT-2). */
  attentionBias: z.boolean(),
  bosTokenId: z.number().int().nonnegative().nullable(),
  /** Generation stops at any of these. */
  eosTokenIds: z.array(z.number().int().nonnegative()),
});
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** Multiply-adds of one decoder block's weights for one position (attention's scores aside): what a block's time mostly follows. */
export function blockMacs(config: ModelConfig): number {
  const { dim, hiddenDim, numHeads, numKvHeads, headDim, architecture } = config;
  const attention = dim * (numHeads + 2 * numKvHeads) * headDim + numHeads * headDim * dim;
  const ffn = (architecture === 'llama' ? 3 : 2) * dim * hiddenDim;
  return attention + ffn;
}

/** A float32 tensor, row-major. */
export interface Tensor {
  dims: number[];
  data: Float32Array;
}

/** The tokenizer as Hugging Face files: tokenizer.json, and tokenizer_config.json when known. */
export interface TokenizerFiles {
  tokenizer: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** An imported model, ready to compile. */
export interface Checkpoint {
  config: ModelConfig;
  tensors: Map<string, Tensor>;
  tokenizer: TokenizerFiles;
  /** Where it came from, for the manifest (a path or hub id). */
  source: string;
}

/** One clear error for anything wrong with a model's files. */
export class ModelFormatError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'ModelFormatError';
  }
}

/** Fetches a tensor by canonical name, checking its shape. */
export function getTensor(checkpoint: Checkpoint, name: string, dims: number[]): Tensor {
  const tensor = checkpoint.tensors.get(name);
  if (!tensor) throw new ModelFormatError(checkpoint.source, `missing tensor ${name}`);
  if (tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
    throw new ModelFormatError(checkpoint.source, `tensor ${name} has shape [${tensor.dims}], expected [${dims}]`);
  }
  return tensor;
}
