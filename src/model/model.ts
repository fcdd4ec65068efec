/**
 * A loaded model: one onnxruntime session per decoder block plus the head,
 * the token embedding read straight from weights.bin, and the tokenizer.
 *
 * `runBlock` and `runHead` are the only two things the engine asks of the
 * model, so it can stop after any block, score a ramp, and come back later
 * for the deep blocks of deferred positions.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { ModelConfig } from './checkpoint.js';
import { BlockIO, HeadIO, StoredWeights } from './graphs.js';
import type { KvCache } from './kv-cache.js';
import { readManifest, WEIGHTS_FILE, type Manifest } from './manifest.js';
import { TextTokenizer } from './tokenizer.js';

export type Device = 'cpu' | 'cuda' | 'webgpu';

export interface RuntimeOptions {
  /** onnxruntime execution provider. */
  device: Device;
  /** Intra-op threads per session; 0 lets onnxruntime choose. */
  threads: number;
}

/** Which rows a block call covers. Row r is KV slot `firstSlot + r`. */
export interface BlockRows {
  firstSlot: number;
  numRows: number;
  /** New positions per row (every row of one call has the same count). */
  seqLen: number;
  /** Per row, how many positions this layer has cached already. */
  pastLengths: ArrayLike<number>;
}

const INSTALL_HINT: Record<Device, string> = {
  cpu: '',
  cuda: 'the CUDA execution provider is not installed: reinstall with `npm install onnxruntime-node --onnxruntime-node-install=cuda12` (needs CUDA 12 and cuDNN 9)',
  webgpu: 'the WebGPU execution provider could not start on this machine (it needs a GPU with Vulkan drivers)',
};

/** Thrown when the chosen execution provider cannot run here. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

async function createSession(file: string, options: RuntimeOptions): Promise<ort.InferenceSession> {
  const providers = options.device === 'cpu' ? ['cpu'] : [options.device];
  try {
    return await ort.InferenceSession.create(file, {
      executionProviders: providers,
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // Sessions run one after another; spinning pools would only fight for the cores.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
  } catch (error) {
    if (options.device !== 'cpu') throw new DeviceError(`--device ${options.device}: ${INSTALL_HINT[options.device]} (${(error as Error).message.split('\n')[0]})`);
    throw error;
  }
}

export class Model {
  private constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    readonly tokenizer: TextTokenizer,
    private readonly blocks: ort.InferenceSession[],
    private readonly head: ort.InferenceSession,
    /** [vocab, dim] */
    private readonly embeddings: Float32Array,
    /** [maxSeqLen, dim], GPT-2 only */
    private readonly positionEmbeddings: Float32Array | null,
  ) {}

  get config(): ModelConfig {
    return this.manifest.config;
  }

  /** A short name for APIs and logs: the directory's name. */
  get name(): string {
    return path.basename(this.dir);
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
    const blocks: ort.InferenceSession[] = [];
    for (const file of manifest.graphs.blocks) blocks.push(await createSession(path.join(dir, file), options));
    const head = await createSession(path.join(dir, manifest.graphs.head), options);
    return new Model(dir, manifest, tokenizer, blocks, head, embeddings, positionEmbeddings);
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
   * Runs decoder block `layer` over `hidden` [numRows, seqLen, dim], appending
   * each row's new keys and values to its slot. Returns the block's output.
   *
   * Rows of a batched call that have nothing to compute still get a write at
   * their own next position (pastLengths[r]); a later call for that row
   * overwrites it before anything reads it.
   */
  async runBlock(layer: number, hidden: Float32Array, rows: BlockRows, kv: KvCache): Promise<Float32Array> {
    const { numRows, seqLen, pastLengths } = rows;
    const positions = new BigInt64Array(numRows * seqLen);
    const seqlensK = new Int32Array(numRows);
    for (let r = 0; r < numRows; r++) {
      const past = pastLengths[r]!;
      if (past + seqLen > kv.context) throw new RangeError(`row ${r} needs ${past + seqLen} positions, the KV cache has ${kv.context}`);
      seqlensK[r] = past + seqLen - 1;
      for (let s = 0; s < seqLen; s++) positions[r * seqLen + s] = BigInt(past + s);
    }
    const cache = kv.view(layer, rows.firstSlot, numRows);
    const feeds: Record<string, ort.Tensor> = {
      [BlockIO.hidden]: new ort.Tensor('float32', hidden, [numRows, seqLen, this.config.dim]),
      [BlockIO.pastKey]: cache.key,
      [BlockIO.pastValue]: cache.value,
      [BlockIO.seqlensK]: new ort.Tensor('int32', seqlensK, [numRows]),
      [BlockIO.totalLength]: new ort.Tensor('int32', Int32Array.of(kv.context), [1]),
    };
    if (this.config.rope) feeds[BlockIO.positions] = new ort.Tensor('int64', positions, [numRows, seqLen]);
    const out = await this.blocks[layer]!.run(feeds, {
      [BlockIO.hiddenOut]: null,
      [BlockIO.presentKey]: cache.key,
      [BlockIO.presentValue]: cache.value,
    });
    return out[BlockIO.hiddenOut]!.data as Float32Array;
  }

  /** Logits [numRows, vocab] from hidden states [numRows, dim]: the final head, or a ramp. */
  async runHead(hidden: Float32Array, numRows: number): Promise<Float32Array> {
    const out = await this.head.run({ [HeadIO.hidden]: new ort.Tensor('float32', hidden, [numRows, this.config.dim]) });
    return out[HeadIO.logits]!.data as Float32Array;
  }

  async release(): Promise<void> {
    for (const session of [...this.blocks, this.head]) await session.release();
  }
}
