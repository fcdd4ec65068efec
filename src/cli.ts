/**
 * `offramp prepare | synth | generate | serve | bench`: argument parsing and
 * the commands' top level. Library code throws; `main.ts` turns errors into
 * exit codes.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { EXITS_OFF, LocalEngine } from './engine/index.js';
import { serveCommand } from './server/index.js';
import {
  defaultQuantization,
  exportHfOnnx,
  exportRamps,
  HF_ONNX_MODEL,
  exportGguf,
  GGUF_TENSOR_TYPES,
  importCheckpoint,
  isPreparedModel,
  Model,
  prepareModel,
  readPreparedCheckpoint,
  QUANTIZATIONS,
  readManifest,
  resolveModel,
  SYNTH_SHAPES,
  synthCheckpoint,
  synthTokenizer,
  weightsLabel,
  type Device,
  type Quantization,
  type SynthShape,
  type TrainRampsMode,
} from './model/index.js';
import { formatRampReport, rampTrainer, trainRamps, TRAIN_RAMPS_DEFAULTS, type TrainRampsOptions } from './ramps/index.js';
import { PROJECT_ROOT, UsageError } from './util/index.js';

const USAGE = `usage: offramp <command> [options]

commands:
  serve      start the OpenAI-compatible server
  generate   print a prompt's continuation
  prepare    compile a checkpoint into a prepared model directory (and train its ramps)
  train-ramps  train (or retrain) a model's early-exit ramps, the backbone frozen
  synth      write a random-weight model of a real shape (for speed benchmarks)
  export     write a model for the benchmark's peers: transformers.js (hf-onnx), llama.cpp (gguf)
  bench      the tokens-per-second benchmark (npm run bench; see bench/README.md)

model options (serve, generate):
  --model M        prepared dir, llama2.c .bin, .gguf, Hugging Face dir, hf:ORG/NAME, or a
                   registry name (stories260K, stories15M, stories42M, stories110M);
                   default: $OFFRAMP_MODEL, else stories260K
  --tokenizer T    llama2.c tokenizer .bin for a .bin checkpoint
  --quantize Q     none | int8: how a checkpoint's linear layers are compiled (default
                   none = float32, int8 for a Q8_0 .gguf; int8 = 8-bit blocks, smaller
                   and faster on CPU)
  --device D       cpu | cuda | webgpu (default cpu)
  --threads N      onnxruntime threads per session (default 1)

generate options:
  --prompt TEXT  --max-tokens N (default 256)  --temperature T (default 1)
  --top-p P  --top-k K  --min-p P  --seed S

prepare SOURCE --out DIR [--tokenizer T] [--quantize none|int8] [--train-ramps auto|on|off]
        auto (default): train when it takes under two minutes, else say how long it would
train-ramps MODEL [--tokenizer T] [--text FILE] [--report FILE.json] [--seed S] [--epochs N]
        [--continuations N] [--prefixed N] [--unprompted N] [--held-out-prefixed N] [--new-tokens N] [--hidden N]
        [--probe-epochs N] [--lookahead-epochs N] [--threads N] [--workers N] [--export DIR]
        MODEL as serve --model takes it; distils ramps on the model's own continuations of
        prompts/ (and --text), stores them in its prepared directory, prints the held-out report;
        --export models/NAME.ramps ships them with the repository for that checkpoint
export SOURCE --format hf-onnx --out DIR [--tokenizer T]
export SOURCE --format gguf --out FILE [--tokenizer T] [--type f32|q8_0|q4_0]
                   SOURCE may also be a float32 prepared directory (a synth model)
synth --shape ${Object.keys(SYNTH_SHAPES).join('|')} --out DIR [--seed S] [--quantize none|int8]
      [--tokenizers DIR]  real tokenizers (default ../shared/models/tokenizers)
      [--train-ramps off|on|auto]  (default off: random weights teach a ramp nothing)

'offramp serve --help' lists the server's options`;

const modelOptions = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  quantize: { type: 'string' }, // no default: given, it also checks a prepared directory (see resolveModel)
  device: { type: 'string', default: 'cpu' },
  threads: { type: 'string', default: '1' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${USAGE}`);
  }
}

/** Parses a flag through zod, naming the flag on failure. */
function flag<T>(name: string, schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`--${name}: ${parsed.error.issues[0]!.message} (got ${JSON.stringify(value)})`);
  return parsed.data;
}

const num = (schema: z.ZodNumber = z.number()) => z.coerce.number().pipe(schema);

const quantizeFlag = (value: unknown): Quantization => flag('quantize', z.enum(QUANTIZATIONS), value);

const trainRampsFlag = (value: unknown): TrainRampsMode => flag('train-ramps', z.enum(['auto', 'on', 'off']), value);

const logLine = (line: string): void => void process.stderr.write(`offramp: ${line}\n`);

export interface LoadedModelOptions {
  model?: string;
  tokenizer?: string;
  quantize?: string;
  device: string;
  threads: string;
}

/** Resolves, compiles if needed, and loads the model named on the command line. */
export async function loadModel(values: LoadedModelOptions): Promise<Model> {
  const source = values.model ?? process.env.OFFRAMP_MODEL ?? 'stories260K';
  const quantization = values.quantize === undefined ? undefined : quantizeFlag(values.quantize);
  const dir = await resolveModel(source, { tokenizer: values.tokenizer, quantization, trainer: rampTrainer(), log: logLine });
  const device = flag<Device>('device', z.enum(['cpu', 'cuda', 'webgpu']), values.device);
  const threads = flag(
    'threads',
    num(
      z
        .number()
        .int()
        .min(0)
        .max(os.cpus().length * 4),
    ),
    values.threads,
  );
  return Model.load(dir, { device, threads });
}

async function prepareCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(
    args,
    { out: { type: 'string' }, tokenizer: { type: 'string' }, quantize: { type: 'string' }, 'train-ramps': { type: 'string', default: 'auto' } },
    true,
  );
  if (positionals.length !== 1 || !values.out)
    throw new UsageError('usage: offramp prepare SOURCE --out DIR [--tokenizer T] [--quantize none|int8] [--train-ramps auto|on|off]');
  const quantization = values.quantize === undefined ? defaultQuantization(positionals[0]!) : quantizeFlag(values.quantize);
  const trainRamps = trainRampsFlag(values['train-ramps']);
  const manifest = await prepareModel(importCheckpoint(positionals[0]!, values.tokenizer), values.out, {
    quantization,
    trainRamps,
    trainer: rampTrainer({ verbose: true }),
    log: logLine,
  });
  const c = manifest.config;
  process.stdout.write(
    `prepared ${c.architecture} model (${c.numLayers} blocks, dim ${c.dim}, vocab ${c.vocabSize}, ${weightsLabel(manifest.quantization)} weights, ${manifest.trainedRamps ? 'trained' : 'plain-head'} ramps) in ${values.out}\n`,
  );
  if (manifest.trainedRamps) process.stdout.write(`${formatRampReport(manifest.trainedRamps.training)}\n`);
}

async function trainRampsCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(
    args,
    {
      tokenizer: { type: 'string' },
      text: { type: 'string' },
      report: { type: 'string' },
      export: { type: 'string' },
      seed: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.seed) },
      epochs: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.epochs) },
      continuations: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.continuationsPerPrompt) },
      prefixed: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.prefixedPerPrompt) },
      unprompted: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.unprompted) },
      'held-out-prefixed': { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.heldOutPrefixedPerPrompt) },
      'new-tokens': { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.newTokens) },
      hidden: { type: 'string' },
      'probe-epochs': { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.probeEpochs) },
      'lookahead-epochs': { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.lookaheadEpochs) },
      threads: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.threads) },
      workers: { type: 'string', default: String(TRAIN_RAMPS_DEFAULTS.workers) },
    },
    true,
  );
  if (positionals.length !== 1)
    throw new UsageError('usage: offramp train-ramps MODEL [--tokenizer T] [--text FILE] [--report FILE.json] [--seed S] [--epochs N]');
  const count = (name: string, value: unknown, min = 1) => flag(name, num(z.number().int().min(min)), value);
  const options: Partial<TrainRampsOptions> = {
    seed: count('seed', values.seed, 0),
    epochs: count('epochs', values.epochs),
    continuationsPerPrompt: count('continuations', values.continuations),
    prefixedPerPrompt: count('prefixed', values.prefixed, 0),
    unprompted: count('unprompted', values.unprompted, 0),
    heldOutPrefixedPerPrompt: count('held-out-prefixed', values['held-out-prefixed'], 0),
    newTokens: count('new-tokens', values['new-tokens']),
    hidden: values.hidden === undefined ? null : count('hidden', values.hidden),
    probeEpochs: count('probe-epochs', values['probe-epochs']),
    lookaheadEpochs: count('lookahead-epochs', values['lookahead-epochs']),
    threads: count('threads', values.threads, 0),
    workers: count('workers', values.workers),
    textFile: values.text ? path.resolve(values.text) : null,
    verbose: true,
  };
  // Compiled without training here if needed: this command trains them itself.
  const dir = await resolveModel(positionals[0]!, { tokenizer: values.tokenizer, trainRamps: 'off', log: logLine });
  const training = await trainRamps(dir, options);
  process.stdout.write(`${formatRampReport(training)}\nstored in ${dir}\n`);
  if (values.report) fs.writeFileSync(values.report, `${JSON.stringify({ model: dir, ...training }, null, 2)}\n`);
  if (values.export) {
    exportRamps(dir, readManifest(dir), importCheckpoint(readManifest(dir).source, values.tokenizer), values.export);
    process.stdout.write(`exported the ramps to ${values.export} (installed whenever this checkpoint is compiled)\n`);
  }
}

/** The benchmark lives in bench/ (never imported by src): run it as its own process. */
async function benchCommand(args: string[]): Promise<void> {
  const script = path.join(PROJECT_ROOT, 'dist', 'bench', 'run.js');
  if (!fs.existsSync(script)) throw new UsageError('the benchmark ships with the source checkout: run `npm run bench` there');
  const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => child.on('exit', (status) => resolve(status ?? 1)));
  if (code !== 0) throw new UsageError(`the benchmark exited with code ${code}`);
}

async function exportCommand(args: string[]): Promise<void> {
  const { values, positionals } = parse(
    args,
    { format: { type: 'string' }, out: { type: 'string' }, tokenizer: { type: 'string' }, type: { type: 'string', default: 'f32' } },
    true,
  );
  const usage = 'usage: offramp export SOURCE --format hf-onnx|gguf --out DIR|FILE [--tokenizer T] [--type f32|q8_0|q4_0 (gguf)]';
  if (positionals.length !== 1 || !values.out || (values.format !== 'hf-onnx' && values.format !== 'gguf')) throw new UsageError(usage);
  const source = positionals[0]!;
  if (values.format === 'gguf') {
    const type = flag('type', z.enum(GGUF_TENSOR_TYPES), values.type);
    // A prepared directory exports too (synth models exist only as one).
    exportGguf(isPreparedModel(source) ? readPreparedCheckpoint(source) : importCheckpoint(source, values.tokenizer), values.out, type);
    process.stdout.write(`exported ${source} for llama.cpp (GGUF, ${type.toUpperCase()} matrices) to ${values.out}\n`);
    return;
  }
  exportHfOnnx(importCheckpoint(source, values.tokenizer), values.out);
  process.stdout.write(`exported ${source} for transformers.js (${HF_ONNX_MODEL}) to ${values.out}\n`);
}

async function synthCommand(args: string[]): Promise<void> {
  const { values } = parse(args, {
    shape: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string', default: '0' },
    quantize: { type: 'string', default: 'none' },
    tokenizers: { type: 'string', default: path.join(PROJECT_ROOT, '..', 'shared', 'models', 'tokenizers') },
    'train-ramps': { type: 'string', default: 'off' },
  });
  const shape = flag<SynthShape>('shape', z.enum(Object.keys(SYNTH_SHAPES) as [SynthShape, ...SynthShape[]]), values.shape);
  if (!values.out) throw new UsageError('usage: offramp synth --shape SHAPE --out DIR [--seed S] [--quantize none|int8]');
  const seed = flag('seed', num(z.number().int().nonnegative()), values.seed);
  const quantization = quantizeFlag(values.quantize);
  const trainRamps = trainRampsFlag(values['train-ramps']);
  await prepareModel(synthCheckpoint(shape, seed, synthTokenizer(shape, values.tokenizers)), values.out, {
    quantization,
    trainRamps,
    trainer: rampTrainer({ verbose: true }),
    log: logLine,
  });
  process.stdout.write(`wrote random-weight ${shape} (seed ${seed}, ${weightsLabel(quantization)} weights) to ${values.out}\n`);
}

async function generateCommand(args: string[]): Promise<void> {
  const { values } = parse(args, {
    ...modelOptions,
    prompt: { type: 'string', default: '' },
    'max-tokens': { type: 'string', default: '256' },
    temperature: { type: 'string', default: '1' },
    'top-p': { type: 'string', default: '1' },
    'top-k': { type: 'string', default: '0' },
    'min-p': { type: 'string', default: '0' },
    seed: { type: 'string' },
  });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const model = await loadModel(values);
  const maxTokens = flag('max-tokens', num(z.number().int().positive()), values['max-tokens']);
  const sampling = {
    temperature: flag('temperature', num(z.number().min(0)), values.temperature),
    topP: flag('top-p', num(z.number().gt(0).max(1)), values['top-p']),
    topK: flag('top-k', num(z.number().int().min(0)), values['top-k']),
    minP: flag('min-p', num(z.number().min(0).max(1)), values['min-p']),
  };
  const seed = values.seed === undefined ? undefined : flag('seed', num(z.number().int().nonnegative()), values.seed);
  const promptTokens = model.tokenizer.encode(values.prompt);
  const maxContext = model.config.maxSeqLen;
  const engine = new LocalEngine(model, { maxRunning: 1, maxStepTokens: maxContext, maxContext, earlyExit: EXITS_OFF });
  const started = performance.now();
  let firstTokenAt = 0;
  let completionTokens = 0;
  for await (const event of engine.generate({
    id: 'generate',
    promptTokens,
    sampling,
    seed,
    maxTokens: Math.min(maxTokens, maxContext - promptTokens.length),
    stop: [],
    earlyExit: 'off',
  })) {
    if (event.type === 'error') throw new Error(event.message);
    if (event.type === 'token' && !firstTokenAt) firstTokenAt = performance.now();
    process.stdout.write(event.text);
    if (event.type === 'finished') completionTokens = event.usage.completionTokens;
  }
  process.stdout.write('\n');
  const decodeMs = performance.now() - firstTokenAt;
  const perSecond = completionTokens > 1 ? ((completionTokens - 1) / decodeMs) * 1000 : 0;
  process.stderr.write(
    `offramp: ${weightsLabel(model.manifest.quantization)} weights, ${promptTokens.length} prompt + ${completionTokens} generated tokens; first token ${(firstTokenAt - started).toFixed(1)} ms, then ${perSecond.toFixed(1)} tokens/s\n`,
  );
  model.release();
}

export async function runCli(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case 'prepare':
      return prepareCommand(args);
    case 'synth':
      return synthCommand(args);
    case 'train-ramps':
      return trainRampsCommand(args);
    case 'generate':
      return generateCommand(args);
    case 'serve':
      return serveCommand(args);
    case 'export':
      return exportCommand(args);
    case 'bench':
      return benchCommand(args);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new UsageError(`unknown command '${command}'\n\n${USAGE}`);
  }
}
