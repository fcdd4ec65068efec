import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import type { Tensor } from './checkpoint.js';
import { LinearIO, writeLinearGraph } from './linear-graph.js';
import type { Quantization } from './manifest.js';
import { createSession, SPINNING } from './session.js';

/** A [rows, cols] weight of mixed signs and magnitudes, different for each `seed`. */
function weight(rows: number, cols: number, seed: number): Tensor {
  return { dims: [rows, cols], data: Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37 + seed) * 0.1) };
}

/** y = W x for W [out, in], in float64. */
function product(w: Tensor, x: Float32Array): number[] {
  const [rows, cols] = w.dims as [number, number];
  return Array.from({ length: rows }, (_, r) => x.reduce((sum, v, c) => sum + v * w.data[r * cols + c]!, 0));
}

const cases: { quantization: Quantization; head: boolean; tolerance: number }[] = [
  { quantization: 'none', head: false, tolerance: 1e-5 },
  { quantization: 'none', head: true, tolerance: 1e-5 },
  // int8 codes and int8 activations (accuracy level 4): half a step of each, summed over 64 inputs.
  { quantization: 'int8', head: false, tolerance: 2e-2 },
];

for (const { quantization, head, tolerance } of cases) {
  test(`linear graph (${quantization}${head ? ', as the head' : ''}): output i is weight i times x, at every spinning setting`, (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-linear-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const weights = [weight(5, 64, 0), weight(5, 64, 1)];
    const { graph, weightBytes } = writeLinearGraph(dir, weights, quantization, head);
    assert.equal(weightBytes, quantization === 'none' ? 2 * 5 * 64 * 4 : 2 * 5 * (64 + 2 * 4)); // int8: a code a weight, a float scale a block of 32
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i));
    for (const spinning of SPINNING) {
      const session = createSession(graph, { device: 'cpu', threads: 2, spinning }, dir);
      const outputs = session.run({ [LinearIO.input]: new ort.Tensor('float32', x, [1, 64]) }, { [LinearIO.output(0)]: null, [LinearIO.output(1)]: null });
      session.release();
      weights.forEach((w, i) => {
        const got = Array.from(outputs[LinearIO.output(i)]!.data as Float32Array);
        product(w, x).forEach((want, r) => assert.ok(Math.abs(got[r]! - want) <= tolerance, `${spinning}: y_${i}[${r}] = ${got[r]}, want ${want}`));
      });
    }
  });
}
