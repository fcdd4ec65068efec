/**
 * Importer for llama2.c checkpoints (Karpathy's `.bin` files), both the
 * legacy format (version 0: a bare 7-int header, as the published stories
 * models ship) and the version-1 export (256-byte header, magic "ak42").
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
import { convertLlama2cTokenizer } from './llama2c-tokenizer.js';

const MAGIC_V1 = 0x616b3432; // "ak42"
const HEADER_V1_BYTES = 256;
const HEADER_LEGACY_BYTES = 7 * 4;

interface Header {
  dim: number;
  hiddenDim: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  vocabSize: number;
  maxSeqLen: number;
  sharedClassifier: boolean;
  dataOffset: number;
  legacy: boolean;
}

function readHeader(file: string, bytes: Buffer): Header {
  if (bytes.length < HEADER_LEGACY_BYTES) throw new ModelFormatError(file, 'file is too short to be a llama2.c checkpoint');
  const magic = bytes.readUInt32LE(0);
  if (magic === MAGIC_V1) {
    const version = bytes.readInt32LE(4);
    if (version !== 1) {
      throw new ModelFormatError(file, `llama2.c export version ${version} is not supported (only fp32 version 1 and legacy files)`);
    }
    if (bytes.length < HEADER_V1_BYTES) throw new ModelFormatError(file, 'truncated version-1 header');
    const int = (k: number) => bytes.readInt32LE(8 + 4 * k);
    return {
      dim: int(0),
      hiddenDim: int(1),
      numLayers: int(2),
      numHeads: int(3),
      numKvHeads: int(4),
      vocabSize: int(5),
      maxSeqLen: int(6),
      sharedClassifier: bytes.readUInt8(36) !== 0,
      dataOffset: HEADER_V1_BYTES,
      legacy: false,
    };
  }
  const int = (k: number) => bytes.readInt32LE(4 * k);
  const vocab = int(5);
  return {
    dim: int(0),
    hiddenDim: int(1),
    numLayers: int(2),
    numHeads: int(3),
    numKvHeads: int(4),
    // A negative vocab size is how the legacy format says "classifier not shared".
    vocabSize: Math.abs(vocab),
    maxSeqLen: int(6),
    sharedClassifier: vocab > 0,
    dataOffset: HEADER_LEGACY_BYTES,
    legacy: true,
  };
}

function checkHeader(file: string, h: Header): void {
  const fields: [string, number][] = [
    ['dim', h.dim],
    ['hidden_dim', h.hiddenDim],
    ['n_layers', h.numLayers],
    ['n_heads', h.numHeads],
    ['n_kv_heads', h.numKvHeads],
    ['vocab_size', h.vocabSize],
    ['max_seq_len', h.maxSeqLen],
  ];
  for (const [name, value] of fields) {
    if (!(value > 0 && value < 1 << 20)) {
      throw new ModelFormatError(file, `header field ${name} = ${value} is not plausible: not a llama2.c checkpoint (wrong magic number or corrupt header)`);
    }
  }
  if (h.dim % h.numHeads !== 0) throw new ModelFormatError(file, `dim ${h.dim} is not a multiple of n_heads ${h.numHeads}`);
  if (h.numHeads % h.numKvHeads !== 0) {
    throw new ModelFormatError(file, `n_heads ${h.numHeads} is not a multiple of n_kv_heads ${h.numKvHeads}`);
  }
}

/** Reads consecutive fp32 tensors from the checkpoint body. */
class TensorReader {
  private offset: number;
  constructor(
    private readonly file: string,
    private readonly bytes: Buffer,
    start: number,
  ) {
    this.offset = start;
  }

  take(dims: number[]): Tensor {
    const count = dims.reduce((a, b) => a * b, 1);
    const end = this.offset + count * 4;
    if (end > this.bytes.length) {
      throw new ModelFormatError(this.file, `truncated: expected at least ${end} bytes, the file has ${this.bytes.length}`);
    }
    // Copy into an aligned buffer: the body is not 4-byte aligned in the legacy format's Buffer pool.
    const data = new Float32Array(count);
    new Uint8Array(data.buffer).set(this.bytes.subarray(this.offset, end));
    this.offset = end;
    return { dims, data };
  }

  /** `count` tensors of one shape, stored back to back (llama2.c stacks each weight over layers). */
  takeStack(count: number, dims: number[]): Tensor[] {
    return Array.from({ length: count }, () => this.take(dims));
  }

  skip(numFloats: number): void {
    this.offset += numFloats * 4;
  }

  get position(): number {
    return this.offset;
  }
}

/**
 * Reads a llama2.c checkpoint and its tokenizer.bin into a Checkpoint.
 * Throws ModelFormatError naming the file and the problem.
 */
export function importLlama2c(checkpointPath: string, tokenizerPath: string): Checkpoint {
  const file = path.resolve(checkpointPath);
  if (!fs.existsSync(file)) throw new ModelFormatError(file, 'no such file');
  if (!fs.existsSync(tokenizerPath)) {
    throw new ModelFormatError(tokenizerPath, 'no such file (pass --tokenizer with the llama2.c tokenizer .bin)');
  }
  const bytes = fs.readFileSync(file);
  const h = readHeader(file, bytes);
  checkHeader(file, h);
  const headDim = h.dim / h.numHeads;
  const kvDim = h.numKvHeads * headDim;
  const L = h.numLayers;
  const r = new TensorReader(file, bytes, h.dataOffset);
  const tensors = new Map<string, Tensor>();
  const putStack = (name: string, stack: Tensor[]) => stack.forEach((t, i) => tensors.set(`layers.${i}.${name}`, t));

  if (h.legacy) {
    tensors.set('tok_embeddings', r.take([h.vocabSize, h.dim]));
    putStack('attention_norm', r.takeStack(L, [h.dim]));
    putStack('wq', r.takeStack(L, [h.dim, h.dim]));
    putStack('wk', r.takeStack(L, [kvDim, h.dim]));
    putStack('wv', r.takeStack(L, [kvDim, h.dim]));
    putStack('wo', r.takeStack(L, [h.dim, h.dim]));
    putStack('ffn_norm', r.takeStack(L, [h.dim]));
    putStack('w1', r.takeStack(L, [h.hiddenDim, h.dim]));
    putStack('w2', r.takeStack(L, [h.dim, h.hiddenDim]));
    putStack('w3', r.takeStack(L, [h.hiddenDim, h.dim]));
    tensors.set('norm', r.take([h.dim]));
    r.skip(h.maxSeqLen * headDim); // the unused freq_cis_real and freq_cis_imag tables
  } else {
    putStack('attention_norm', r.takeStack(L, [h.dim]));
    putStack('ffn_norm', r.takeStack(L, [h.dim]));
    tensors.set('norm', r.take([h.dim]));
    tensors.set('tok_embeddings', r.take([h.vocabSize, h.dim]));
    putStack('wq', r.takeStack(L, [h.dim, h.dim]));
    putStack('wk', r.takeStack(L, [kvDim, h.dim]));
    putStack('wv', r.takeStack(L, [kvDim, h.dim]));
    putStack('wo', r.takeStack(L, [h.dim, h.dim]));
    putStack('w1', r.takeStack(L, [h.hiddenDim, h.dim]));
    putStack('w2', r.takeStack(L, [h.dim, h.hiddenDim]));
    putStack('w3', r.takeStack(L, [h.hiddenDim, h.dim]));
  }
  if (!h.sharedClassifier) tensors.set('output', r.take([h.vocabSize, h.dim]));
  if (r.position !== bytes.length) {
    throw new ModelFormatError(file, `${bytes.length - r.position} unexpected trailing bytes: the header does not describe this file`);
  }

  const config: ModelConfig = {
    architecture: 'llama',
    dim: h.dim,
    hiddenDim: h.hiddenDim,
    numLayers: L,
    numHeads: h.numHeads,
    numKvHeads: h.numKvHeads,
    headDim,
    vocabSize: h.vocabSize,
    maxSeqLen: h.maxSeqLen,
    normEps: 1e-5,
    rope: { theta: 10000, layout: 'interleaved' },
    tiedEmbeddings: h.sharedClassifier,
    attentionBias: false,
    bosTokenId: 1,
    // llama2.c models were trained on BOS-delimited stories: BOS marks the end of one, as run.c treats it.
    eosTokenIds: [2, 1],
  };
  return { config, tensors, tokenizer: convertLlama2cTokenizer(tokenizerPath, h.vocabSize), source: file };
}
