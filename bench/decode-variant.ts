/**
 * One of offramp's decode variants in a process of its own, for decode.ts:
 * it loads the model once, then answers each message from its parent with
 * one measurement (REQUESTS decodes, tokens/s over all of them). So no two
 * of offramp's variants share a process, as llama.cpp's never share one
 * with onnxruntime: a stories110M engine beside the other two variants'
 * models in its process decoded int8 on two threads at 140–176 tokens/s,
 * alone in its process at 146–192 (4 pairs, alternating, 2026-12-06), and a
 * server holds one model.
 *
 *   fork('decode-variant.js', [DIR, THREADS, VARIANT, PROMPT, TOKENS, REQUESTS])
 *
 * VARIANT: `per-block` (the engine, every block a call), `default` (the
 * engine as loaded by default) or `bare` (the bare loop over the fused
 * graph). It sends `{ready: true}` once loaded, then `{tokensPerSecond}` for
 * each message it gets, and exits when its parent disconnects.
 *
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Model } from '../src/model/index.js';
import { bareDecode, engineDecode } from './decode-loop.js';
import { combinedRate } from './stats.js';

export const DECODE_VARIANTS = ['per-block', 'default', 'bare'] as const;
export type DecodeVariant = (typeof DECODE_VARIANTS)[number];

const ReplySchema = z.union([z.object({ ready: z.literal(true) }), z.object({ tokensPerSecond: z.number() })]);

/** A variant's process: `measure` decodes `requests` times there and resolves to its tokens/s over them. */
export class VariantProcess {
  private constructor(private readonly child: ChildProcess) {}

  static async start(dir: string, threads: number, variant: DecodeVariant, prompt: string, numTokens: number, requests = 1): Promise<VariantProcess> {
    const script = fileURLToPath(import.meta.url);
    const child = fork(script, [dir, String(threads), variant, prompt, String(numTokens), String(requests)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const started = new VariantProcess(child);
    await started.reply();
    return started;
  }

  /** The variant's process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  async measure(): Promise<number> {
    this.child.send('measure');
    const reply = await this.reply();
    if (!('tokensPerSecond' in reply)) throw new Error('decode-variant answered a measurement with no tokens/s');
    return reply.tokensPerSecond;
  }

  /** Lets go of the process, which then ends by itself; resolves to its exit code. */
  stop(): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.child.disconnect();
    return exited;
  }

  private reply(): Promise<z.infer<typeof ReplySchema>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`decode-variant exited (code ${code}) before it answered`));
      this.child.once('exit', onExit);
      this.child.once('message', (message) => {
        this.child.off('exit', onExit);
        resolve(ReplySchema.parse(message));
      });
    });
  }
}

/** The child's side: load, say ready, measure on each message. */
async function serveMeasurements(args: string[]): Promise<void> {
  const [dir, threads, variant, prompt, numTokens, requests] = args;
  if (!dir || !threads || !DECODE_VARIANTS.includes(variant as DecodeVariant) || prompt === undefined || !numTokens || !requests)
    throw new Error(`usage: decode-variant.js DIR THREADS ${DECODE_VARIANTS.join('|')} PROMPT TOKENS REQUESTS`);
  const fused = variant === 'per-block' ? { fused: false } : variant === 'bare' ? { fused: true } : {};
  const model = await Model.load(dir, { device: 'cpu', threads: Number(threads), ...fused });
  const promptTokens = model.tokenizer.encode(prompt);
  const tokens = Number(numTokens);
  const send = (message: z.infer<typeof ReplySchema>) => process.send!(message);
  const decode = () => (variant === 'bare' ? Promise.resolve(bareDecode(model, 'fused', promptTokens, tokens)) : engineDecode(model, promptTokens, tokens));
  process.on('message', () => {
    void (async () => {
      const rates: number[] = [];
      for (let r = 0; r < Number(requests); r++) rates.push(await decode());
      send({ tokensPerSecond: combinedRate(rates) });
    })();
  });
  process.once('disconnect', () => model.release());
  send({ ready: true });
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) await serveMeasurements(process.argv.slice(2));
