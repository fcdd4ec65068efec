/**
 * `offramp serve`'s configuration: one zod-validated object with its
 * defaults, filled from command-line flags and the environment.
 *
 * @module
 */
import os from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { EXITS_OFF } from '../engine/index.js';
import { QUANTIZATIONS } from '../model/index.js';
import { ORIGIN_PATTERN } from './security.js';

const int = () => z.coerce.number().int();

export const ServeConfigSchema = z.object({
  /** Model source: prepared dir, llama2.c .bin, HF dir, hf:ORG/NAME or registry name (default $OFFRAMP_MODEL, else stories260K). */
  model: z.string().min(1),
  /** llama2.c tokenizer .bin for a .bin checkpoint. */
  tokenizer: z.string().optional(),
  /** How a checkpoint's linear layers are compiled ('none': float32). Unset: float32, and a prepared directory is taken as it is. */
  quantize: z.enum(QUANTIZATIONS).optional(),
  /** onnxruntime execution provider. */
  device: z.enum(['cpu', 'cuda', 'webgpu']).default('cpu'),
  /** onnxruntime intra-op threads per session; 0 lets it choose. */
  threads: int()
    .min(0)
    .max(os.cpus().length * 4)
    .default(1),
  /** TCP port (default $PORT, else 8000); 0 picks a free one. */
  port: int().min(0).max(65535).default(8000),
  /** Address to listen on; 0.0.0.0 to accept other machines. */
  host: z.string().min(1).default('127.0.0.1'),
  /** Requests decoded together (KV cache slots). */
  maxRunning: int().min(1).max(1024).default(16),
  /** Requests allowed to wait for a slot; more get 429. */
  maxQueued: int().min(0).default(64),
  /** Longest wait for a request's first token (a slot, then its prompt) before it is answered 429 queue_timeout; 0: no limit (seconds). */
  queueTimeoutSeconds: z.coerce.number().min(0).default(60),
  /** Positions per request, prompt plus completion (default and maximum: the model's maxSeqLen). */
  maxContext: int().min(2).optional(),
  /** Positions computed per engine step across all requests (bounds how long a prompt chunk can stall the streams). */
  maxStepTokens: int().min(1).default(512),
  /** Largest request body in bytes; larger ones get 413 (1 MiB: parsing a full one costs the event loop about 0.1 s). */
  maxBodyBytes: int()
    .min(1024)
    .default(1024 * 1024),
  /** The name clients use as `model` (default: the model's own short name). */
  servedModelName: z.string().min(1).optional(),
  /**
   * Early exits, for requests that do not choose: 'on' streams tokens from
   * intermediate ramps when the controller finds them accurate enough;
   * 'lossless' lets ramps draft tokens that the full model verifies.
   */
  earlyExit: z.enum(['off', 'on', 'lossless']).default('on'),
  /** The exit constraint: share of streamed tokens equal to the full model's choice. */
  accuracy: z.coerce.number().gt(0).lt(1).default(0.99),
  /** Share of a non-exiting step that all active ramps together may cost. */
  rampBudget: z.coerce.number().min(0).max(1).default(EXITS_OFF.rampBudget),
  /** How a ramp's confidence is scored: 'probe' is a trained ramp's own classifier (the margin for plain-head ramps). */
  confidence: z.enum(['probe', 'margin', 'max-prob', 'entropy']).default('probe'),
  /** Positions a sequence may exit in a row before its deep blocks must catch up. */
  maxDeferred: int().min(1).max(256).default(16),
  /** After SIGTERM/SIGINT, how long in-flight requests may take to finish before they are cut (seconds). */
  shutdownGraceSeconds: z.coerce.number().min(0).default(30),
  /** Bearer keys the API accepts (--api-key, repeated or comma-separated; else $OFFRAMP_API_KEY); none: no auth. */
  apiKeys: z.array(z.string().min(1)).default([]),
  /** Origins whose pages may call the API from a browser ('*' for any); none: CORS off. */
  corsOrigins: z.array(z.string().regex(ORIGIN_PATTERN, 'must be * or an origin such as http://localhost:5173 (no path)')).default([]),
  /** Test and soak use only: POST /debug/fault fails or slows the engine worker; POST /debug/exits forces exits; POST /debug/gc collects garbage. */
  debugRoutes: z.boolean().default(false),
});
export type ServeConfig = z.infer<typeof ServeConfigSchema>;

export const SERVE_USAGE = `usage: offramp serve [options]

  --model M              prepared dir, llama2.c .bin, Hugging Face dir, hf:ORG/NAME, or a
                         registry name; default $OFFRAMP_MODEL, else stories260K
  --tokenizer T          llama2.c tokenizer .bin for a .bin checkpoint
  --quantize Q           none | int8: how a checkpoint's linear layers are compiled
                         (default none = float32; int8 = 8-bit blocks, faster on CPU)
  --device D             cpu | cuda | webgpu (default cpu)
  --threads N            onnxruntime threads per session (default 1)
  --port P               default $PORT, else 8000 (0: any free port)
  --host H               default 127.0.0.1
  --max-running N        requests decoded together (default 16)
  --max-queued N         requests waiting beyond those before 429 (default 64)
  --max-context N        positions per request (default and maximum: the model's)
  --max-step-tokens N    positions per engine step (default 512)
  --served-model-name S  the model's name in the API (default: the model's)
  --early-exit on|lossless|off
                         on: stream tokens from early-exit ramps (default);
                         lossless: ramps draft, the full model verifies
  --accuracy A           with exits on: share of streamed tokens that must equal the full
                         model's argmax (default 0.99)
  --ramp-budget B        share of a full step all active ramps together may cost (default ${EXITS_OFF.rampBudget})
  --confidence C         probe | margin | max-prob | entropy (default probe: the trained
                         ramp's own estimate of agreement; margin, top-1 minus top-2, for
                         plain-head ramps)
  --max-deferred N       positions a stream may exit in a row before the deep blocks
                         catch up (default 16)
  --shutdown-grace S     seconds in-flight requests get after SIGTERM (default 30)
  --queue-timeout S      seconds a request may wait for its first token (queue plus prompt)
                         before it is answered 429 queue_timeout (default 60; 0: no limit)
  --max-body-bytes N     largest request body; larger ones get 413 (default 1048576)
  --api-key K            require \`Authorization: Bearer K\` on every route but /health and
                         the playground page; repeat or comma-separate for several keys
                         (default $OFFRAMP_API_KEY, comma-separated; none: no auth)
  --cors-origin O        let browser pages from origin O call the API (* for any);
                         repeatable (default: no CORS)
  --debug-routes         test and soak use only: enable POST /debug/fault (fail the engine
                         worker: {"kind": "crash" | "step"}, or slow every step:
                         {"kind": "slow", "step_ms": N}), POST /debug/exits and
                         POST /debug/gc`;

/** Wrong flags; the message names the flag and what it takes. */
export class ServeConfigError extends Error {
  override name = 'ServeConfigError';
}

const FLAGS = {
  model: 'model',
  tokenizer: 'tokenizer',
  quantize: 'quantize',
  device: 'device',
  threads: 'threads',
  port: 'port',
  host: 'host',
  'max-running': 'maxRunning',
  'max-queued': 'maxQueued',
  'max-context': 'maxContext',
  'max-step-tokens': 'maxStepTokens',
  'max-body-bytes': 'maxBodyBytes',
  'served-model-name': 'servedModelName',
  'early-exit': 'earlyExit',
  accuracy: 'accuracy',
  'ramp-budget': 'rampBudget',
  confidence: 'confidence',
  'max-deferred': 'maxDeferred',
  'shutdown-grace': 'shutdownGraceSeconds',
  'queue-timeout': 'queueTimeoutSeconds',
} as const satisfies Record<string, keyof ServeConfig>;

/** Flags that may be repeated; each value may also hold several, comma-separated. */
const LIST_FLAGS = { 'api-key': 'apiKeys', 'cors-origin': 'corsOrigins' } as const satisfies Record<string, keyof ServeConfig>;

/** Flags without a value. */
const BOOLEAN_FLAGS = { 'debug-routes': 'debugRoutes' } as const satisfies Record<string, keyof ServeConfig>;

const splitList = (values: readonly string[]): string[] =>
  values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value.length > 0);

/** Parses `offramp serve`'s flags; `help` is true for --help. Throws ServeConfigError. */
export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv = process.env): { config: ServeConfig; help: boolean } {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
    for (const flag of Object.keys(FLAGS)) options[flag] = { type: 'string' };
    for (const flag of Object.keys(LIST_FLAGS)) options[flag] = { type: 'string', multiple: true };
    for (const flag of Object.keys(BOOLEAN_FLAGS)) options[flag] = { type: 'boolean' };
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ServeConfigError(`${(error as Error).message}\n\n${SERVE_USAGE}`);
  }
  const raw: Record<string, unknown> = {
    model: env.OFFRAMP_MODEL || 'stories260K',
    port: env.PORT || undefined,
    apiKeys: splitList([env.OFFRAMP_API_KEY ?? '']),
  };
  for (const [flag, key] of Object.entries(FLAGS)) if (values[flag] !== undefined) raw[key] = values[flag];
  // A flag replaces the environment's keys rather than adding to them, as --port replaces $PORT.
  for (const [flag, key] of Object.entries(LIST_FLAGS)) {
    const given = values[flag];
    if (Array.isArray(given)) raw[key] = splitList(given.filter((v): v is string => typeof v === 'string'));
  }
  for (const [flag, key] of Object.entries(BOOLEAN_FLAGS)) if (values[flag] !== undefined) raw[key] = values[flag];
  const parsed = ServeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    const flag = Object.entries({ ...FLAGS, ...LIST_FLAGS, ...BOOLEAN_FLAGS }).find(([, k]) => k === key)?.[0] ?? key;
    // Never echo a key back (it may land in a log).
    const got = key === 'apiKeys' ? '' : ` (got ${JSON.stringify(raw[key])})`;
    throw new ServeConfigError(`--${flag}: ${issue.message}${got}`);
  }
  return { config: parsed.data, help: values.help === true };
}
