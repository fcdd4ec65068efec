/**
 * The in-process peers' shared pieces, with hand-made jobs: no model. The
 * slots keep at most N requests running and the rest in arrival order; a
 * generation becomes a record with one chunk per token.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestSlots, timedGeneration } from './in-process.js';
import type { Work } from './workload.js';

/** A job that runs until `finish()` is called, recording when it started. */
function pendingJob(started: number[], id: number): { job: () => Promise<number>; finish: () => void } {
  let finish = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    job: async () => {
      started.push(id);
      await done;
      return id;
    },
    finish: () => finish(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('RequestSlots: at most `size` jobs at once, the rest in arrival order', async () => {
  const slots = new RequestSlots(2);
  const started: number[] = [];
  const jobs = [0, 1, 2, 3].map((id) => pendingJob(started, id));
  const results = jobs.map((j) => slots.run(j.job));
  await tick();
  assert.deepEqual(started, [0, 1]);
  jobs[1]!.finish();
  await tick();
  assert.deepEqual(started, [0, 1, 2]);
  jobs[0]!.finish();
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3]);
  jobs[2]!.finish();
  jobs[3]!.finish();
  assert.deepEqual(await Promise.all(results), [0, 1, 2, 3]);
});

test('RequestSlots: a failed job frees its slot, and idle() waits for every job', async () => {
  const slots = new RequestSlots(1);
  const failed = slots.run(async () => {
    throw new Error('boom');
  });
  let ran = false;
  const next = slots.run(async () => {
    await tick();
    ran = true;
  });
  await assert.rejects(failed, /boom/);
  await slots.idle();
  assert.equal(ran, true);
  await next;
  assert.throws(() => new RequestSlots(0), /positive integer/);
});

test('timedGeneration: one chunk per token, and a throw becomes the record error', async () => {
  const work: Work = { index: 3, prompt: { id: 'p', kind: 'story', prompt: 'Once' }, seed: 1 };
  const record = await timedGeneration(work, 0, async (onTokens) => {
    onTokens(1);
    onTokens(2);
    return { text: ' upon a', finishReason: 'length' };
  });
  assert.equal(record.error, null);
  assert.equal(record.outputTokens, 3);
  assert.equal(record.chunkMs.length, 3);
  assert.deepEqual(record.chunkExit, [null, null, null]);
  assert.equal(record.text, ' upon a');
  assert.equal(record.finishReason, 'length');
  const failed = await timedGeneration(work, 0, async (onTokens) => {
    onTokens(1);
    throw new Error('out of memory');
  });
  assert.equal(failed.error, 'out of memory');
  assert.equal(failed.index, 3);
});
