/**
 * A graph of linear layers and nothing else, stored and built exactly as a
 * prepared model's (prepare's `storeLinear`, the graphs' `linear`): what
 * bench/matvec-peer.ts times to tell onnxruntime's matrix products apart
 * from the rest of a decode step.
 *
 * @module
 */
import path from 'node:path';
import type { Tensor } from './checkpoint.js';
import { linear } from './graphs.js';
import { WEIGHTS_FILE, type Quantization } from './manifest.js';
import { GraphBuilder, type WeightRef } from './onnx.js';
import { storeLinear } from './prepare.js';
import { writeWeights, type StoredTensor } from './weights-file.js';

/** Names of a linear-layer graph's input and outputs. */
export const LinearIO = {
  input: 'x', // [rows, in]
  output: (i: number) => `y_${i}`, // [rows, out]: layer i applied to x
} as const;

export interface LinearGraph {
  /** The graph's bytes; its weights are external, in the folder it was written for. */
  graph: Uint8Array;
  /** Weight bytes one call reads (int8 codes and their scales, or float32). */
  weightBytes: number;
}

/**
 * Writes `weights` (each [out, in], all the same shape) into `dir`'s
 * weights.bin and returns a graph that applies every one of them to the same
 * input, each to an output of its own. `head` stores and builds them as the
 * LM head is (float32 kept [out, in] and run as Gemm with transB; int8 as any
 * layer).
 */
export function writeLinearGraph(dir: string, weights: Tensor[], quantization: Quantization, head = false): LinearGraph {
  const [outFeatures, inFeatures] = weights[0]!.dims as [number, number];
  const stored = new Map<string, StoredTensor>();
  const names = weights.map((weight, i) => {
    const name = `linear_${i}`;
    if (head && quantization === 'none') stored.set(name, weight);
    else storeLinear(stored, name, weight, quantization);
    return name;
  });
  const refs = writeWeights(path.join(dir, WEIGHTS_FILE), stored);
  const lookup = (name: string): WeightRef => refs[name]!;
  const g = new GraphBuilder('linear', WEIGHTS_FILE);
  const x = g.input(LinearIO.input, 'float', ['rows', inFeatures]);
  names.forEach((name, i) => {
    linear(g, lookup, x, name, inFeatures, { headRows: head ? outFeatures : undefined, output: LinearIO.output(i) });
    g.output(LinearIO.output(i), 'float', ['rows', outFeatures]);
  });
  return { graph: g.toBytes(), weightBytes: g.weightBytes };
}
