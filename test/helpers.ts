/**
 * Shared pieces of the model tests: temp dirs, compiling checkpoints, tiny
 * random models, and running the CLI.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXITS_OFF } from '../src/engine/engine.js';
import { LocalEngine } from '../src/engine/local.js';
import type { GenerateRequest } from '../src/engine/types.js';
import { GREEDY } from '../src/engine/sampler.js';
import { KvCache, Model, prepareModel, type Checkpoint, type ModelConfig, type PrepareOptions } from '../src/model/index.js';
import { convertLlama2cTokenizer } from '../src/model/llama2c-tokenizer.js';
import { randomCheckpoint } from '../src/model/synth.js';
import { sharedModelPath } from './shared.js';

export const CLI = fileURLToPath(new URL('../src/main.js', import.meta.url));

export function tempDir(t: { after(fn: () => void): void }, prefix = 'offramp-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Compiles `ckpt` into a temp dir and loads it (`fused: false`: blocks one call each, always; ramps untrained unless asked). */
export async function compileAndLoad(
  t: { after(fn: () => void): void },
  ckpt: Checkpoint,
  { quantization, trainRamps = 'off', trainer, ...options }: { fused?: boolean } & PrepareOptions = {},
): Promise<Model> {
  const dir = path.join(tempDir(t), 'model');
  await prepareModel(ckpt, dir, { quantization, trainRamps, trainer });
  const model = await Model.load(dir, { device: 'cpu', threads: 1, ...options });
  t.after(() => model.release());
  return model;
}

/** A prompt in stories260K's 512-token vocabulary (which the tiny random models share). */
export const PROMPT_TOKENS = [1, 403, 407, 261, 378, 11, 263, 400, 268, 293, 271, 330, 266];

/** Runs `tokens` through the compiled model as one prompt; returns every block's output and the logits. */
export function compiledForward(model: Model, tokens: number[]): { blocks: Float32Array[]; logits: Float32Array } {
  const { dim, vocabSize, numLayers } = model.config;
  const kv = new KvCache(model.config, 1, model.config.maxSeqLen);
  const rows = { firstSlot: 0, numRows: 1, seqLen: tokens.length, pastLengths: [0] };
  let hidden = model.embed(
    tokens,
    tokens.map((_, i) => i),
  );
  const blocks: Float32Array[] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    const out = new Float32Array(tokens.length * dim);
    model.runBlock(layer, hidden, out, rows, kv);
    blocks.push(out);
    hidden = out;
  }
  const logits = new Float32Array(tokens.length * vocabSize);
  model.runHead(hidden, tokens.length, logits);
  return { blocks, logits };
}

/** A tiny random model with stories260K's 512-token vocabulary (needs ../shared/models). */
export function tinyCheckpoint(overrides: Partial<ModelConfig>, seed = 7): Checkpoint {
  const config: ModelConfig = {
    architecture: 'llama',
    dim: 32,
    hiddenDim: 48,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    vocabSize: 512,
    maxSeqLen: 64,
    normEps: 1e-5,
    rope: { theta: 10000, layout: 'interleaved' },
    tiedEmbeddings: true,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    ...overrides,
  };
  const tokenizer = convertLlama2cTokenizer(sharedModelPath('stories260K', 'tok512.bin'), 512);
  const ckpt = randomCheckpoint(config, seed, tokenizer);
  // Random init leaves norms at 1 and biases at 0; perturb them so the test sees them used.
  for (const [name, tensor] of ckpt.tensors) {
    if (tensor.dims.length === 1) tensor.data.forEach((v, i) => (tensor.data[i] = v + 0.1 * Math.sin(i + name.length)));
  }
  // Larger weights than 0.02 so attention and the head are far from uniform.
  for (const tensor of ckpt.tensors.values()) if (tensor.dims.length === 2) tensor.data.forEach((v, i) => (tensor.data[i] = v * 10));
  return ckpt;
}

/** The tiny random architectures every model-level test covers: GQA, untied head, q/k/v bias, rotate-half rotary, GPT-2. */
export function tinyVariants(): [string, Checkpoint][] {
  return [
    ['llama gqa, interleaved rope', tinyCheckpoint({})],
    ['llama untied + bias + half rope', tinyCheckpoint({ tiedEmbeddings: false, attentionBias: true, rope: { theta: 500000, layout: 'half' } })],
    ['gpt2', tinyCheckpoint({ architecture: 'gpt2', numKvHeads: 4, rope: null, attentionBias: true, hiddenDim: 128 })],
  ];
}

/** Greedy tokens for each prompt, all submitted together to one engine. */
export async function generateTogether(model: Model, prompts: number[][], maxTokens: number, maxRunning = prompts.length): Promise<number[][]> {
  const engine = new LocalEngine(model, { maxRunning, maxStepTokens: 256, maxContext: model.config.maxSeqLen, earlyExit: EXITS_OFF });
  return Promise.all(
    prompts.map(async (promptTokens, i) => {
      const request: GenerateRequest = { id: `r${i}`, promptTokens, sampling: GREEDY, maxTokens, stop: [], earlyExit: 'off' };
      const tokens: number[] = [];
      for await (const event of engine.generate(request)) {
        if (event.type === 'token') tokens.push(...event.tokenIds);
        if (event.type === 'error') throw new Error(event.message);
      }
      return tokens;
    }),
  );
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
