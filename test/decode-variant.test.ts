/**
 * The decode bench's variant processes (bench/decode-variant.ts): each of
 * offramp's variants loads its model in a process of its own and answers
 * each measurement; the process ends once the bench lets go of it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { DECODE_VARIANTS, VariantProcess } from '../bench/decode-variant.js';
import { prepareModel } from '../src/model/index.js';
import { tempDir, tinyCheckpoint } from './helpers.js';
import { requireSharedModels } from './shared.js';

test('each decode variant measures in a process of its own (two decodes a measurement), which ends when the bench stops it', { timeout: 60_000 }, async (t) => {
  if (!requireSharedModels(t)) return; // the tiny model takes stories260K's tokenizer
  const dir = path.join(tempDir(t), 'model');
  await prepareModel(tinyCheckpoint({}), dir, { trainRamps: 'off' });
  for (const variant of DECODE_VARIANTS) {
    const started = await VariantProcess.start(dir, 1, variant, 'Once upon a time', 16, 2);
    assert.notEqual(started.pid, process.pid);
    for (let i = 0; i < 2; i++) {
      const tokensPerSecond = await started.measure();
      assert.ok(Number.isFinite(tokensPerSecond) && tokensPerSecond > 0, `${variant}: ${tokensPerSecond} tokens/s`);
    }
    assert.equal(await started.stop(), 0, `${variant} exits 0 once stopped`);
  }
});
