/**
 * `npm run bench`'s flags: one zod-validated object with its defaults, and
 * the `--quick` preset that the test runs.
 *
 * @module
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { PROJECT_ROOT } from '../src/util/index.js';
import { SYNTH_SHAPES } from '../src/model/index.js';

export const RESULTS_DIR = path.join(PROJECT_ROOT, 'bench', 'results');

/** A comma-separated flag, each item checked by `item` (an empty string is an empty list). */
const list = <T>(item: z.ZodType<T, string>) =>
  z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== ''),
    )
    .pipe(z.array(item));
/** A number written as a string. */
const num = (schema: z.ZodNumber = z.number()) => z.string().pipe(z.coerce.number<string>().pipe(schema));
const int = () => z.coerce.number().int();

/** Columns of the comparison: offramp with exits off, with exits on (one per --accuracy), in lossless mode, the transformers.js peer, llama.cpp through node-llama-cpp. */
export const VARIANT_KINDS = ['off', 'on', 'lossless', 'peer', 'llama.cpp'] as const;
export type VariantKind = (typeof VARIANT_KINDS)[number];

/** stories260K (trained) and the synth shapes (random weights). */
export const BENCH_MODELS = ['stories260K', ...Object.keys(SYNTH_SHAPES)] as [string, ...string[]];

export const BenchOptionsSchema = z.object({
  /** stories260K (../shared/models, real weights: the exit columns mean something) or a synth shape (random weights: speed only). */
  model: z.enum(BENCH_MODELS).default('stories260K'),
  /** Which columns to run. */
  variants: list(z.string().pipe(z.enum(VARIANT_KINDS))).default(['off', 'on', 'peer']),
  /** One exits-on column per value: the share of streamed tokens that must equal the full model's argmax. */
  accuracy: list(num(z.number().gt(0).lt(1))).default([0.99, 0.95]),
  /** Closed loop: this many clients, each sending its next request when the last one ends. */
  concurrency: list(num(z.number().int().min(1).max(1024))).default([1, 4, 16, 64]),
  /** Open loop: Poisson arrivals at these rates (requests/s); empty for none. */
  rate: list(num(z.number().positive())).default([8, 32]),
  /** Measured requests per closed-loop point (default: 4 x concurrency, at least 16). */
  requests: int().min(1).optional(),
  /** Open loop: seconds over which arrivals are drawn (the same schedule for every variant). */
  duration: z.coerce.number().positive().default(10),
  maxTokens: int().min(2).default(128),
  /** 0: greedy (every variant, the peer included, should write the same text). */
  temperature: z.coerce.number().min(0).max(2).default(0),
  /** Seeds the prompt order, the arrival schedule and each request's sampling seed (seed + request index). */
  seed: int().min(0).default(1234),
  /** Requests each variant answers (at concurrency min(4, max)) before its first point; excluded. */
  warmup: int().min(0).default(8),
  /** Each point runs this many times, variants alternating; the report shows medians. */
  repeats: int().min(1).default(3),
  /** onnxruntime intra-op threads, for offramp's sessions and the peer alike. */
  threads: int().min(0).default(1),
  /** Engine batch slots of the servers the bench starts (default: the largest concurrency, at least 16). */
  maxRunning: int().min(1).max(1024).optional(),
  /** Queue beyond the slots before 429 (large, so overload shows as latency, not errors). */
  maxQueued: int().min(0).default(1024),
  /** Each offramp variant in this process (its engine in its own worker thread), or as an `offramp serve` child process (its HTTP side off the load generator's event loop). */
  servers: z.enum(['inline', 'process']).default('inline'),
  /** Bench servers already running instead of starting offramp's (their flags are theirs); the peer still runs unless left out of --variants. */
  url: list(z.url()).default([]),
  /** Where bench-<model>.{json,md,svg} go. */
  out: z.string().min(1).optional(),
  quick: z.boolean().default(false),
});
export type BenchOptions = z.infer<typeof BenchOptionsSchema> & { out: string };

/** What --quick changes: a smoke run in well under a minute on a 2-core machine. */
const QUICK: Record<string, string> = {
  concurrency: '1,4',
  rate: '20',
  requests: '8',
  duration: '1',
  'max-tokens': '24',
  accuracy: '0.99',
  warmup: '2',
  repeats: '2',
};

export const BENCH_USAGE = `usage: npm run bench -- [options]

  --model M           stories260K (default; real weights) or a synth shape: stories15M,
                      stories110M, smollm-135m, gpt2 (random weights: speed only)
  --variants V        off,on,lossless,peer,llama.cpp (default off,on,peer); lossless: a server
                      with --early-exit lossless (ramps draft, the full model verifies); peer: transformers.js,
                      llama.cpp: node-llama-cpp on the same weights exported as GGUF (F32)
  --accuracy A,...    one exits-on column per value (default 0.99,0.95)
  --concurrency N,... closed-loop clients (default 1,4,16,64)
  --rate R,...        open-loop Poisson arrivals per second (default 8,32; '' for none)
  --requests N        measured requests per closed-loop point (default max(16, 4 x concurrency))
  --duration S        open-loop arrival window in seconds (default 10)
  --max-tokens N      default 128
  --temperature T     default 0 (greedy)
  --seed S            default 1234
  --warmup N          requests per variant before measuring (default 8)
  --repeats N         default 3; medians are reported
  --threads N         onnxruntime threads per session, offramp and peers (default 1)
  --max-running N     server batch slots (default: the largest concurrency, at least 16)
  --max-queued N      server queue before 429 (default 1024)
  --servers M         inline (default: each offramp variant in this process, engine in its
                      worker thread) or process (each one an \`offramp serve\` child process)
  --url U,...         bench running servers instead of starting offramp
  --out DIR           default bench/results (--quick: bench/results/tmp)
  --quick             concurrency 1,4, rate 20, 8 requests, 24 tokens, 2 repeats`;

const FLAGS = {
  model: 'model',
  variants: 'variants',
  accuracy: 'accuracy',
  concurrency: 'concurrency',
  rate: 'rate',
  requests: 'requests',
  duration: 'duration',
  'max-tokens': 'maxTokens',
  temperature: 'temperature',
  seed: 'seed',
  warmup: 'warmup',
  repeats: 'repeats',
  threads: 'threads',
  'max-running': 'maxRunning',
  'max-queued': 'maxQueued',
  servers: 'servers',
  url: 'url',
  out: 'out',
} as const satisfies Record<string, keyof BenchOptions>;

/** Wrong flags; the message names the flag. */
export class BenchUsageError extends Error {
  override name = 'BenchUsageError';
}

/** Parses the flags (explicit flags win over --quick's); `help` for --help. Throws BenchUsageError. */
export function parseBenchArgs(args: string[]): { options: BenchOptions; help: boolean } {
  let values: Record<string, string | boolean | undefined>;
  try {
    const stringFlags = Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' as const }]));
    ({ values } = parseArgs({ args, options: { ...stringFlags, quick: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (error) {
    throw new BenchUsageError(`${(error as Error).message}\n\n${BENCH_USAGE}`);
  }
  const quick = values.quick === true;
  const raw: Record<string, unknown> = { quick };
  for (const [flag, key] of Object.entries(FLAGS)) {
    const value = values[flag] ?? (quick ? QUICK[flag] : undefined);
    if (value !== undefined) raw[key] = value;
  }
  const parsed = BenchOptionsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    const flag = Object.entries(FLAGS).find(([, k]) => k === key)?.[0] ?? key;
    throw new BenchUsageError(`--${flag}: ${issue.message} (got ${JSON.stringify(raw[key])})`);
  }
  const out = parsed.data.out ?? (quick ? path.join(RESULTS_DIR, 'tmp') : RESULTS_DIR);
  return { options: { ...parsed.data, out }, help: values.help === true };
}

/** Measured requests of a closed-loop point at `concurrency`. */
export function closedLoopRequests(options: BenchOptions, concurrency: number): number {
  return options.requests ?? Math.max(16, 4 * concurrency);
}
