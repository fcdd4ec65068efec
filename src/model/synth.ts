/**
 * Random-weight checkpoints of real model shapes, for speed benchmarks where
 * no pretrained weights are available offline. They say nothing about exit
 * quality, only about cost.
 *
 * @module
 */
import path from 'node:path';
import { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor, type TokenizerFiles } from './checkpoint.js';
import { readTokenizerFiles } from './hf-llama.js';
import { convertLlama2cTokenizer } from './llama2c-tokenizer.js';
import { Rng } from '../util/rng.js';

export type SynthShape = 'stories15M' | 'stories110M' | 'smollm-135m' | 'gpt2';

const storiesRope = { theta: 10000, layout: 'interleaved' } as const;

/** Configs of the published models these stand in for. */
export const SYNTH_SHAPES: Readonly<Record<SynthShape, Readonly<ModelConfig>>> = {
  // karpathy/tinyllamas; llama2.c's 32k Llama 2 vocabulary (1 = <s>, 2 = </s>).
  stories15M: {
    architecture: 'llama',
    dim: 288,
    hiddenDim: 768,
    numLayers: 6,
    numHeads: 6,
    numKvHeads: 6,
    headDim: 48,
    vocabSize: 32000,
    maxSeqLen: 256,
    normEps: 1e-5,
    rope: storiesRope,
    tiedEmbeddings: true,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  },
  stories110M: {
    architecture: 'llama',
    dim: 768,
    hiddenDim: 2048,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 12,
    headDim: 64,
    vocabSize: 32000,
    maxSeqLen: 1024,
    normEps: 1e-5,
    rope: storiesRope,
    tiedEmbeddings: true,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  },
  // HuggingFaceTB/SmolLM-135M: <|endoftext|> (id 0) is both BOS and EOS.
  'smollm-135m': {
    architecture: 'llama',
    dim: 576,
    hiddenDim: 1536,
    numLayers: 30,
    numHeads: 9,
    numKvHeads: 3,
    headDim: 64,
    vocabSize: 49152,
    maxSeqLen: 2048,
    normEps: 1e-5,
    rope: { theta: 10000, layout: 'half' },
    tiedEmbeddings: true,
    attentionBias: false,
    bosTokenId: 0,
    eosTokenIds: [0],
  },
  // openai-community/gpt2 (124M); <|endoftext|> is 50256.
  gpt2: {
    architecture: 'gpt2',
    dim: 768,
    hiddenDim: 3072,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 12,
    headDim: 64,
    vocabSize: 50257,
    maxSeqLen: 1024,
    normEps: 1e-5,
    rope: null,
    tiedEmbeddings: true,
    attentionBias: true,
    bosTokenId: 50256,
    eosTokenIds: [50256],
  },
};

/** Standard deviation of the random weights (GPT-2's init). */
const INIT_STD = 0.02;

/**
 * Approximately N(0, std²) values: the sum of four 16-bit uniforms (two draws),
 * centred and scaled to unit variance. Tails stop at ±3.46 std, which random
 * weights do not miss; it is ~4x faster than Box–Muller (about 1 s per 100M values).
 */
function fillNormal(out: Float32Array, std: number, rng: Rng): void {
  const center = 2 * 0xffff;
  const scale = (std * Math.sqrt(3)) / 65536; // each uniform has variance ~65536² / 12
  for (let i = 0; i < out.length; i++) {
    const x = rng.nextUint32();
    const y = rng.nextUint32();
    out[i] = ((x & 0xffff) + (x >>> 16) + (y & 0xffff) + (y >>> 16) - center) * scale;
  }
}

/**
 * A checkpoint of `shape` with random weights, identical for the same seed:
 * matrices ~ N(0, 0.02²), norm weights 1, biases 0.
 */
export function synthCheckpoint(shape: SynthShape, seed: number, tokenizer: TokenizerFiles): Checkpoint {
  return randomCheckpoint(structuredClone(SYNTH_SHAPES[shape]), seed, tokenizer, `synth:${shape}:seed=${seed}`);
}

/** A checkpoint of any `config` with random weights (tests build tiny ones), identical for the same seed. */
export function randomCheckpoint(config: ModelConfig, seed: number, tokenizer: TokenizerFiles, source = `random:seed=${seed}`): Checkpoint {
  const { dim, hiddenDim, numHeads, numKvHeads, headDim, vocabSize, maxSeqLen } = config;
  const rng = new Rng(seed);
  const tensors = new Map<string, Tensor>();
  // Tensors are generated in this fixed order, which is what makes a seed reproducible.
  const random = (name: string, dims: number[]): void => {
    const data = new Float32Array(dims.reduce((n, d) => n * d, 1));
    fillNormal(data, INIT_STD, rng);
    tensors.set(name, { dims, data });
  };
  const constant = (name: string, dims: number[], value: number): void => {
    tensors.set(name, { dims, data: new Float32Array(dims.reduce((n, d) => n * d, 1)).fill(value) });
  };
  const gpt2 = config.architecture === 'gpt2';
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;

  random('tok_embeddings', [vocabSize, dim]);
  if (gpt2) random('pos_embeddings', [maxSeqLen, dim]);
  for (let i = 0; i < config.numLayers; i++) {
    const layer = `layers.${i}`;
    constant(`${layer}.attention_norm`, [dim], 1);
    if (gpt2) constant(`${layer}.attention_norm_bias`, [dim], 0);
    random(`${layer}.wq`, [qDim, dim]);
    random(`${layer}.wk`, [kvDim, dim]);
    random(`${layer}.wv`, [kvDim, dim]);
    if (config.attentionBias) {
      constant(`${layer}.bq`, [qDim], 0);
      constant(`${layer}.bk`, [kvDim], 0);
      constant(`${layer}.bv`, [kvDim], 0);
    }
    random(`${layer}.wo`, [dim, qDim]);
    if (gpt2) constant(`${layer}.bo`, [dim], 0);
    constant(`${layer}.ffn_norm`, [dim], 1);
    if (gpt2) constant(`${layer}.ffn_norm_bias`, [dim], 0);
    random(`${layer}.w1`, [hiddenDim, dim]);
    if (gpt2) constant(`${layer}.b1`, [hiddenDim], 0);
    else random(`${layer}.w3`, [hiddenDim, dim]);
    random(`${layer}.w2`, [dim, hiddenDim]);
    if (gpt2) constant(`${layer}.b2`, [dim], 0);
  }
  constant('norm', [dim], 1);
  if (gpt2) constant('norm_bias', [dim], 0);
  if (!config.tiedEmbeddings) random('output', [vocabSize, dim]);
  return { config, tensors, tokenizer, source };
}

/**
 * The tokenizer for a synthetic `shape`, from the shared tokenizers folder
 * (`../shared/models/tokenizers`): llama2.c's 32k vocabulary for the stories
 * shapes, GPT-2's for gpt2. SmolLM's own tokenizer is not kept offline, so
 * smollm-135m gets GPT-2's cut to its 49,152 ids (see cutByteLevelBpe).
 */
export function synthTokenizer(shape: SynthShape, tokenizersDir: string): TokenizerFiles {
  const { vocabSize } = SYNTH_SHAPES[shape];
  if (shape === 'stories15M' || shape === 'stories110M') {
    return convertLlama2cTokenizer(path.join(tokenizersDir, 'llama2-32k', 'tokenizer.bin'), vocabSize);
  }
  const gpt2 = readTokenizerFiles(path.join(tokenizersDir, 'gpt2'));
  return shape === 'gpt2' ? gpt2 : cutByteLevelBpe(gpt2, vocabSize, path.join(tokenizersDir, 'gpt2', 'tokenizer.json'));
}

const END_OF_TEXT = '<|endoftext|>';

/**
 * GPT-2's byte-level BPE kept to ids below `vocabSize`. Its token 256 + r is the
 * result of merge r, so dropping the merges whose result is gone leaves a valid
 * tokenizer. <|endoftext|> takes id 0 (SmolLM's BOS/EOS id), and the byte token
 * it displaces takes the last id.
 */
function cutByteLevelBpe(files: TokenizerFiles, vocabSize: number, file: string): TokenizerFiles {
  const model = files.tokenizer.model as { vocab?: Record<string, number>; merges?: (string | [string, string])[] } | undefined;
  if (!model?.vocab || !Array.isArray(model.merges)) throw new ModelFormatError(file, 'not a BPE tokenizer.json');
  const vocab = new Map<string, number>();
  for (const [piece, id] of Object.entries(model.vocab)) {
    if (id === 0) vocab.set(piece, vocabSize - 1);
    else if (id < vocabSize - 1) vocab.set(piece, id);
  }
  vocab.set(END_OF_TEXT, 0);
  const merges = model.merges.filter((m) => vocab.has(typeof m === 'string' ? m.replace(' ', '') : m.join('')));
  const addedToken = { id: 0, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  const tokenizer = { ...files.tokenizer, added_tokens: [addedToken], model: { ...model, vocab: Object.fromEntries(vocab), merges } };
  return files.config ? { tokenizer, config: files.config } : { tokenizer };
}
