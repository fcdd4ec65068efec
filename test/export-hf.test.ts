/**
 * `export --format hf-onnx`: transformers.js, given only the exported
 * folder, reproduces offramp's golden text and the reference logits, and
 * its batched (left-padded) generation agrees with one prompt at a time.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { AutoModelForCausalLM, AutoTokenizer, env, Tensor, type PreTrainedModel } from '@huggingface/transformers';
import type { Checkpoint } from '../src/model/index.js';
import { exportHfOnnx, HF_ONNX_MODEL } from '../src/model/export-hf.js';
import { importLlama2c } from '../src/model/llama2c.js';
import { tempDir, tinyVariants } from './helpers.js';
import { referenceForward, relativeError } from './reference.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

// The peer must never reach for the network: everything comes from the exported folder.
env.allowRemoteModels = false;

const STORIES = (file: string) => sharedModelPath('stories260K', file);
const PROMPT_TOKENS = [1, 403, 407, 261, 378, 11, 263, 400, 268, 293, 271, 330, 266];

/** Exports `ckpt` to a temp dir and loads it the way the benchmark's peer does. */
async function exportAndLoad(t: TestContext, ckpt: Checkpoint): Promise<{ dir: string; model: PreTrainedModel }> {
  const dir = path.join(tempDir(t, 'offramp-hf-'), 'model');
  exportHfOnnx(ckpt, dir);
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' });
  t.after(() => model.dispose());
  return { dir, model };
}

/** [rows.length, width] int64 tensor. */
function int64(rows: number[][]): Tensor {
  return new Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
}

/** Greedy continuation of each row (left-padded where the mask says so); returns the new tokens per row. */
async function greedy(model: PreTrainedModel, rows: number[][], masks: number[][], maxNewTokens: number): Promise<number[][]> {
  const output = await model.generate({ input_ids: int64(rows), attention_mask: int64(masks), max_new_tokens: maxNewTokens, do_sample: false });
  assert.ok(output instanceof Tensor, 'generate returns the token tensor');
  return (output.tolist() as bigint[][]).map((row) => row.slice(rows[0]!.length).map(Number));
}

test('transformers.js on the stories260K export reproduces the golden greedy text', async (t) => {
  if (!requireSharedModels(t)) return;
  const { dir, model } = await exportAndLoad(t, importLlama2c(STORIES('stories260K.bin'), STORIES('tok512.bin')));
  for (const file of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', HF_ONNX_MODEL, `${HF_ONNX_MODEL}_data`]) {
    assert.ok(fs.existsSync(path.join(dir, file)), `${file} is written`);
  }
  const tokenizer = await AutoTokenizer.from_pretrained(dir);
  const promptIds = tokenizer.encode('Once upon a time');
  assert.equal(promptIds[0], 1, 'the tokenizer adds BOS');
  // 256 tokens follow BOS in the golden file, the prompt's own included.
  const [generated] = await greedy(model, [promptIds], [promptIds.map(() => 1)], 256 - (promptIds.length - 1));
  const text = tokenizer.decode([...promptIds, ...generated!], { skip_special_tokens: true });
  assert.equal(text + '\n', fs.readFileSync(STORIES('golden-once-upon-a-time.txt'), 'utf8'));
});

test('exported tiny models match the reference logits and batch with left padding', async (t) => {
  if (!requireSharedModels(t)) return;
  for (const [name, ckpt] of tinyVariants()) {
    await t.test(name, async (t) => {
      const { model } = await exportAndLoad(t, ckpt);
      const { vocabSize } = ckpt.config;
      const ones = PROMPT_TOKENS.map(() => 1);
      const output = (await model({ input_ids: int64([PROMPT_TOKENS]), attention_mask: int64([ones]) })) as { logits: Tensor };
      const logits = output.logits.data as Float32Array; // [1, seq, vocab]
      referenceForward(ckpt, PROMPT_TOKENS).logits.forEach((expected, pos) => {
        const err = relativeError(logits.subarray(pos * vocabSize, (pos + 1) * vocabSize), expected);
        assert.ok(err < 1e-4, `logits at position ${pos}: relative error ${err}`);
      });

      // A short prompt left-padded beside a long one continues as it does alone.
      const short = PROMPT_TOKENS.slice(0, 5);
      const pad = PROMPT_TOKENS.length - short.length;
      const [aloneLong] = await greedy(model, [PROMPT_TOKENS], [ones], 12);
      const [aloneShort] = await greedy(model, [short], [short.map(() => 1)], 12);
      const batched = await greedy(
        model,
        [PROMPT_TOKENS, [...Array<number>(pad).fill(0), ...short]],
        [ones, [...Array<number>(pad).fill(0), ...short.map(() => 1)]],
        12,
      );
      assert.deepEqual(batched, [aloneLong, aloneShort]);
    });
  }
});
