/**
 * Turns what a user passes as `--model` into a prepared model directory:
 *
 * - a prepared directory (has manifest.json): used as it is;
 * - a llama2.c `.bin` checkpoint (tokenizer from `--tokenizer`, or a
 *   tokenizer .bin beside it), a Llama GGUF file, a Hugging Face
 *   Llama-family or GPT-2 directory: compiled once into the cache, reused after;
 * - `hf:ORG/NAME`: downloaded from the Hugging Face hub, then compiled;
 * - a registry name (`stories260K`, `stories15M`, …): its files shipped in
 *   models/ (stories260K), or else its published files downloaded once; then
 *   compiled.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ModelFormatError, type Checkpoint } from './checkpoint.js';
import { ggufDefaultQuantization, importGguf, isGgufFile } from './gguf-import.js';
import { importGpt2 } from './gpt2.js';
import { importHfLlama } from './hf-llama.js';
import { importLlama2c } from './llama2c.js';
import { isPreparedModel, MANIFEST_FILE, MANIFEST_FORMAT, quantizationSuffix, readManifest, weightsLabel, type Quantization } from './manifest.js';
import { prepareModel, type RampTrainer, type TrainRampsMode } from './prepare.js';
import { SHIPPED_RAMPS_DIR } from './ramps-store.js';
import { PROJECT_ROOT } from '../util/index.js';

/** Where downloads and compiled models live: OFFRAMP_CACHE_DIR, else the project's models/ folder. */
export function cacheDir(): string {
  return process.env.OFFRAMP_CACHE_DIR ?? path.join(PROJECT_ROOT, 'models');
}

const HUB = 'https://huggingface.co';

/** Published llama2.c models: checkpoint and tokenizer on the hub. */
export const REGISTRY: Record<string, { repo: string; checkpoint: string; tokenizer: string }> = {
  stories260K: { repo: 'karpathy/tinyllamas', checkpoint: 'stories260K/stories260K.bin', tokenizer: 'stories260K/tok512.bin' },
  stories15M: { repo: 'karpathy/tinyllamas', checkpoint: 'stories15M.bin', tokenizer: '' },
  stories42M: { repo: 'karpathy/tinyllamas', checkpoint: 'stories42M.bin', tokenizer: '' },
  stories110M: { repo: 'karpathy/tinyllamas', checkpoint: 'stories110M.bin', tokenizer: '' },
};
/**
 * Registry models whose files ship in the repository's models/ folder (see
 * models/README.md): the default model starts with no network.
 */
const SHIPPED: Record<string, { checkpoint: string; tokenizer: string }> = {
  stories260K: { checkpoint: path.join(PROJECT_ROOT, 'models', 'stories260K.bin'), tokenizer: path.join(PROJECT_ROOT, 'models', 'tok512.bin') },
};

/** The shipped files of registry model `name`, when this checkout has them. */
function shippedModel(name: string): { checkpoint: string; tokenizer: string } | undefined {
  const shipped = SHIPPED[name];
  return shipped && fs.existsSync(shipped.checkpoint) && fs.existsSync(shipped.tokenizer) ? shipped : undefined;
}

/** llama2.c's own 32k tokenizer, used by the stories15M/42M/110M checkpoints. */
const LLAMA2C_TOKENIZER_URL = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin';

export interface ResolveOptions {
  /** llama2.c tokenizer .bin for a .bin checkpoint. */
  tokenizer?: string;
  /**
   * How a checkpoint's linear layers are compiled (default 'none': float32;
   * 'int8' for a GGUF file of Q8_0 matrices).
   * When given, a prepared directory must already be in that form.
   */
  quantization?: Quantization;
  /** Whether compiling a checkpoint trains its ramps (default 'auto', see prepareModel). */
  trainRamps?: TrainRampsMode;
  /** What trains them (src/ramps' rampTrainer); absent: plain-head ramps unless some were shipped. */
  trainer?: RampTrainer;
  /** Progress lines (to stderr in the CLI). */
  log?: (line: string) => void;
}

/** Raised when a download cannot happen; the message says what to do instead. */
export class DownloadError extends Error {
  override name = 'DownloadError';
}

async function download(url: string, file: string, log: (line: string) => void): Promise<void> {
  if (fs.existsSync(file)) return;
  log(`downloading ${url}`);
  let response: Response;
  try {
    response = await fetch(url, { redirect: 'follow' });
  } catch (error) {
    const cause = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
    throw new DownloadError(
      `cannot download ${url} (${cause}). Without network access, fetch the files elsewhere and pass --model PATH, or set OFFRAMP_MODEL to a local model`,
    );
  }
  if (!response.ok) throw new DownloadError(`download of ${url} failed: HTTP ${response.status} ${response.statusText}`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  fs.writeFileSync(partial, Buffer.from(await response.arrayBuffer()));
  fs.renameSync(partial, file);
}

async function downloadRegistryModel(name: string, log: (line: string) => void): Promise<{ checkpoint: string; tokenizer: string }> {
  const entry = REGISTRY[name]!;
  const dir = path.join(cacheDir(), 'downloads', name);
  const checkpoint = path.join(dir, path.basename(entry.checkpoint));
  const tokenizer = path.join(dir, entry.tokenizer ? path.basename(entry.tokenizer) : 'tokenizer.bin');
  await download(`${HUB}/${entry.repo}/resolve/main/${entry.checkpoint}`, checkpoint, log);
  await download(entry.tokenizer ? `${HUB}/${entry.repo}/resolve/main/${entry.tokenizer}` : LLAMA2C_TOKENIZER_URL, tokenizer, log);
  return { checkpoint, tokenizer };
}

async function downloadHubRepo(repo: string, log: (line: string) => void): Promise<string> {
  const dir = path.join(cacheDir(), 'downloads', repo.replace('/', '--'));
  const base = `${HUB}/${repo}/resolve/main`;
  for (const file of ['config.json', 'tokenizer.json']) await download(`${base}/${file}`, path.join(dir, file), log);
  for (const file of ['tokenizer_config.json', 'generation_config.json']) {
    await download(`${base}/${file}`, path.join(dir, file), log).catch((error: Error) => {
      if (error instanceof DownloadError && error.message.includes('HTTP 404')) return; // optional files
      throw error;
    });
  }
  const index = path.join(dir, 'model.safetensors.index.json');
  try {
    await download(`${base}/model.safetensors.index.json`, index, log);
    const weightMap = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    for (const shard of new Set(Object.values(weightMap))) await download(`${base}/${shard}`, path.join(dir, shard), log);
  } catch (error) {
    if (!(error instanceof DownloadError && error.message.includes('HTTP 404'))) throw error;
    await download(`${base}/model.safetensors`, path.join(dir, 'model.safetensors'), log);
  }
  return dir;
}

/** The tokenizer .bin beside a llama2.c checkpoint, when there is exactly one obvious candidate. */
function tokenizerBeside(checkpoint: string): string | undefined {
  const dir = path.dirname(checkpoint);
  const candidates = fs.readdirSync(dir).filter((f) => /^tok.*\.bin$/.test(f));
  return candidates.length === 1 ? path.join(dir, candidates[0]!) : undefined;
}

/** Imports a local checkpoint (llama2.c .bin, GGUF file, HF Llama or GPT-2 directory). */
export function importCheckpoint(source: string, tokenizer?: string): Checkpoint {
  const file = path.resolve(source);
  if (!fs.existsSync(file)) throw new ModelFormatError(file, 'no such file or directory');
  if (fs.statSync(file).isDirectory()) {
    const configFile = path.join(file, 'config.json');
    if (!fs.existsSync(configFile)) {
      throw new ModelFormatError(file, 'not a model: no manifest.json (prepared model) or config.json (Hugging Face checkpoint) in this directory');
    }
    const modelType = (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { model_type?: string }).model_type;
    return modelType === 'gpt2' ? importGpt2(file) : importHfLlama(file);
  }
  if (isGgufFile(file)) return importGguf(file);
  const tokenizerFile = tokenizer ?? tokenizerBeside(file);
  if (!tokenizerFile) throw new ModelFormatError(file, 'no tokenizer: pass --tokenizer with the llama2.c tokenizer .bin');
  return importLlama2c(file, tokenizerFile);
}

/** How `source` compiles without --quantize: float32, except a Q8_0 GGUF, whose blocks are int8's (see gguf-import.ts). */
export function defaultQuantization(source: string): Quantization {
  return isGgufFile(source) ? ggufDefaultQuantization(source) : 'none';
}

/** The files of `p` (itself when it is a file), in name order. */
function filesOf(p: string): string[] {
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs
    .readdirSync(p)
    .sort()
    .map((f) => path.join(p, f));
}

/**
 * A cache key that changes when the source file or directory, the compiled
 * form asked for, or the ramps that ship in models/ (which compiling may
 * install) change.
 */
function fingerprint(source: string, quantization: Quantization, tokenizer?: string): string {
  const hash = createHash('sha256');
  hash.update(`${MANIFEST_FORMAT}\n`); // a new compiler output format compiles again
  hash.update(`quantization:${quantization}\n`);
  const shipped = fs.existsSync(SHIPPED_RAMPS_DIR) ? filesOf(SHIPPED_RAMPS_DIR).filter((f) => f.endsWith('.ramps')) : [];
  for (const p of [source, tokenizer, ...shipped].filter((x): x is string => !!x)) {
    for (const f of filesOf(p)) {
      const s = fs.statSync(f);
      hash.update(`${path.resolve(f)}:${s.size}:${s.mtimeMs}\n`);
    }
  }
  return hash.digest('hex').slice(0, 12);
}

/** `dir`, unless it was prepared in another form than `quantization` asks for (a flag must not be silently ignored). */
function checkPrepared(dir: string, quantization: Quantization | undefined): string {
  if (quantization === undefined) return dir;
  const manifest = readManifest(dir);
  if (manifest.quantization !== quantization) {
    throw new ModelFormatError(
      dir,
      `prepared with ${weightsLabel(manifest.quantization)} weights, not ${weightsLabel(quantization)}: pass its checkpoint (${manifest.source}) with --quantize ${quantization}, or leave --quantize out`,
    );
  }
  return dir;
}

/** Returns a prepared model directory for `source`, compiling (and downloading) it once if needed. */
export async function resolveModel(source: string, options: ResolveOptions = {}): Promise<string> {
  const log = options.log ?? (() => {});
  let local = source;
  let tokenizer = options.tokenizer;
  if (source.startsWith('hf:')) {
    local = await downloadHubRepo(source.slice(3), log);
  } else if (REGISTRY[source] && !fs.existsSync(source)) {
    ({ checkpoint: local, tokenizer } = shippedModel(source) ?? (await downloadRegistryModel(source, log)));
  }
  // A prepared directory is used as it is (an outdated one is refused when loaded, saying to prepare it again).
  if (fs.existsSync(path.join(local, MANIFEST_FILE))) return checkPrepared(path.resolve(local), options.quantization);
  if (!fs.existsSync(local)) throw new ModelFormatError(path.resolve(local), 'no such file or directory');
  const quantization = options.quantization ?? defaultQuantization(local);
  const name = path.basename(local).replace(/\.(bin|gguf)$/, '');
  const prepared = path.join(cacheDir(), 'prepared', `${name}${quantizationSuffix(quantization)}-${fingerprint(local, quantization, tokenizer)}`);
  if (isPreparedModel(prepared)) return prepared;
  log(`compiling ${local} into ${prepared} (${weightsLabel(quantization)} weights)`);
  await prepareModel(importCheckpoint(local, tokenizer), prepared, { quantization, trainRamps: options.trainRamps, trainer: options.trainer, log });
  return prepared;
}
